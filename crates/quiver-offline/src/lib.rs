//! Quiver's offline store: every row ever ingested, as Parquet files on an object store
//! (a local directory or any S3-compatible service), listed by a manifest that the meta
//! Raft group holds, and the point-in-time retrieval that builds training sets from it.

pub mod convert;
mod cpu;
pub mod error;
pub mod files;
mod gather;
pub mod ingest;
mod keyids;
pub mod retrieval;
pub mod schema;
pub mod sorted;
pub mod spill;
pub mod spine;
pub mod split;
pub mod staging;
pub mod stats;
pub mod store;

pub use error::{Error, Result};
