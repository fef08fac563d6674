//! The node's offline jobs: batch ingestion into the offline store (and the online shards),
//! and point-in-time retrieval from it.

pub mod history;
pub mod ingest;
pub mod materialize;
pub mod parts;
pub mod shared;
pub mod source_policy;
