//! Meta commands of one concern: the cluster's members: its first map, nodes joining, draining and leaving, its id and its offline store's mark, the releases they run and the cluster version in force.

use super::{MetaMachine, NodeInfo};
use crate::codec::{load, store};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

impl MetaMachine {
    /// Applies a command of this concern (`MetaMachine::apply` sends each here by kind).
    pub(super) fn apply_members(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        let response = match cmd {
            MetaCommand::Bootstrap { nodes, shard_map } => {
                if !self.state.shard_map.shards.is_empty() {
                    return Ok(Response::Done);
                }
                self.state.shard_map = shard_map.clone();
                self.state.nodes = nodes.iter().map(|n| (n.id, n.clone())).collect();
                self.state.next_node_id = nodes.iter().map(|n| n.id + 1).max().unwrap_or(1);
                Response::Done
            }
            MetaCommand::AddNode { addr } => {
                if let Some(known) = self.state.nodes.values().find(|n| &n.addr == addr) {
                    return Ok(Response::NodeId(known.id));
                }
                let id = self.state.next_node_id.max(1);
                self.state.next_node_id = id + 1;
                let node = NodeInfo { id, addr: addr.clone(), client_addr: addr.clone(), draining: false };
                self.state.nodes.insert(id, node);
                Response::NodeId(id)
            }
            MetaCommand::SetClientAddr { id, addr } => match self.state.nodes.get_mut(id) {
                Some(node) => {
                    node.client_addr = addr.clone();
                    Response::Done
                }
                None => return Ok(Response::Rejected(unknown_node(*id))),
            },
            MetaCommand::DrainNode { id } => match self.state.nodes.get_mut(id) {
                Some(node) => {
                    node.draining = true;
                    Response::Done
                }
                None => return Ok(Response::Rejected(unknown_node(*id))),
            },
            MetaCommand::ForgetNode { id } => {
                if !self.state.nodes.contains_key(id) {
                    return Ok(Response::Done);
                }
                if self.state.shard_map.shards.iter().any(|s| s.hosted_by(*id)) {
                    let busy = format!("node {id} still hosts replicas; drain it first");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(busy)));
                }
                self.state.nodes.remove(id);
                batch.delete(keyspace::node_version(*id));
                Response::Done
            }
            MetaCommand::SetClusterId { id } => {
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let odd = format!("a cluster id is 32 hex digits, not {id:?}");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                }
                let set = match batch.pending(keyspace::CLUSTER_ID) {
                    Some(pending) => pending.is_some(),
                    None => tree.get(keyspace::CLUSTER_ID)?.is_some(),
                };
                if !set {
                    batch.put(keyspace::CLUSTER_ID, store(id)?);
                }
                return Ok(Response::Done);
            }
            MetaCommand::ReportVersion { node, version } => {
                batch.put(keyspace::node_version(*node), store(version)?);
                return Ok(Response::Done);
            }
            MetaCommand::FinalizeUpgrade { version, release } => {
                let reported = |id| match batch.pending(&keyspace::node_version(id)) {
                    Some(pending) => Ok(pending.map(load::<String>).transpose()?),
                    None => super::node_version(tree, id),
                };
                if let Err(behind) = super::all_run(self.state.nodes.keys().copied(), reported, release)? {
                    return Ok(Response::Rejected(behind));
                }
                let now = match batch.pending(keyspace::CLUSTER_VERSION) {
                    Some(pending) => pending.map(load::<u32>).transpose()?.unwrap_or(1),
                    None => super::cluster_version(tree)?,
                };
                if *version <= now {
                    return Ok(Response::Duplicate);
                }
                batch.put(keyspace::CLUSTER_VERSION, store(version)?);
                crate::codec::set_cluster_version(*version);
                return Ok(Response::Done);
            }
            MetaCommand::MarkOfflineStore { cluster } => {
                batch.put(keyspace::OFFLINE_MARK, store(cluster)?);
                return Ok(Response::Done);
            }
            other => return Err(Error::Raft(format!("members does not apply {other:?}"))),
        };
        self.changed = true;
        Ok(response)
    }
}

fn unknown_node(id: u64) -> quiver_core::Error {
    quiver_core::Error::InvalidArgument(format!("no node with id {id} in the cluster"))
}
