//! The meta group (Raft group 0): registry, shard map and cluster members.
//!
//! The state is small and read on every request, so it lives in memory as an immutable
//! `Arc<MetaState>` published through a watch channel; each apply persists it as one value
//! next to the applied log id. Feature statistics are kept under their own keys of the
//! same tree (see `stats`).

pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quiver_core::registry::Registry;
use quiver_core::row::WriteSeq;
use quiver_core::shard_map::ShardMap;
use quiver_core::spec::Definitions;
use quiver_offline::files::DataFile;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec::{decode, encode};
use crate::error::Result;
use crate::raft::Response;
use crate::shard::TableRef;
use crate::storage::{KvTree, WriteBatch};

const STATE: &[u8] = b"\x01meta-state";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    pub registry: Registry,
    pub shard_map: ShardMap,
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// The offline store's manifest: committed Parquet files per feature set version.
    pub manifest: BTreeMap<TableRef, Vec<DataFile>>,
    /// Sources already committed per table (content hashes, export ranges): a second
    /// commit of the same source adds nothing.
    pub sources: BTreeSet<(TableRef, String)>,
    /// Next unreserved ingestion sequence number.
    pub next_seq: u64,
    /// Per shard, the last queued row already committed to the offline store by export.
    pub export_marks: BTreeMap<u64, WriteSeq>,
    /// Saved training datasets by (project, name), with their lineage.
    pub datasets: BTreeMap<(String, String), Dataset>,
    /// Node ids are never reused: the next one a joining node gets.
    pub next_node_id: u64,
    /// Files replaced by compaction: (path, when), deleted from the store after a grace
    /// period so that retrievals already reading them can finish.
    pub garbage: Vec<(String, i64)>,
}

/// A training set stored in the offline store, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub project: String,
    pub name: String,
    pub path: String,
    pub vector: Option<String>,
    pub features: Vec<String>,
    /// `set@version` of every feature set joined.
    pub feature_sets: Vec<String>,
    pub spine: String,
    pub rows: u64,
    pub bytes: u64,
    pub spine_from: i64,
    pub spine_to: i64,
    pub created_at: i64,
}

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
    /// The gRPC address other nodes and clients reach it at.
    pub addr: String,
    /// Being drained by `quiverctl node remove`: its replicas move away, then it leaves.
    pub draining: bool,
}

impl MetaState {
    /// Nodes that may receive replicas and meta votes.
    pub fn active_nodes(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| !n.draining).map(|n| n.id).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    ApplyDefinitions(Definitions),
    /// Lays out the first shard map; refused once a map exists, so replays and racing
    /// bootstraps change nothing.
    Bootstrap {
        nodes: Vec<NodeInfo>,
        shard_map: ShardMap,
    },
    /// Records a saved training dataset and its feature statistics; refused when the name
    /// is taken.
    SaveDataset {
        dataset: Dataset,
        stats: stats::Summaries,
    },
    /// Statistics of one committed offline file (same file again: the same summaries).
    RecordFileStats {
        table: TableRef,
        day: i64,
        path: String,
        stats: stats::Summaries,
    },
    /// A monitor's drift report (protobuf `GetDriftResponse`) at `at`.
    RecordMonitorRun {
        table: TableRef,
        at: i64,
        report: Vec<u8>,
    },
    /// Statistics of values a node served online since its last report.
    RecordServingStats {
        table: TableRef,
        day: i64,
        node: u64,
        seq: u64,
        stats: stats::Summaries,
    },
    /// Swaps files for their compacted replacement in one step; refused when any of them
    /// is no longer listed (another compaction got there first).
    ReplaceFiles {
        table: TableRef,
        remove: Vec<String>,
        add: DataFile,
    },
    /// The garbage files were deleted from the store.
    ForgetGarbage {
        paths: Vec<String>,
    },
    /// A node joins: answers its id, the same one again for an address already known.
    AddNode {
        addr: String,
    },
    /// Starts moving every replica away from a node before it leaves.
    DrainNode {
        id: u64,
    },
    /// Forgets a drained node; refused while it still hosts a replica.
    ForgetNode {
        id: u64,
    },
    /// The scheduler's decision: shard `shard` moves to `replicas`. Refused unless the
    /// shard is still at `conf_ver` and no move of it is under way.
    SetReplicas {
        shard: u64,
        replicas: Vec<u64>,
        conf_ver: u64,
    },
    /// The shard's leader confirms its Raft group now has these voters.
    SetVoters {
        shard: u64,
        voters: Vec<u64>,
    },
    /// Reserves `count` ingestion sequence numbers.
    ReserveSeq {
        count: u64,
    },
    /// Makes written files visible, all or none. `source` names what they came from;
    /// committing the same source (or an export range at or below the shard's mark)
    /// twice is refused as a duplicate, so retries never double data.
    CommitFiles {
        files: Vec<(TableRef, DataFile)>,
        source: (TableRef, String),
        export: Option<ExportRange>,
    },
}

fn unknown_node(id: u64) -> quiver_core::Error {
    quiver_core::Error::InvalidArgument(format!("no node with id {id} in the cluster"))
}

/// Readers' handle on the latest applied meta state.
pub type MetaView = watch::Receiver<Arc<MetaState>>;

pub struct MetaMachine {
    state: MetaState,
    tx: watch::Sender<Arc<MetaState>>,
}

impl MetaMachine {
    pub fn new() -> (MetaMachine, MetaView) {
        let (tx, rx) = watch::channel(Arc::new(MetaState::default()));
        (MetaMachine { state: MetaState::default(), tx }, rx)
    }

    pub fn load(&mut self, tree: &dyn KvTree) -> Result<()> {
        self.state = tree.get(STATE)?.map(|b| decode(&b)).transpose()?.unwrap_or_default();
        self.publish();
        Ok(())
    }

    pub fn publish(&self) {
        if **self.tx.borrow() != self.state {
            self.tx.send_replace(Arc::new(self.state.clone()));
        }
    }

    pub fn apply(&mut self, cmd: &MetaCommand, leader_time: i64, batch: &mut WriteBatch) -> Result<Response> {
        let response = match cmd {
            MetaCommand::ApplyDefinitions(defs) => match self.state.registry.apply(defs, leader_time) {
                Ok(changes) => Response::Applied(changes),
                Err(e) => return Ok(Response::Rejected(e)),
            },
            MetaCommand::SaveDataset { dataset, stats } => {
                let key = (dataset.project.clone(), dataset.name.clone());
                if self.state.datasets.contains_key(&key) {
                    let taken = format!("dataset '{}' exists in project {}; pick another name", key.1, key.0);
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(taken)));
                }
                batch.put(stats::dataset_key(&key.0, &key.1), encode(stats)?);
                self.state.datasets.insert(key, Dataset { created_at: leader_time, ..dataset.clone() });
                Response::Done
            }
            // Statistics do not touch the in-memory state: only their own keys.
            MetaCommand::RecordFileStats { table, day, path, stats } => {
                batch.put(stats::file_key(table, *day, path), encode(stats)?);
                return Ok(Response::Done);
            }
            MetaCommand::RecordMonitorRun { table, at, report } => {
                batch.put(stats::monitor_key(table, *at), report.clone());
                return Ok(Response::Done);
            }
            MetaCommand::RecordServingStats { table, day, node, seq, stats } => {
                batch.put(stats::serving_key(table, *day, *node, *seq), encode(stats)?);
                return Ok(Response::Done);
            }
            MetaCommand::ReplaceFiles { table, remove, add } => {
                let files = self.state.manifest.entry(table.clone()).or_default();
                if !remove.iter().all(|p| files.iter().any(|f| &f.path == p)) {
                    return Ok(Response::Duplicate);
                }
                files.retain(|f| !remove.contains(&f.path));
                files.push(add.clone());
                self.state.garbage.extend(remove.iter().map(|p| (p.clone(), leader_time)));
                Response::Done
            }
            MetaCommand::ForgetGarbage { paths } => {
                self.state.garbage.retain(|(p, _)| !paths.contains(p));
                Response::Done
            }
            MetaCommand::ReserveSeq { count } => {
                let start = self.state.next_seq;
                self.state.next_seq = start.saturating_add(*count);
                Response::Seq(start)
            }
            MetaCommand::CommitFiles { files, source, export } => {
                let exported =
                    export.is_some_and(|r| self.state.export_marks.get(&r.shard).is_some_and(|m| *m >= r.from));
                if exported || self.state.sources.contains(source) {
                    return Ok(Response::Duplicate);
                }
                self.state.sources.insert(source.clone());
                if let Some(r) = export {
                    self.state.export_marks.insert(r.shard, r.through);
                }
                for (table, file) in files {
                    self.state.manifest.entry(table.clone()).or_default().push(file.clone());
                }
                Response::Done
            }
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
                self.state.nodes.insert(id, NodeInfo { id, addr: addr.clone(), draining: false });
                Response::NodeId(id)
            }
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
                Response::Done
            }
            MetaCommand::SetReplicas { shard, replicas, conf_ver } => {
                let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else {
                    return Ok(Response::Rejected(quiver_core::Error::ShardNotFound(*shard)));
                };
                if s.epoch.conf_ver != *conf_ver || s.moving() {
                    return Ok(Response::Rejected(quiver_core::Error::EpochMismatch {
                        shard: *shard,
                        current: s.epoch,
                    }));
                }
                s.replicas = replicas.clone();
                s.epoch.conf_ver += 1;
                Response::Done
            }
            MetaCommand::SetVoters { shard, voters } => {
                let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else {
                    return Ok(Response::Rejected(quiver_core::Error::ShardNotFound(*shard)));
                };
                s.voters = voters.clone();
                Response::Done
            }
        };
        batch.put(STATE, encode(&self.state)?);
        Ok(response)
    }
}
