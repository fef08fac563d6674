//! Raft plumbing shared by every group: the type configuration, the commands carried in
//! log entries, the log store, the state machine and the gRPC transport.

pub mod log_store;
pub mod network;
pub mod read_index;
pub mod service;
pub mod state_machine;

use std::io::Cursor;

use quiver_core::registry::Change;
use serde::{Deserialize, Serialize};

use crate::meta::MetaCommand;
use crate::shard::ShardCommand;

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A log entry's payload. The leader stamps its clock into it, so `apply` never reads a
/// clock and every replica computes the same state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub leader_time: i64,
    pub command: Command,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Meta(MetaCommand),
    Shard(ShardCommand),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub enum Response {
    #[default]
    Done,
    /// A registry apply: what it changed.
    Applied(Vec<Change>),
    /// The command was valid Raft-wise but refused by the state machine; nothing changed.
    Rejected(quiver_core::Error),
    Written {
        rows: u64,
    },
    /// The first of a reserved range of ingestion sequence numbers.
    Seq(u64),
    /// The files were committed before (same source), or the write's request id was
    /// applied before: nothing was added.
    Duplicate,
    /// The id of a node that joined.
    NodeId(u64),
}

/// Wall-clock microseconds; only leaders and read paths call this, never `apply`.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
