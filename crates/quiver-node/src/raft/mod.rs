//! Raft plumbing shared by every group: the type configuration, the log store, the state
//! machine and the gRPC transport. What log entries carry is in `command`.

pub mod cut;
pub mod log_store;
pub mod network;
pub mod read_index;
pub mod state_machine;

use std::io::Cursor;

use openraft::error::{ClientWriteError, RaftError};
use quiver_core::time::now_micros;
use quiver_store::command::{Command, Request, Response};
use quiver_store::error::{Error, Result};

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

/// Appends `command` to group `group`'s log (this node must lead it) and waits until it is
/// applied; answers the state machine's answer (a refusal as its error) and the entry's index.
pub async fn write(raft: &Raft, group: u64, command: Command) -> Result<(Response, u64)> {
    match raft.client_write(Request { leader_time: now_micros(), command }).await {
        Ok(reply) => match reply.data {
            Response::Rejected(e) => Err(e.into()),
            other => Ok((other, reply.log_id.index)),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(quiver_core::Error::NotLeader { group, leader: f.leader_node.map(|n| n.addr) }.into())
        }
        Err(e) => Err(Error::Raft(format!("group {group}: {e}"))),
    }
}

#[cfg(test)]
mod tests;
