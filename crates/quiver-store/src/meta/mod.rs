//! The meta group (Raft group 0): registry, shard map and cluster members.
//!
//! The state is small and read on every request, so it lives in memory as an immutable
//! `Arc<MetaState>` published through a watch channel; each apply persists it as one value
//! next to the applied log id, once per applied batch and only when it changed. What
//! grows without bound (committed ingest sources, statistics) is kept under keys of its
//! own in the same tree (see `keyspace`), so a meta write costs the same after a year.

mod access;
pub mod audit_chain;
mod backups;
mod catalog;
mod members;
mod shards;
pub mod stats;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use quiver_core::access::TokenInfo;
use quiver_core::backup::BackupRecord;
use quiver_core::offline::Dataset;
use quiver_core::registry::Registry;
use quiver_core::row::WriteSeq;
use quiver_core::shard_map::ShardMap;
use quiver_core::shard_ops::{FinishedOp, ShardOp};
use quiver_core::table::TableRef;
use quiver_offline::files::DataFile;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec::{load, store};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
pub use crate::records::{ExportRange, NodeInfo};
use crate::storage::{KvTree, WriteBatch};
use crate::token::TokenHash;

/// How long a committed ingest source (content hash) is remembered: the same content
/// ingested again within this time adds nothing.
pub const SOURCE_RETENTION_MICROS: i64 = 365 * quiver_core::time::DAY_MICROS;
/// The layout of the persisted `MetaState`: bump it with every change to the state's
/// types, so a node never misreads a state written by another version.
pub const STATE_FORMAT: u32 = 5;
/// Expired sources forgotten per commit, so cleanup cost stays bounded per entry.
const EXPIRED_PER_COMMIT: usize = 16;
/// Finished shard operations kept for `quiverctl shards` and for clients following one.
const FINISHED_OPS_KEPT: usize = 64;
/// A backup not finished a day after it began cutting was abandoned: the meta group
/// forgets it, and garbage collection no longer keeps what it might list (`backup::pins`).
pub const BACKUP_UNDER_WAY_MAX_MICROS: i64 = 86_400_000_000;
/// Completed backups kept for status and the dashboard.
const BACKUPS_KEPT: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    pub registry: Registry,
    pub shard_map: ShardMap,
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// The offline store's manifest: committed Parquet files per feature set version.
    pub manifest: BTreeMap<TableRef, Vec<DataFile>>,
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
    /// Shard operations in flight, oldest first.
    pub ops: Vec<ShardOp>,
    /// The last `FINISHED_OPS_KEPT` operations that ended, oldest first.
    pub finished_ops: VecDeque<FinishedOp>,
    pub next_op_id: u64,
    /// Shard ids are never reused: the next one a split gives its child.
    pub next_shard_id: u64,
    /// A backup cutting the groups, and the leader time its hold ends (`BeginBackupCut`).
    pub backup_cut: Option<(String, i64)>,
    /// The last `BACKUPS_KEPT` completed backups, oldest first.
    pub backups: VecDeque<BackupRecord>,
    /// Every token issued, revoked ones too, by the hash of its secret.
    pub tokens: BTreeMap<TokenHash, TokenInfo>,
}

impl MetaState {
    /// Nodes that may receive replicas and meta votes.
    pub fn active_nodes(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| !n.draining).map(|n| n.id).collect()
    }

    /// `Busy` while a backup holds its cut at leader time `now`: `what` waits for it.
    fn check_no_backup_cut(&self, now: i64, what: &str) -> quiver_core::Result<()> {
        match &self.backup_cut {
            Some((id, until)) if now < *until => Err(quiver_core::Error::Busy {
                reason: format!("backup {id} is cutting the shards; {what} waits until it has"),
                retry_after_ms: 200,
            }),
            _ => Ok(()),
        }
    }
}

/// The cluster's id, once set (`SetClusterId`), from the meta group's state tree.
pub fn cluster_id(tree: &dyn KvTree) -> Result<Option<String>> {
    tree.get(keyspace::CLUSTER_ID)?.map(|b| load(&b)).transpose()
}

/// The cluster id whose mark the metadata leader wrote into the offline store
/// (`MarkOfflineStore`).
pub fn offline_mark(tree: &dyn KvTree) -> Result<Option<String>> {
    tree.get(keyspace::OFFLINE_MARK)?.map(|b| load(&b)).transpose()
}

/// The cluster version in force (`FinalizeUpgrade`); 1 for a cluster that never recorded
/// one (its releases predate cluster versions).
pub fn cluster_version(tree: &dyn KvTree) -> Result<u32> {
    Ok(tree.get(keyspace::CLUSTER_VERSION)?.map(|b| load(&b)).transpose()?.unwrap_or(1))
}

/// The Quiver version node `id` last reported (`ReportVersion`).
pub fn node_version(tree: &dyn KvTree, id: u64) -> Result<Option<String>> {
    tree.get(&keyspace::node_version(id))?.map(|b| load(&b)).transpose()
}

/// Refused `MembersBehind` when a member of `nodes` has not reported running `release` or
/// a later one; `reported` finds what each reported.
pub fn all_run(
    nodes: impl Iterator<Item = u64>,
    reported: impl Fn(u64) -> Result<Option<String>>,
    release: &str,
) -> Result<std::result::Result<(), quiver_core::Error>> {
    let order = quiver_core::cluster::release_order;
    let mut behind = Vec::new();
    for id in nodes {
        match reported(id)? {
            Some(r) if order(&r) >= order(release) => {}
            Some(r) => behind.push(format!("node {id} runs {r}")),
            None => behind.push(format!("node {id} runs a release that reports none (before {release})")),
        }
    }
    if behind.is_empty() {
        return Ok(Ok(()));
    }
    let why = format!("{}; upgrade them to {release} or later first", behind.join(", "));
    Ok(Err(quiver_core::Error::MembersBehind(why)))
}

/// The Quiver version each node last reported (`ReportVersion`).
pub fn node_versions(tree: &dyn KvTree) -> Result<BTreeMap<u64, String>> {
    let mut versions = BTreeMap::new();
    for kv in tree.scan_prefix(&[keyspace::NODE_VERSION]) {
        let (key, value) = kv?;
        let id = key.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
        let id = id.ok_or_else(|| Error::Storage(format!("bad node version key {key:02x?}")))?;
        versions.insert(id, load(&value)?);
    }
    Ok(versions)
}

impl crate::codec::Record for MetaState {
    const FORMAT: u8 = STATE_FORMAT as u8;

    /// Only the layout this build has: `load` checks a bare state's layout first.
    fn read(format: u8, body: &[u8]) -> Result<MetaState> {
        match format {
            0 | Self::FORMAT => crate::codec::decode(body),
            other => Err(Error::Codec(format!("no meta state was ever stored in format {other}"))),
        }
    }
}

/// Readers' handle on the latest applied meta state.
pub type MetaView = watch::Receiver<Arc<MetaState>>;

pub struct MetaMachine {
    state: MetaState,
    tx: watch::Sender<Arc<MetaState>>,
    /// The in-memory state changed since it was last persisted and published.
    changed: bool,
    /// Sources committed by entries of the batch being applied (not in the tree yet).
    pending_sources: HashSet<Vec<u8>>,
}

impl MetaMachine {
    pub fn new() -> (MetaMachine, MetaView) {
        let (tx, rx) = watch::channel(Arc::new(MetaState::default()));
        let machine = MetaMachine { state: MetaState::default(), tx, changed: false, pending_sources: HashSet::new() };
        (machine, rx)
    }

    /// Reads the persisted state; refuses one written in another layout than this build's
    /// rather than misreading it. Writes records for the cluster version it finds.
    pub fn load(&mut self, tree: &dyn KvTree) -> Result<()> {
        self.state = match tree.get(keyspace::META_STATE)? {
            None => MetaState::default(),
            Some(bytes) => {
                // A bare state says its layout under its own key.
                let layout = match crate::codec::format_of(&bytes)? {
                    (0, _) => tree.get(keyspace::META_FORMAT)?.map(|b| load::<u32>(&b)).transpose()?,
                    (format, _) => Some(u32::from(format)),
                };
                if layout != Some(STATE_FORMAT) {
                    let found = layout.map_or_else(|| "an older one".to_string(), |f| f.to_string());
                    return Err(Error::Config(format!(
                        "this data dir's cluster metadata is in layout {found}, but this quiver-node reads \
                         layout {STATE_FORMAT}: it was written by another version of Quiver; start it with \
                         the version that wrote it, or start this one on an empty data dir"
                    )));
                }
                load(&bytes)?
            }
        };
        crate::codec::set_cluster_version(cluster_version(tree)?);
        self.changed = true;
        self.publish();
        Ok(())
    }

    /// Adds the state to `batch` when the entries applied since the last call changed it.
    pub fn persist(&self, batch: &mut WriteBatch) -> Result<()> {
        if self.changed {
            batch.put(keyspace::META_STATE, store(&self.state)?);
            batch.put(keyspace::META_FORMAT, store(&STATE_FORMAT)?);
        }
        Ok(())
    }

    /// Shows readers the state once its batch is written.
    pub fn publish(&mut self) {
        if std::mem::take(&mut self.changed) {
            self.tx.send_replace(Arc::new(self.state.clone()));
        }
        self.pending_sources.clear();
    }

    /// Applies one command: data keys go to `batch`; `tree` is read for what this batch has
    /// not written yet.
    pub fn apply(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        use MetaCommand as C;
        match cmd {
            C::ApplyDefinitions(..)
            | C::SaveDataset { .. }
            | C::RecordFileStats { .. }
            | C::RecordMonitorRun { .. }
            | C::RecordServingStats { .. }
            | C::ReplaceFiles { .. }
            | C::ForgetGarbage { .. }
            | C::ReserveSeq { .. }
            | C::CommitFiles { .. }
            | C::BeginPublish { .. }
            | C::EndPublish { .. } => self.apply_catalog(tree, cmd, leader_time, batch),
            C::Bootstrap { .. }
            | C::AddNode { .. }
            | C::SetClientAddr { .. }
            | C::DrainNode { .. }
            | C::ForgetNode { .. }
            | C::SetClusterId { .. }
            | C::MarkOfflineStore { .. }
            | C::ReportVersion { .. }
            | C::FinalizeUpgrade { .. } => self.apply_members(tree, cmd, batch),
            C::SetReplicas { .. }
            | C::SetVoters { .. }
            | C::ReportLeader { .. }
            | C::SetSplitPoint { .. }
            | C::StartOp { .. }
            | C::FinishOp { .. }
            | C::ClaimMerge { .. }
            | C::AbandonOp { .. }
            | C::RollBackMove { .. }
            | C::CommitMerge { .. }
            | C::CommitSplit { .. } => self.apply_shards(tree, cmd, leader_time, batch),
            C::CreateToken { .. } | C::RevokeToken { .. } | C::RecordAudit { .. } | C::SetAuditRetention { .. } => {
                self.apply_access(tree, cmd, leader_time, batch)
            }
            C::BeginBackupCut { .. }
            | C::EndBackupCut { .. }
            | C::PinFiles { .. }
            | C::UnpinFiles { .. }
            | C::RecordBackup(..) => self.apply_backups(tree, cmd, leader_time, batch),
        }
    }
}

#[cfg(test)]
mod tests;
