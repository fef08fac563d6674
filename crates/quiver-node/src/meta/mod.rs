//! The meta group (Raft group 0): registry, shard map and cluster members.
//!
//! The state is small and read on every request, so it lives in memory as an immutable
//! `Arc<MetaState>` published through a watch channel; each apply persists it as one value
//! next to the applied log id, once per applied batch and only when it changed. What
//! grows without bound (committed ingest sources, statistics) is kept under keys of its
//! own in the same tree (see `keyspace`), so a meta write costs the same after a year.

pub mod audit_chain;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use quiver_core::access::TokenInfo;
use quiver_core::backup::BackupRecord;
use quiver_core::offline::Dataset;
use quiver_core::registry::Registry;
use quiver_core::row::WriteSeq;
use quiver_core::shard_map::{Shard, ShardMap};
use quiver_core::shard_ops::{FinishedOp, OpKind, Outcome, ShardOp};
use quiver_core::table::TableRef;
use quiver_offline::files::DataFile;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec::{decode, encode};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
pub use crate::records::{ExportRange, NodeInfo};
use crate::storage::{KvTree, WriteBatch};
use crate::trust::token::TokenHash;

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
    tree.get(keyspace::CLUSTER_ID)?.map(|b| decode(&b)).transpose()
}

/// The cluster id whose mark the metadata leader wrote into the offline store
/// (`MarkOfflineStore`).
pub fn offline_mark(tree: &dyn KvTree) -> Result<Option<String>> {
    tree.get(keyspace::OFFLINE_MARK)?.map(|b| decode(&b)).transpose()
}

/// An ingest whose publishing lease runs past `now`, as the tree and this apply's batch
/// have them.
fn publishing(tree: &dyn KvTree, batch: &WriteBatch, now: i64) -> Result<Option<String>> {
    let prefix = [keyspace::INGEST_PUBLISHING];
    let mut keys: BTreeSet<Vec<u8>> = batch.keys().filter(|k| k.starts_with(&prefix)).map(<[u8]>::to_vec).collect();
    for kv in tree.scan_prefix(&prefix) {
        keys.insert(kv?.0);
    }
    for key in keys {
        let value = match batch.pending(&key) {
            Some(pending) => pending.map(<[u8]>::to_vec),
            None => tree.get(&key)?,
        };
        if value.map(|v| decode::<i64>(&v)).transpose()?.is_some_and(|until| until > now) {
            return Ok(Some(String::from_utf8_lossy(&key[1..]).into_owned()));
        }
    }
    Ok(None)
}

/// A replica move given up: the shard's replicas go back to its voters, at a new conf_ver.
fn roll_back(shard: &mut quiver_core::shard_map::Shard) {
    if shard.moving() {
        shard.replicas = shard.voters.clone();
        shard.epoch.conf_ver += 1;
    }
}

fn unknown_node(id: u64) -> quiver_core::Error {
    quiver_core::Error::InvalidArgument(format!("no node with id {id} in the cluster"))
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
    /// rather than misreading it.
    pub fn load(&mut self, tree: &dyn KvTree) -> Result<()> {
        let format = tree.get(keyspace::META_FORMAT)?.map(|b| decode::<u32>(&b)).transpose()?;
        self.state = match (tree.get(keyspace::META_STATE)?, format) {
            (None, _) => MetaState::default(),
            (Some(bytes), Some(STATE_FORMAT)) => decode(&bytes)?,
            (Some(_), found) => {
                let found = found.map_or_else(|| "an older one".to_string(), |f| f.to_string());
                return Err(Error::Config(format!(
                    "this data dir's cluster metadata is in layout {found}, but this quiver-node reads \
                     layout {STATE_FORMAT}: it was written by another version of Quiver; start it with \
                     the version that wrote it, or start this one on an empty data dir"
                )));
            }
        };
        self.changed = true;
        self.publish();
        Ok(())
    }

    /// Adds the state to `batch` when the entries applied since the last call changed it.
    pub fn persist(&self, batch: &mut WriteBatch) -> Result<()> {
        if self.changed {
            batch.put(keyspace::META_STATE, encode(&self.state)?);
            batch.put(keyspace::META_FORMAT, encode(&STATE_FORMAT)?);
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
        let response = match cmd {
            MetaCommand::ApplyDefinitions(defs) => match self.state.registry.apply(defs, leader_time) {
                Ok(changes) => Response::Applied(changes),
                Err(e) => return Ok(Response::Rejected(e)),
            },
            MetaCommand::SaveDataset { project, dataset, stats } => {
                let key = (project.clone(), dataset.name.clone());
                if self.state.datasets.contains_key(&key) {
                    let taken = format!("dataset '{}' exists in project {}; pick another name", key.1, key.0);
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(taken)));
                }
                batch.put(keyspace::dataset_stats(&key.0, &key.1), encode(stats)?);
                self.state.datasets.insert(key, Dataset { created_at: leader_time, ..dataset.clone() });
                Response::Done
            }
            // Statistics do not touch the in-memory state: only their own keys.
            MetaCommand::RecordFileStats { table, day, path, stats } => {
                batch.put(keyspace::file_stats(table, *day, path), encode(stats)?);
                return Ok(Response::Done);
            }
            MetaCommand::RecordMonitorRun { table, at, report } => {
                batch.put(keyspace::monitor_run(table, *at), encode(report)?);
                return Ok(Response::Done);
            }
            MetaCommand::RecordServingStats { table, day, node, seq, stats } => {
                batch.put(keyspace::serving_stats(table, *day, *node, *seq), encode(stats)?);
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
                // An export range is deduplicated by its shard's mark; any other source by
                // its key, remembered for SOURCE_RETENTION_MICROS.
                match export {
                    Some(r) => {
                        if let Err(busy) = self.state.check_no_backup_cut(leader_time, "an export") {
                            return Ok(Response::Rejected(busy));
                        }
                        if self.state.export_marks.get(&r.shard).is_some_and(|m| *m >= r.from) {
                            return Ok(Response::Duplicate);
                        }
                        self.state.export_marks.insert(r.shard, r.through);
                    }
                    None => {
                        if !self.remember_source(tree, &source.0, &source.1, leader_time, batch)? {
                            return Ok(Response::Duplicate);
                        }
                    }
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
                Response::Done
            }
            MetaCommand::SetReplicas { shard, replicas, conf_ver } => {
                let busy = self.state.ops.iter().any(|op| op.kind.shards().contains(shard));
                let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else {
                    return Ok(Response::Rejected(quiver_core::Error::ShardNotFound(*shard)));
                };
                if s.epoch.conf_ver != *conf_ver || s.moving() || busy {
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
            MetaCommand::ReportLeader { leader, terms } => {
                let mut changed = false;
                for (shard, term) in terms {
                    let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else { continue };
                    if *term > s.leader_term {
                        (s.leader, s.leader_term) = (Some(*leader), *term);
                        changed = true;
                    }
                }
                // Only a change is worth persisting.
                if !changed {
                    return Ok(Response::Done);
                }
                Response::Done
            }
            MetaCommand::BeginBackupCut { id, hold_ms } => {
                let held_by_another = self.state.backup_cut.as_ref().is_some_and(|(other, _)| other != id);
                if held_by_another
                    && let Err(busy) = self.state.check_no_backup_cut(leader_time, &format!("backup {id}"))
                {
                    return Ok(Response::Rejected(busy));
                }
                if let Some(ingest) = publishing(tree, batch, leader_time)? {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!(
                            "ingest {ingest} is publishing its files and rows; the backup cuts once it has"
                        ),
                        retry_after_ms: 500,
                    }));
                }
                let reshaping =
                    self.state.ops.iter().find(|op| matches!(op.kind, OpKind::Split { .. } | OpKind::Merge { .. }));
                if let Some(op) = reshaping {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!(
                            "shard operation {} ({}) is under way; a backup starts once it ends",
                            op.id, op.kind
                        ),
                        retry_after_ms: 1000,
                    }));
                }
                let until =
                    leader_time.saturating_add(i64::try_from(*hold_ms).unwrap_or(i64::MAX).saturating_mul(1000));
                self.state.backup_cut = Some((id.clone(), until));
                // Under way from here: garbage collection keeps what it may list (`backup::pins`).
                let abandoned = leader_time.saturating_sub(crate::backup::pins::UNDER_WAY_MAX_MICROS);
                for kv in tree.scan_prefix(&[keyspace::BACKUP_UNDER_WAY]) {
                    let (key, value) = kv?;
                    if decode::<i64>(&value)? < abandoned {
                        batch.delete(key);
                    }
                }
                batch.put(keyspace::backup_under_way(id), encode(&leader_time)?);
                Response::Done
            }
            MetaCommand::EndBackupCut { id } => {
                // A cut taken after its hold lapsed, or was taken by another backup, may have
                // let an export commit between two groups' cuts: that backup must not stand.
                // (A lapsed hold holds nothing: it stays until the next backup's.)
                match &self.state.backup_cut {
                    None => return Ok(Response::Done),
                    Some((held, until)) if held != id || leader_time >= *until => {
                        return Ok(Response::Rejected(quiver_core::Error::Unavailable(format!(
                            "backup {id} took longer to cut the groups than its hold on exports lasted; make it \
                             again"
                        ))));
                    }
                    Some(_) => self.state.backup_cut = None,
                }
                Response::Done
            }
            // Pins do not touch the in-memory state: only their own keys.
            MetaCommand::PinFiles { backup, location, paths } => {
                for path in paths {
                    batch.put(keyspace::backup_pin(path, backup), encode(location)?);
                }
                return Ok(Response::Done);
            }
            MetaCommand::UnpinFiles { backup, paths } => {
                for path in paths {
                    batch.delete(keyspace::backup_pin(path, backup));
                }
                return Ok(Response::Done);
            }
            MetaCommand::CreateToken { hash, name, scope, role, pii, ttl_micros, created_by } => {
                if self.state.tokens.values().any(|t| t.name == *name) {
                    let taken = format!(
                        "a token named '{name}' exists (names are never reused, revoked or not); pick another name"
                    );
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(taken)));
                }
                let info = TokenInfo {
                    name: name.clone(),
                    scope: scope.clone(),
                    role: *role,
                    pii: *pii,
                    created_at: leader_time,
                    created_by: created_by.clone(),
                    expires_at: ttl_micros.map(|ttl| leader_time.saturating_add(ttl)),
                    revoked_at: None,
                };
                self.state.tokens.insert(*hash, info);
                Response::Done
            }
            MetaCommand::RevokeToken { name } => match self.state.tokens.values_mut().find(|t| t.name == *name) {
                Some(token) => {
                    token.revoked_at.get_or_insert(leader_time);
                    Response::Done
                }
                None => return Ok(Response::Rejected(quiver_core::access::unknown_token(name))),
            },
            // Audit entries do not touch the in-memory state: only their own keys. The
            // retention is the cluster's (the chain's head), whatever the proposer says.
            MetaCommand::RecordAudit { entries, .. } => {
                let budget = EXPIRED_PER_COMMIT * entries.len().max(1);
                let retention = audit_chain::head(tree, batch)?.retention_micros();
                let cutoff = leader_time.saturating_sub(retention);
                // Entries from before the chain began expire by time, as they were kept.
                for kv in tree.scan_prefix(&[keyspace::AUDIT]).take(budget) {
                    let (key, _) = kv?;
                    match keyspace::audit_time(&key) {
                        Some(at) if at < cutoff => batch.delete(key),
                        _ => break,
                    }
                }
                audit_chain::append(tree, batch, entries, leader_time, budget)?;
                return Ok(Response::Done);
            }
            MetaCommand::SetAuditRetention { retention_micros } => {
                if *retention_micros < audit_chain::MIN_RETENTION_MICROS {
                    let short = "the audit log is kept for a day at least".to_string();
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(short)));
                }
                audit_chain::set_retention(tree, batch, *retention_micros)?;
                return Ok(Response::Done);
            }
            MetaCommand::SetSplitPoint { op, at } => {
                let map = &self.state.shard_map;
                let Some(kind) = self.state.ops.iter_mut().find(|o| o.id == *op).map(|o| &mut o.kind) else {
                    let gone = format!("operation {op} is not under way");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                };
                let OpKind::Split { shard, at: chosen, .. } = kind else {
                    let odd = format!("operation {op} is not a split");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                };
                let inside = map.shard(*shard).is_ok_and(|s| s.start < *at && *at <= s.end);
                if *chosen == 0 && !inside {
                    let outside = format!("split point {at:#018x} is not inside shard {shard}'s range");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(outside)));
                }
                if *chosen == 0 {
                    *chosen = *at;
                }
                Response::Done
            }
            MetaCommand::RecordBackup(record) => {
                batch.delete(keyspace::backup_under_way(&record.id));
                self.state.backups.push_back(record.clone());
                while self.state.backups.len() > BACKUPS_KEPT {
                    self.state.backups.pop_front();
                }
                Response::Done
            }
            MetaCommand::StartOp { kind, requested } => match self.start_op(kind, *requested, leader_time) {
                Ok(id) => Response::OpId(id),
                Err(e) => return Ok(Response::Rejected(e)),
            },
            MetaCommand::FinishOp { id, outcome } => {
                batch.delete(keyspace::merge_claim(*id));
                if !self.finish_op(*id, outcome.clone(), leader_time) {
                    return Ok(Response::Done);
                }
                Response::Done
            }
            MetaCommand::ClaimMerge { op } => {
                if !self.state.ops.iter().any(|o| o.id == *op && matches!(o.kind, OpKind::Merge { .. })) {
                    let gone = format!("merge {op} is no longer under way: it ended or was abandoned");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                }
                batch.put(keyspace::merge_claim(*op), Vec::new());
                Response::Done
            }
            MetaCommand::AbandonOp { id, why } => {
                let Some(op) = self.state.ops.iter().find(|o| o.id == *id) else { return Ok(Response::Done) };
                match op.kind {
                    OpKind::Split { shard, .. } => {
                        let why = format!("a split cannot be cancelled: shard {shard} may have applied it already");
                        return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(why)));
                    }
                    OpKind::Merge { .. } => {
                        let key = keyspace::merge_claim(*id);
                        let claimed = match batch.pending(&key) {
                            Some(pending) => pending.is_some(),
                            None => tree.get(&key)?.is_some(),
                        };
                        if claimed {
                            return Ok(Response::Done);
                        }
                    }
                    OpKind::MoveReplica { shard, to, .. } => {
                        let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == shard) else {
                            return Ok(Response::Done);
                        };
                        if s.voters.contains(&to) {
                            return Ok(Response::Done);
                        }
                        roll_back(s);
                    }
                    OpKind::TransferLeader { .. } | OpKind::Rebalance => {}
                }
                self.finish_op(*id, Outcome::Failed(why.clone()), leader_time);
                Response::Done
            }
            MetaCommand::BeginPublish { id, lease_ms } => {
                if let Some((backup, until)) = &self.state.backup_cut
                    && leader_time < *until
                {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!("backup {backup} is cutting the groups; the ingest publishes once it has"),
                        retry_after_ms: 200,
                    }));
                }
                let until =
                    leader_time.saturating_add(i64::try_from(*lease_ms).unwrap_or(i64::MAX).saturating_mul(1000));
                batch.put(keyspace::ingest_publishing(id), encode(&until)?);
                return Ok(Response::Done);
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
                    batch.put(keyspace::CLUSTER_ID, encode(id)?);
                }
                return Ok(Response::Done);
            }
            MetaCommand::MarkOfflineStore { cluster } => {
                batch.put(keyspace::OFFLINE_MARK, encode(cluster)?);
                return Ok(Response::Done);
            }
            MetaCommand::EndPublish { id } => {
                batch.delete(keyspace::ingest_publishing(id));
                return Ok(Response::Done);
            }
            MetaCommand::RollBackMove { shard, conf_ver } => {
                if let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard)
                    && s.epoch.conf_ver == *conf_ver
                {
                    roll_back(s);
                }
                Response::Done
            }
            MetaCommand::CommitMerge { op, left, right } => {
                let map = &mut self.state.shard_map;
                let Some(r) = map.shards.iter().position(|s| s.id == *right) else {
                    return Ok(Response::Done);
                };
                let below = r.checked_sub(1).filter(|l| map.shards[*l].id == *left);
                let Some(l) = below else {
                    let odd = format!("shard {left} is not the neighbour below shard {right}");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                };
                let upper = map.shards.remove(r);
                let lower = &mut map.shards[l];
                lower.end = upper.end;
                lower.epoch.version = lower.epoch.version.max(upper.epoch.version) + 1;
                self.state.export_marks.remove(right);
                batch.delete(keyspace::merge_claim(*op));
                self.finish_op(*op, Outcome::Done, leader_time);
                Response::Done
            }
            MetaCommand::CommitSplit { op, shard, at, child } => {
                let map = &mut self.state.shard_map;
                if map.shards.iter().any(|s| s.id == *child) {
                    return Ok(Response::Done);
                }
                let Some(i) = map.shards.iter().position(|s| s.id == *shard && s.start < *at && *at <= s.end) else {
                    let gone = format!("shard {shard} has no range to split at {at:#018x}");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                };
                let parent = &mut map.shards[i];
                parent.epoch.version += 1;
                let upper = Shard { id: *child, start: *at, leader: None, leader_term: 0, ..parent.clone() };
                parent.end = at - 1;
                map.shards.insert(i + 1, upper);
                // The point the shard's leader chose, in the record of the operation.
                if let Some(OpKind::Split { at: chosen, .. }) =
                    self.state.ops.iter_mut().find(|o| o.id == *op).map(|o| &mut o.kind)
                {
                    *chosen = *at;
                }
                self.finish_op(*op, Outcome::Done, leader_time);
                Response::Done
            }
        };
        self.changed = true;
        Ok(response)
    }

    /// Records a shard operation after checking it against the state; an operator's request
    /// ends the placement rule's operations on the same shards. A replica move starts at once
    /// (the shard's leader carries it out, see `workers::replicas`).
    fn start_op(&mut self, kind: &OpKind, requested: bool, leader_time: i64) -> quiver_core::Result<u64> {
        let highest = self.state.shard_map.shards.iter().map(|s| s.id).max().unwrap_or(0);
        let child = self.state.next_shard_id.max(highest + 1);
        let kind = kind.clone().settle(&self.state.shard_map, child);
        if matches!(kind, OpKind::Split { .. } | OpKind::Merge { .. }) {
            self.state.check_no_backup_cut(leader_time, &kind.to_string())?;
        }
        // An operator's request goes before the placement rule's leadership moves on its
        // shards (never before a split, which may be applied in the shard already).
        let preemptible = |op: &ShardOp| {
            let overlaps = op.kind.shards().iter().any(|s| kind.shards().contains(s));
            requested && !op.requested && overlaps && matches!(op.kind, OpKind::TransferLeader { .. })
        };
        let (preempted, others): (Vec<ShardOp>, Vec<ShardOp>) = self.state.ops.iter().cloned().partition(preemptible);
        kind.check(&self.state.shard_map, &self.state.active_nodes(), &others)?;
        let id = self.state.next_op_id.max(1);
        for op in preempted {
            let outcome = Outcome::Failed(format!("preempted by operation {id}, asked for by an operator"));
            self.finish_op(op.id, outcome, leader_time);
        }
        if let OpKind::Split { .. } = kind {
            self.state.next_shard_id = child + 1;
        }
        if let OpKind::MoveReplica { shard, from, to } = &kind
            && let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard)
        {
            s.replicas = s.replicas.iter().map(|r| if r == from { *to } else { *r }).collect();
            s.epoch.conf_ver += 1;
        }
        self.state.next_op_id = id + 1;
        self.state.ops.push(ShardOp { id, kind, started_at: leader_time, requested });
        Ok(id)
    }

    /// Moves operation `id` to the ended ones; false when it is not under way.
    fn finish_op(&mut self, id: u64, outcome: Outcome, leader_time: i64) -> bool {
        let Some(i) = self.state.ops.iter().position(|op| op.id == id) else { return false };
        let op = self.state.ops.remove(i);
        self.state.finished_ops.push_back(FinishedOp { op, finished_at: leader_time, outcome });
        while self.state.finished_ops.len() > FINISHED_OPS_KEPT {
            self.state.finished_ops.pop_front();
        }
        true
    }

    /// Records source `source` of `table` at `leader_time`; false when it was committed
    /// before. Also forgets a few expired sources (deterministic: it depends only on the
    /// tree and the entry's time).
    fn remember_source(
        &mut self,
        tree: &dyn KvTree,
        table: &TableRef,
        source: &str,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<bool> {
        let key = keyspace::source(table, source);
        if self.pending_sources.contains(&key) || tree.get(&key)?.is_some() {
            return Ok(false);
        }
        let cutoff = leader_time.saturating_sub(SOURCE_RETENTION_MICROS);
        for kv in tree.scan_prefix(&[keyspace::SOURCE_EXPIRY]).take(EXPIRED_PER_COMMIT) {
            let (expiry_key, _) = kv?;
            match keyspace::split_expiry(&expiry_key) {
                Some((at, expired)) if at < cutoff => {
                    batch.delete(expired.to_vec());
                    batch.delete(expiry_key.clone());
                }
                _ => break,
            }
        }
        batch.put(keyspace::expiry(keyspace::SOURCE_EXPIRY, leader_time, &key), Vec::new());
        batch.put(key.clone(), leader_time.to_be_bytes().to_vec());
        self.pending_sources.insert(key);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::row::WriteSeq;

    use super::*;
    use crate::storage::{KvEngine, MemEngine};

    fn file(path: &str) -> DataFile {
        DataFile { path: path.into(), day: 0, rows: 1, bytes: 1, min_ts: 0, max_ts: 0, min_seq: 0, max_seq: 0 }
    }

    fn table() -> TableRef {
        TableRef { project: "p".into(), set: "s".into(), version: 1 }
    }

    /// Applies one command as the state machine does: a batch, written, then published.
    fn apply(machine: &mut MetaMachine, tree: &dyn KvTree, at: i64, cmd: MetaCommand) -> Response {
        let mut batch = WriteBatch::default();
        let response = machine.apply(tree, &cmd, at, &mut batch).unwrap();
        machine.persist(&mut batch).unwrap();
        tree.write(batch).unwrap();
        machine.publish();
        response
    }

    fn commit(path: &str, source: &str, export: Option<ExportRange>) -> MetaCommand {
        MetaCommand::CommitFiles { files: vec![(table(), file(path))], source: (table(), source.into()), export }
    }

    #[test]
    fn an_ingest_source_commits_once_until_it_is_forgotten() {
        let engine = MemEngine::default();
        let tree = engine.tree("meta").unwrap();
        let (mut machine, view) = MetaMachine::new();
        assert_eq!(apply(&mut machine, tree.as_ref(), 10, commit("a", "ingest:x", None)), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), 20, commit("b", "ingest:x", None)), Response::Duplicate);
        assert_eq!(view.borrow().manifest[&table()].len(), 1, "the duplicate listed nothing");
        // Two commits of one source in the same batch: the second is the duplicate.
        let mut batch = WriteBatch::default();
        let first = machine.apply(tree.as_ref(), &commit("c", "ingest:y", None), 30, &mut batch).unwrap();
        let second = machine.apply(tree.as_ref(), &commit("d", "ingest:y", None), 30, &mut batch).unwrap();
        assert_eq!((first, second), (Response::Done, Response::Duplicate));
        machine.persist(&mut batch).unwrap();
        tree.write(batch).unwrap();
        machine.publish();
        // A commit past the retention forgets "x", which may then be committed again.
        let later = 10 + SOURCE_RETENTION_MICROS + 1;
        assert_eq!(apply(&mut machine, tree.as_ref(), later, commit("e", "ingest:z", None)), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), later, commit("f", "ingest:x", None)), Response::Done);
        assert_eq!(view.borrow().manifest[&table()].len(), 4);
    }

    /// One export round followed by compaction of its file into the day's compacted file.
    fn export_round(machine: &mut MetaMachine, tree: &dyn KvTree, round: u64) -> Response {
        let seq = WriteSeq { log_index: round, pos: 0 };
        let new = format!("f{round}");
        let range = ExportRange { shard: 1, from: seq, through: seq };
        let committed = apply(machine, tree, round as i64, commit(&new, &format!("export:{round}"), Some(range)));
        let remove = if round == 1 { vec![new] } else { vec!["c".to_string(), new] };
        let replace = MetaCommand::ReplaceFiles { table: table(), remove: remove.clone(), add: file("c") };
        assert_eq!(apply(machine, tree, round as i64, replace), Response::Done);
        apply(machine, tree, round as i64, MetaCommand::ForgetGarbage { paths: remove });
        committed
    }

    #[test]
    fn a_state_in_another_layout_is_refused_and_this_layout_reloads() {
        let engine = MemEngine::default();
        let tree = engine.tree("meta").unwrap();
        let (mut machine, _view) = MetaMachine::new();
        apply(&mut machine, tree.as_ref(), 1, commit("a", "ingest:x", None));
        let (mut reloaded, view) = MetaMachine::new();
        reloaded.load(tree.as_ref()).unwrap();
        assert_eq!(view.borrow().manifest[&table()].len(), 1);
        for stored in [None, Some(STATE_FORMAT + 1)] {
            let mut batch = WriteBatch::default();
            match stored {
                Some(f) => batch.put(keyspace::META_FORMAT, encode(&f).unwrap()),
                None => batch.delete(keyspace::META_FORMAT),
            }
            tree.write(batch).unwrap();
            let err = MetaMachine::new().0.load(tree.as_ref()).unwrap_err().to_string();
            assert!(err.contains("another version of Quiver") && err.contains("empty data dir"), "{err}");
        }
    }

    #[test]
    fn leader_reports_of_an_older_term_change_nothing() {
        let engine = MemEngine::default();
        let tree = engine.tree("meta").unwrap();
        let (mut machine, view) = MetaMachine::new();
        let shard_map = ShardMap::uniform(2, &[1, 2]).unwrap();
        apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes: vec![], shard_map });
        let report = |leader, terms: Vec<(u64, u64)>| MetaCommand::ReportLeader { leader, terms };
        apply(&mut machine, tree.as_ref(), 2, report(2, vec![(1, 5), (2, 3), (9, 1)]));
        apply(&mut machine, tree.as_ref(), 3, report(1, vec![(1, 4), (2, 4)]));
        let leaders =
            |v: &MetaView| v.borrow().shard_map.shards.iter().map(|s| (s.leader, s.leader_term)).collect::<Vec<_>>();
        assert_eq!(leaders(&view), vec![(Some(2), 5), (Some(1), 4)]);
        // The same report again is not even persisted.
        let mut batch = WriteBatch::default();
        machine.apply(tree.as_ref(), &report(2, vec![(1, 5)]), 4, &mut batch).unwrap();
        machine.persist(&mut batch).unwrap();
        assert!(batch.into_ops().is_empty(), "an unchanged state is not written again");
    }

    #[test]
    fn an_operators_request_goes_before_the_placement_rules_own_step() {
        let engine = MemEngine::default();
        let tree = engine.tree("meta").unwrap();
        let (mut machine, view) = MetaMachine::new();
        let nodes =
            (1..=3).map(|id| NodeInfo { id, addr: id.to_string(), client_addr: id.to_string(), draining: false });
        let shard_map = ShardMap::uniform(2, &[1, 2, 3]).unwrap();
        apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes: nodes.collect(), shard_map });
        let start = |kind, requested| MetaCommand::StartOp { kind, requested };
        let placement = start(OpKind::TransferLeader { shard: 1, to: 2 }, false);
        assert_eq!(apply(&mut machine, tree.as_ref(), 2, placement.clone()), Response::OpId(1));
        // The placement rule's second step on a busy shard is refused; an operator's is not.
        assert!(matches!(apply(&mut machine, tree.as_ref(), 3, placement), Response::Rejected(_)));
        let split = start(OpKind::Split { shard: 1, at: 0, child: 0 }, true);
        assert_eq!(apply(&mut machine, tree.as_ref(), 4, split.clone()), Response::OpId(2));
        let state = view.borrow().clone();
        assert_eq!(state.ops.iter().map(|op| op.id).collect::<Vec<_>>(), [2]);
        assert!(
            matches!(&state.finished_ops[0].outcome, Outcome::Failed(why) if why.contains("preempted by operation 2"))
        );
        // An operator's operation is never preempted, nor a split of the placement rule's.
        assert!(matches!(apply(&mut machine, tree.as_ref(), 5, split), Response::Rejected(_)));
        let auto_split = start(OpKind::Split { shard: 2, at: 0, child: 0 }, false);
        assert_eq!(apply(&mut machine, tree.as_ref(), 6, auto_split), Response::OpId(3));
        let transfer = start(OpKind::TransferLeader { shard: 2, to: 3 }, true);
        assert!(matches!(apply(&mut machine, tree.as_ref(), 7, transfer), Response::Rejected(_)));
    }

    /// A meta machine bootstrapped with two shards on node 1, its tree and its view.
    fn two_shards_on_one_node() -> (Arc<dyn KvTree>, MetaMachine, MetaView) {
        let tree = MemEngine::default().tree("meta").unwrap();
        let (mut machine, view) = MetaMachine::new();
        let shard_map = ShardMap::uniform(2, &[1]).unwrap();
        let nodes = vec![NodeInfo { id: 1, addr: "1".into(), client_addr: "1".into(), draining: false }];
        apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes, shard_map });
        (tree, machine, view)
    }

    #[test]
    fn a_backup_cut_holds_exports_and_splits_until_it_ends_or_lapses() {
        let (tree, mut machine, view) = two_shards_on_one_node();
        let begin = |id: &str| MetaCommand::BeginBackupCut { id: id.into(), hold_ms: 1 };
        let busy = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::Busy { .. }));
        let seq = WriteSeq { log_index: 1, pos: 0 };
        let export = commit("e", "export:1", Some(ExportRange { shard: 1, from: seq, through: seq }));
        let split = MetaCommand::StartOp { kind: OpKind::Split { shard: 1, at: 0, child: 0 }, requested: true };
        assert_eq!(apply(&mut machine, tree.as_ref(), 1_000, begin("a")), Response::Done);
        assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, export.clone())), "exports wait");
        assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, split.clone())), "splits wait");
        assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, begin("b"))), "one backup cuts at a time");
        assert_eq!(apply(&mut machine, tree.as_ref(), 1_500, commit("i", "ingest:x", None)), Response::Done);
        // The hold lapses by itself (a backup that died), or ends when asked.
        assert_eq!(apply(&mut machine, tree.as_ref(), 2_000, export), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), 2_000, begin("b")), Response::Done);
        assert_eq!(
            apply(&mut machine, tree.as_ref(), 2_100, MetaCommand::EndBackupCut { id: "b".into() }),
            Response::Done
        );
        assert!(view.borrow().backup_cut.is_none());
        // A cut that ends after its hold lapsed does not stand.
        assert_eq!(apply(&mut machine, tree.as_ref(), 2_100, begin("late")), Response::Done);
        let late = apply(&mut machine, tree.as_ref(), 3_200, MetaCommand::EndBackupCut { id: "late".into() });
        assert!(matches!(late, Response::Rejected(quiver_core::Error::Unavailable(_))), "{late:?}");
        assert!(matches!(apply(&mut machine, tree.as_ref(), 3_300, split), Response::OpId(_)));
        assert!(busy(apply(&mut machine, tree.as_ref(), 3_400, begin("c"))), "no cut while a split is under way");
    }

    #[test]
    fn a_split_point_is_chosen_once() {
        let (tree, mut machine, view) = two_shards_on_one_node();
        let upper = view.borrow().shard_map.shards[1].clone();
        let split = MetaCommand::StartOp { kind: OpKind::Split { shard: upper.id, at: 0, child: 0 }, requested: true };
        let Response::OpId(op) = apply(&mut machine, tree.as_ref(), 2, split) else { panic!("the split starts") };
        let point = |at| MetaCommand::SetSplitPoint { op, at };
        let refused = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::InvalidArgument(_)));
        assert!(refused(apply(&mut machine, tree.as_ref(), 3, point(upper.start))), "the start stays with the shard");
        assert_eq!(apply(&mut machine, tree.as_ref(), 3, point(upper.start + 10)), Response::Done);
        // A later leader's choice, on other rows, changes nothing.
        assert_eq!(apply(&mut machine, tree.as_ref(), 4, point(upper.start + 99)), Response::Done);
        let recorded = view.borrow().ops[0].kind.clone();
        assert_eq!(recorded, OpKind::Split { shard: upper.id, at: upper.start + 10, child: 3 });
        let gone = MetaCommand::SetSplitPoint { op: op + 1, at: upper.start + 10 };
        assert!(refused(apply(&mut machine, tree.as_ref(), 5, gone)));
    }

    #[test]
    fn a_merge_is_abandoned_at_its_deadline_only_until_it_is_claimed() {
        let (tree, mut machine, view) = two_shards_on_one_node();
        let merge = || MetaCommand::StartOp { kind: OpKind::Merge { left: 1, right: 2 }, requested: true };
        let abandon = |id| MetaCommand::AbandonOp { id, why: "late".into() };
        let Response::OpId(first) = apply(&mut machine, tree.as_ref(), 2, merge()) else { panic!("a merge starts") };
        assert_eq!(apply(&mut machine, tree.as_ref(), 3, abandon(first)), Response::Done);
        assert!(view.borrow().ops.is_empty());
        assert_eq!(view.borrow().finished_ops.back().unwrap().outcome, Outcome::Failed("late".into()));
        let claim = |op| MetaCommand::ClaimMerge { op };
        assert!(matches!(apply(&mut machine, tree.as_ref(), 4, claim(first)), Response::Rejected(_)), "too late");

        let Response::OpId(second) = apply(&mut machine, tree.as_ref(), 5, merge()) else { panic!("again") };
        assert_eq!(apply(&mut machine, tree.as_ref(), 6, claim(second)), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), 7, abandon(second)), Response::Done);
        assert_eq!(view.borrow().ops.len(), 1, "a claimed merge goes on");
        let commit = MetaCommand::CommitMerge { op: second, left: 1, right: 2 };
        assert_eq!(apply(&mut machine, tree.as_ref(), 8, commit), Response::Done);
        assert!(tree.get(&keyspace::merge_claim(second)).unwrap().is_none(), "the claim goes with the merge");
    }

    #[test]
    fn a_cancelled_move_goes_back_to_the_voters_and_a_split_is_not_cancelled() {
        let (tree, mut machine, view) = two_shards_on_one_node();
        let join = MetaCommand::AddNode { addr: "2".into() };
        let Response::NodeId(two) = apply(&mut machine, tree.as_ref(), 2, join) else { panic!("node 2 joins") };
        let mv = MetaCommand::StartOp { kind: OpKind::MoveReplica { shard: 1, from: 1, to: two }, requested: true };
        let Response::OpId(op) = apply(&mut machine, tree.as_ref(), 3, mv) else { panic!("the move starts") };
        assert_eq!(view.borrow().shard_map.shards[0].replicas, vec![two]);
        let cancel = |id| MetaCommand::AbandonOp { id, why: "cancelled".into() };
        assert_eq!(apply(&mut machine, tree.as_ref(), 4, cancel(op)), Response::Done);
        let shard = view.borrow().shard_map.shards[0].clone();
        assert_eq!((shard.moving(), shard.replicas), (false, vec![1]), "back on its voters");
        assert!(view.borrow().ops.is_empty());

        let split = MetaCommand::StartOp { kind: OpKind::Split { shard: 2, at: 0, child: 0 }, requested: true };
        let Response::OpId(split) = apply(&mut machine, tree.as_ref(), 5, split) else { panic!("the split starts") };
        assert!(matches!(apply(&mut machine, tree.as_ref(), 6, cancel(split)), Response::Rejected(_)));
        assert_eq!(view.borrow().ops.len(), 1, "the split goes on");
        // A placement move given up by the scheduler (its target silent) goes back too.
        let conf_ver = view.borrow().shard_map.shards[0].epoch.conf_ver;
        let mv = MetaCommand::SetReplicas { shard: 1, replicas: vec![two], conf_ver };
        assert_eq!(apply(&mut machine, tree.as_ref(), 7, mv), Response::Done);
        let stale = MetaCommand::RollBackMove { shard: 1, conf_ver };
        assert_eq!(apply(&mut machine, tree.as_ref(), 8, stale), Response::Done);
        assert!(view.borrow().shard_map.shards[0].moving(), "a roll-back at an older conf_ver changes nothing");
        let roll_back = MetaCommand::RollBackMove { shard: 1, conf_ver: conf_ver + 1 };
        assert_eq!(apply(&mut machine, tree.as_ref(), 9, roll_back), Response::Done);
        assert_eq!(view.borrow().shard_map.shards[0].replicas, vec![1]);
    }

    #[test]
    fn a_backup_does_not_cut_into_an_ingest_publishing_nor_an_ingest_into_a_cut() {
        let (tree, mut machine, _view) = two_shards_on_one_node();
        let busy = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::Busy { .. }));
        let publish = |id: &str| MetaCommand::BeginPublish { id: id.into(), lease_ms: 1 };
        let cut = |id: &str| MetaCommand::BeginBackupCut { id: id.into(), hold_ms: 1 };
        assert_eq!(apply(&mut machine, tree.as_ref(), 1_000, publish("i")), Response::Done);
        assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, cut("b"))), "the backup waits for the ingest");
        assert_eq!(
            apply(&mut machine, tree.as_ref(), 1_500, MetaCommand::EndPublish { id: "i".into() }),
            Response::Done
        );
        assert_eq!(apply(&mut machine, tree.as_ref(), 1_600, cut("b")), Response::Done);
        assert!(busy(apply(&mut machine, tree.as_ref(), 1_700, publish("j"))), "the ingest waits for the cut");
        // A lease that lapsed (its ingest died) holds nothing.
        assert_eq!(apply(&mut machine, tree.as_ref(), 3_000, publish("k")), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), 5_000, cut("c")), Response::Done);
    }

    #[test]
    fn the_first_cluster_id_stays() {
        let (tree, mut machine, _view) = two_shards_on_one_node();
        let set = |id: &str| MetaCommand::SetClusterId { id: id.into() };
        assert!(matches!(apply(&mut machine, tree.as_ref(), 1, set("nope")), Response::Rejected(_)));
        assert_eq!(cluster_id(tree.as_ref()).unwrap(), None);
        let (first, second) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210");
        assert_eq!(apply(&mut machine, tree.as_ref(), 2, set(first)), Response::Done);
        assert_eq!(apply(&mut machine, tree.as_ref(), 3, set(second)), Response::Done);
        assert_eq!(cluster_id(tree.as_ref()).unwrap().as_deref(), Some(first));
        assert_eq!(tree.get(keyspace::CLUSTER_ID).unwrap().unwrap()[0], 32, "a length-prefixed string");
    }

    #[test]
    fn export_rounds_leave_nothing_behind_but_their_mark() {
        let engine = MemEngine::default();
        let tree = engine.tree("meta").unwrap();
        let (mut machine, view) = MetaMachine::new();
        for round in 1..=100 {
            assert_eq!(export_round(&mut machine, tree.as_ref(), round), Response::Done);
        }
        // A replayed range is refused by the mark, not by a remembered source.
        let seq = WriteSeq { log_index: 50, pos: 0 };
        let replay = commit("g", "export:50", Some(ExportRange { shard: 1, from: seq, through: seq }));
        assert_eq!(apply(&mut machine, tree.as_ref(), 101, replay), Response::Duplicate);
        let keys = tree.scan((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)).count();
        assert_eq!(keys, 2, "only the meta state and its layout are stored");
        // The state does not grow with the rounds: what one round adds, compaction takes away.
        let size = encode(&**view.borrow()).unwrap().len();
        assert_eq!(export_round(&mut machine, tree.as_ref(), 101), Response::Done);
        assert_eq!(encode(&**view.borrow()).unwrap().len(), size);
        assert_eq!(view.borrow().export_marks[&1], WriteSeq { log_index: 101, pos: 0 });
    }
}
