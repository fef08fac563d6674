//! The records the meta state is made of, beside the registry and the shard map; commands
//! carry them, so they sit below both.

use quiver_core::row::WriteSeq;
use quiver_core::stats::FeatureSummary;
use serde::{Deserialize, Serialize};

/// Summaries of some rows, by column name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summaries {
    pub rows: u64,
    pub columns: Vec<(String, FeatureSummary)>,
}

impl crate::codec::Record for Summaries {}

/// A range of a shard's export queue, committed with the files written from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRange {
    pub shard: u64,
    pub from: WriteSeq,
    pub through: WriteSeq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    /// The gRPC address other nodes reach it at.
    pub addr: String,
    /// The gRPC address clients reach it at (often the same).
    pub client_addr: String,
    /// Being drained by `quiverctl node remove`: its replicas move away, then it leaves.
    pub draining: bool,
}
