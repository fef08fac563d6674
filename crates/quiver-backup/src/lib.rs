//! Backups' formats: the catalog, the objects and frames a backup is written in, sealing,
//! incremental changes, the pins that keep listed offline files from garbage collection,
//! and restores of a backup into the data dirs of a new cluster. The node makes backups
//! (`quiver-node`'s `backup::create`); `quiverctl` lists, verifies and restores them without
//! a node.

pub mod catalog;
pub mod delta;
pub mod digest;
pub mod format;
pub mod pins;
pub mod restore;
pub mod seal;

use quiver_store::{codec, config, error, identity, keyspace, meta, storage, token};
