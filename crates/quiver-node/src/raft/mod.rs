//! Raft plumbing shared by every group: the type configuration, the log store, the state
//! machine and the gRPC transport. What log entries carry is in `command`.

pub mod cut;
pub mod log_store;
pub mod network;
pub mod read_index;
pub mod state_machine;

use std::io::Cursor;

use quiver_store::command::{Request, Response};

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

#[cfg(test)]
mod tests;
