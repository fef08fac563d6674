//! Backups: a consistent cut of the whole cluster written to a location (a directory or
//! `s3://…`), and restores of one into the data dirs of a new cluster.

pub mod catalog;
pub(crate) mod create;
pub(crate) mod delta;
pub(crate) mod digest;
pub mod format;
pub(crate) mod pins;
pub mod restore;
pub mod seal;
