//! Backups: a consistent cut of the whole cluster written to a location (a directory or
//! `s3://…`), and restores of one into the data dirs of a new cluster.

pub mod catalog;
pub mod create;
pub mod delta;
pub mod digest;
pub mod format;
pub mod pins;
pub mod restore;
pub mod seal;
