//! The state machine of one group, in its own tree. Each `apply` call writes its data
//! changes together with the last applied log id and membership in one atomic batch, so a
//! crash leaves the tree either before or after the whole call and no entry is applied
//! twice (openraft applies from the stored applied id on): a tie between equal event times
//! goes to the write applied later (`row::supersedes`). A split writes the child's trees
//! before the parent's batch, so it may run again after a crash; it changes nothing the
//! second time (`shard::split`). A shard's apply calls also note the keys they change for a
//! split's pre-copy (`shard::staging`) and sweep a bounded part of the rows a split gave
//! away (`shard::leftover`).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};

use super::cut::Cuts;
use super::{NodeId, TypeConfig};
use crate::shard::machine::{Before, Entry as ShardEntry, ShardMachine};
use crate::shard::staging::Staging;
use crate::shard::{PendingWrites, Range};
use quiver_store::codec::{Record, decode, encode, load, store};
use quiver_store::command::{Command, Response};
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{APPLIED, APPLIED_TIME, MEMBERSHIP, SHARD_RANGE, SNAPSHOT_CURRENT, TreePart, tree_name};
use quiver_store::meta::MetaMachine;
use quiver_store::storage::{KvEngine, KvPair, KvTree, WriteBatch};

type StorageResult<T> = std::result::Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// What a group holds: the registry and cluster metadata, or a range of online rows.
pub enum Kind {
    Meta(Box<MetaMachine>),
    Shard(Box<ShardMachine>),
}

/// What a group's state machine shares with the rest of the node.
pub struct Shared {
    /// The tree reads go to.
    pub data: Arc<dyn KvTree>,
    /// A shard's range (`None` for the meta group).
    pub range: Option<Arc<Range>>,
    /// A shard's split pre-copy (`None` for the meta group).
    pub staging: Option<Arc<Staging>>,
    /// Consistent reads of the tree for backups.
    pub cuts: Arc<Cuts>,
}

pub struct StateMachine {
    engine: Arc<dyn KvEngine>,
    tree: Arc<dyn KvTree>,
    snapshots: Arc<dyn KvTree>,
    cuts: Arc<Cuts>,
    kind: Kind,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    applied_time: Arc<AtomicI64>,
    snapshot_count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub(crate) data: Vec<u8>,
}

impl Record for StoredSnapshot {}

impl StateMachine {
    pub fn open(engine: Arc<dyn KvEngine>, group: u64, kind: Kind) -> Result<StateMachine> {
        let tree = engine.tree(&tree_name(group, TreePart::State))?;
        let snapshots = engine.tree(&tree_name(group, TreePart::Snapshot))?;
        let applied = tree.get(APPLIED)?.map(|b| load::<Option<LogId<NodeId>>>(&b)).transpose()?.flatten();
        let membership = tree.get(MEMBERSHIP)?.map(|b| load(&b)).transpose()?.unwrap_or_default();
        if let Kind::Shard(shard) = &kind
            && let Some(range) = shard.initial()
            && tree.get(SHARD_RANGE)?.is_none()
        {
            let mut batch = WriteBatch::default();
            batch.put(SHARD_RANGE, store(&Some(range))?);
            tree.write(batch)?;
        }
        let cuts = Arc::new(Cuts::open(engine.clone(), group)?);
        let mut sm = StateMachine {
            engine,
            tree,
            snapshots,
            cuts,
            kind,
            applied,
            membership,
            applied_time: Arc::default(),
            snapshot_count: 0,
        };
        sm.reload()?;
        Ok(sm)
    }

    /// What the node shares with the state machine (`Shared`).
    pub fn shared(&self) -> Shared {
        Shared { data: self.data(), range: self.range(), staging: self.staging(), cuts: self.cuts() }
    }

    /// The tree reads go to (online rows of a shard); shared with the state machine.
    pub fn data(&self) -> Arc<dyn KvTree> {
        self.tree.clone()
    }

    /// Where backups open consistent reads of the tree.
    pub fn cuts(&self) -> Arc<Cuts> {
        self.cuts.clone()
    }

    /// A shard's range, kept current by `apply`; `None` for the meta group.
    pub fn range(&self) -> Option<Arc<Range>> {
        match &self.kind {
            Kind::Shard(shard) => Some(shard.range().clone()),
            Kind::Meta(_) => None,
        }
    }

    /// A shard's split pre-copy; `None` for the meta group.
    pub fn staging(&self) -> Option<Arc<Staging>> {
        match &self.kind {
            Kind::Shard(shard) => Some(shard.staging().clone()),
            Kind::Meta(_) => None,
        }
    }

    /// The leader time of the newest applied command (0 before any), kept current by `apply`.
    pub fn applied_time(&self) -> Arc<AtomicI64> {
        self.applied_time.clone()
    }

    /// Refreshes in-memory views after the tree changed wholesale (open, snapshot install).
    fn reload(&mut self) -> Result<()> {
        let time = self.tree.get(APPLIED_TIME)?.map(|b| load::<i64>(&b)).transpose()?.unwrap_or(0);
        self.applied_time.store(time, Ordering::Relaxed);
        match &mut self.kind {
            Kind::Meta(meta) => meta.load(self.tree.as_ref())?,
            Kind::Shard(shard) => shard.load(self.tree.as_ref())?,
        }
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>> {
        let mut batch = WriteBatch::default();
        let mut rows = PendingWrites::default();
        let mut responses = Vec::with_capacity(entries.len());
        let mut newest_time = None;
        for entry in entries {
            if let (EntryPayload::Normal(request), Kind::Shard(shard)) = (&entry.payload, &self.kind)
                && let Command::Shard(cmd) = &request.command
            {
                let before = shard.before(cmd);
                if before != Before::Nothing {
                    self.write_applied(std::mem::take(&mut batch), std::mem::take(&mut rows), newest_time.take())?;
                }
                if let (Before::Swept, Kind::Shard(shard)) = (before, &mut self.kind) {
                    let mut swept = WriteBatch::default();
                    shard.sweep_all(self.tree.as_ref(), &mut swept)?;
                    self.cuts.write(self.tree.as_ref(), swept)?;
                }
            }
            self.applied = Some(entry.log_id);
            if let EntryPayload::Normal(request) = &entry.payload {
                newest_time = Some(request.leader_time);
            }
            let response = match entry.payload {
                EntryPayload::Blank => Response::Done,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Done
                }
                EntryPayload::Normal(request) => match (&mut self.kind, &request.command) {
                    (Kind::Meta(meta), Command::Meta(cmd)) => {
                        meta.apply(self.tree.as_ref(), cmd, request.leader_time, &mut batch)?
                    }
                    (Kind::Shard(shard), Command::Shard(cmd)) => {
                        let at = ShardEntry {
                            index: entry.log_id.index,
                            time: request.leader_time,
                            membership: &self.membership,
                        };
                        shard.apply((&self.engine, &self.tree), at, cmd, &mut batch, &mut rows)?
                    }
                    _ => Response::Rejected(quiver_core::Error::Internal(
                        "command sent to a group of the wrong kind".into(),
                    )),
                },
            };
            responses.push(response);
        }
        self.write_applied(batch, rows, newest_time)?;
        if let Kind::Meta(meta) = &mut self.kind {
            meta.publish();
        }
        Ok(responses)
    }

    /// Writes what the entries applied so far changed, with the applied id and membership,
    /// in one batch.
    fn write_applied(&mut self, mut batch: WriteBatch, rows: PendingWrites, newest_time: Option<i64>) -> Result<()> {
        if let Kind::Shard(shard) = &mut self.kind {
            shard.step(self.tree.as_ref(), &mut batch)?;
        }
        let new_range = rows.flush_into(&mut batch)?;
        match &self.kind {
            Kind::Shard(shard) => shard.note(&batch),
            Kind::Meta(meta) => meta.persist(&mut batch)?,
        }
        batch.put(APPLIED, store(&self.applied)?);
        batch.put(MEMBERSHIP, store(&self.membership)?);
        if let Some(time) = newest_time {
            batch.put(APPLIED_TIME, store(&time)?);
        }
        self.cuts.write(self.tree.as_ref(), batch)?;
        if let Some(time) = newest_time {
            self.applied_time.store(time, Ordering::Relaxed);
        }
        if let (Some(bounds), Kind::Shard(shard)) = (new_range, &self.kind) {
            shard.range().set(bounds);
        }
        Ok(())
    }

    fn dump(&self) -> Result<Vec<u8>> {
        let pairs: Vec<KvPair> =
            self.tree.scan((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)).collect::<Result<_>>()?;
        encode(&pairs)
    }

    fn install(&mut self, meta: &SnapshotMeta<NodeId, openraft::BasicNode>, data: Vec<u8>) -> Result<()> {
        let pairs: Vec<KvPair> = decode(&data)?;
        let mut batch = WriteBatch::default();
        for kv in self.tree.scan((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)) {
            batch.delete(kv?.0);
        }
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        batch.put(APPLIED, store(&self.applied)?);
        batch.put(MEMBERSHIP, store(&self.membership)?);
        self.cuts.abandon()?;
        if let Kind::Shard(shard) = &self.kind {
            shard.abandon();
        }
        self.tree.write(batch)?;
        store_snapshot(self.engine.as_ref(), self.snapshots.as_ref(), &StoredSnapshot { meta: meta.clone(), data })?;
        self.reload()
    }
}

fn store_snapshot(engine: &dyn KvEngine, snapshots: &dyn KvTree, snapshot: &StoredSnapshot) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.put(SNAPSHOT_CURRENT, store(snapshot)?);
    snapshots.write(batch)?;
    // Logs up to the snapshot may be purged next: the snapshot must be durable first.
    engine.flush()
}

fn sm_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

/// A snapshot taken when openraft asked for a builder: the copy is made on the state
/// machine's task, between two applies, so it is consistent with `applied`.
pub struct SnapshotBuilder {
    snapshot: Result<StoredSnapshot>,
    engine: Arc<dyn KvEngine>,
    snapshots: Arc<dyn KvTree>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let stored = std::mem::replace(&mut self.snapshot, Err(Error::Storage("snapshot already built".into())));
        let stored = stored.map_err(|e| StorageIOError::read_state_machine(&e))?;
        store_snapshot(self.engine.as_ref(), self.snapshots.as_ref(), &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), &e))?;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if matches!(self.kind, Kind::Meta(_)) {
            crate::failpoint::delay("meta-apply").await;
        }
        self.apply_entries(entries.into_iter().collect()).map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_count += 1;
        let snapshot = self.dump().map(|data| {
            let snapshot_id = match self.applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshot_count),
                None => format!("none-{}", self.snapshot_count),
            };
            StoredSnapshot {
                meta: SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone(), snapshot_id },
                data,
            }
        });
        SnapshotBuilder { snapshot, engine: self.engine.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        self.install(meta, snapshot.into_inner())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = self
            .snapshots
            .get(SNAPSHOT_CURRENT)
            .and_then(|b| b.map(|b| load(&b)).transpose())
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
