//! Backups: a consistent cut of the whole cluster written to a location (a directory or
//! `s3://…`, `create`), in the formats of `quiver-backup`, which also restores them.

pub(crate) mod create;

pub use quiver_backup::{catalog, delta, digest, format, pins, restore, seal};
