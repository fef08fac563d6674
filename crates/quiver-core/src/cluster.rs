//! The cluster as one node sees it: its nodes, the Raft groups open there with their leaders
//! and indexes, and the shard map with leader hints and node addresses.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::shard_map::{Shard, ShardMap};
use crate::shard_ops::{FinishedOp, ShardOp};

/// A node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// Its Quiver version.
    pub version: String,
    /// Every member of the cluster.
    pub nodes: Vec<NodeStatus>,
    /// Every Raft group open on the answering node: the meta group, then its shards.
    pub groups: Vec<GroupStatus>,
    /// The last backups that completed, newest last.
    pub backups: Vec<crate::backup::BackupRecord>,
    /// When the answering node's TLS certificate stops being valid (µs); `None` without TLS.
    #[serde(default)]
    pub certificate_expires: Option<i64>,
    /// Whose view `NodeStatus::up` is: the metadata leader's id; `None` when the answering
    /// node could not ask it, and only its own `up` is known (`ClusterStatus::up`).
    #[serde(default)]
    pub liveness_from: Option<u64>,
    /// The cluster version in force: which stored formats and commands every member may use.
    /// It rises when an operator finalizes an upgrade (`quiverctl cluster finalize-upgrade`);
    /// `None` from a node of a release before cluster versions.
    #[serde(default)]
    pub cluster_version: Option<u32>,
}

impl ClusterStatus {
    /// The oldest release any member reported running; `None` when none reported one.
    pub fn oldest_release(&self) -> Option<&str> {
        self.releases().min_by_key(|v| release_order(v))
    }

    /// The newest release any member reported running.
    pub fn newest_release(&self) -> Option<&str> {
        self.releases().max_by_key(|v| release_order(v))
    }

    fn releases(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| n.version.as_deref())
    }

    /// Whether node `n` is up, when known.
    pub fn up(&self, n: &NodeStatus) -> Option<bool> {
        (self.liveness_from.is_some() || n.id == self.node_id).then_some(n.up)
    }
}

/// A release's place among releases: its version number by number, so that `0.10.0` comes
/// after `0.9.1` (a part that is not a number counts as 0).
pub fn release_order(release: &str) -> Vec<u64> {
    release.split(['.', '-', '+']).map(|p| p.parse::<u64>().unwrap_or(0)).collect()
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: u64,
    /// gRPC address, `host:port`.
    pub address: String,
    /// The answering node itself, or seen replicating by the metadata leader (see
    /// `ClusterStatus::up`).
    pub up: bool,
    /// Being drained by `quiverctl node remove`: its replicas move to the others.
    pub draining: bool,
    /// Shard replicas assigned to it.
    pub replicas: u32,
    /// Whether it votes in the meta group.
    pub meta_voter: bool,
    /// The Quiver version it last reported running; `None` before it has (a release before
    /// versions were reported).
    #[serde(default)]
    pub version: Option<String>,
}

/// What a Raft group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GroupKind {
    /// Group 0: the registry, the shard map, the manifest.
    Meta,
    /// A range of the entity-hash space and its rows.
    Shard,
}

impl GroupKind {
    /// The kind as status answers and tables name it.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Meta => "meta",
            GroupKind::Shard => "shard",
        }
    }
}

/// One Raft group as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// 0 for the meta group; shards are 1..=N.
    pub group_id: u64,
    /// Meta group or shard.
    pub kind: GroupKind,
    /// The leader's node id; `None` while the group elects one.
    pub leader: Option<u64>,
    /// Node ids of the voters.
    pub voters: Vec<u64>,
    /// Raft term.
    pub term: u64,
    /// Last log index applied by the answering node.
    pub applied_index: u64,
    /// Last log index known committed.
    pub committed_index: u64,
    /// Last log index in the answering node's log.
    pub last_log_index: u64,
    /// The answering node's role in the group (`Leader`, `Follower`, `Candidate`, `Learner`).
    pub state: String,
    /// A shard's hash range, inclusive; 0 and 0 for the meta group.
    pub range_start: u64,
    /// See `range_start`.
    pub range_end: u64,
    /// On the group's leader: how far each replica is behind; empty elsewhere.
    pub replicas: Vec<ReplicaLag>,
}

/// How far one replica is behind its group's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplicaLag {
    /// The replica's node.
    pub node_id: u64,
    /// Last log index the replica is known to hold; `None` when unknown.
    pub matched_index: Option<u64>,
    /// Log entries behind the leader's last one.
    pub lag: u64,
}

/// The shard map as one node knows it: which shard owns which hash range, at which epoch,
/// on which replicas, with the leader that node last saw for each shard (`Shard::leader`, a
/// hint, not a promise); every node's address; shard operations in flight and ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClusterMap {
    /// Shards sorted by range start, covering the hash space.
    #[serde(flatten)]
    pub shard_map: ShardMap,
    /// Node id → gRPC address, `host:port`.
    pub nodes: BTreeMap<u64, String>,
    /// Shard operations in flight, oldest first.
    pub operations: Vec<ShardOp>,
    /// The last operations that ended, oldest first.
    pub finished: Vec<FinishedOp>,
    /// Shard id → the log index of its last entry whose rows are all in the offline store;
    /// shards with nothing exported yet are absent.
    pub exported: BTreeMap<u64, u64>,
}

impl ClusterMap {
    /// The address of the node a shard's leader hint names, when both are known.
    pub fn leader_address(&self, shard: &Shard) -> Option<&str> {
        shard.leader.and_then(|id| self.nodes.get(&id)).map(String::as_str)
    }

    /// Operation `id`: `Some(None)` while in flight, `Some(Some(ended))` once it ended,
    /// `None` when this map knows nothing of it.
    pub fn operation(&self, id: u64) -> Option<Option<&FinishedOp>> {
        if self.operations.iter().any(|op| op.id == id) {
            return Some(None);
        }
        self.finished.iter().find(|f| f.op.id == id).map(Some)
    }

    /// The addresses of a shard's replicas that have one, in replica order.
    pub fn replica_addresses(&self, shard: &Shard) -> Vec<&str> {
        shard.replicas.iter().filter_map(|id| self.nodes.get(id)).map(String::as_str).collect()
    }
}
