//! The Raft log of one group in its own tree: entries under big-endian indexes (so scans
//! run in log order), plus the vote, the committed id and the last purged id.
//! An append is reported done only after the engine has flushed it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use super::{NodeId, TypeConfig};
use quiver_store::codec::{Record, load, store};
use quiver_store::error::Result;
use quiver_store::keyspace::{LOG_COMMITTED as COMMITTED, LOG_ENTRY as ENTRY, LOG_PURGED as PURGED, LOG_VOTE as VOTE};
use quiver_store::keyspace::{TreePart, log_entry as entry_key, tree_name};
use quiver_store::storage::{KvEngine, KvTree, WriteBatch};

type StorageResult<T> = std::result::Result<T, StorageError<NodeId>>;

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn KvEngine>,
    tree: Arc<dyn KvTree>,
}

impl LogStore {
    pub fn open(engine: Arc<dyn KvEngine>, group: u64) -> Result<LogStore> {
        let tree = engine.tree(&tree_name(group, TreePart::Log))?;
        Ok(LogStore { engine, tree })
    }

    /// True when this group has never been initialised nor received anything on this node.
    pub fn is_empty(&self) -> Result<bool> {
        let seeded = self.tree.get(PURGED)?.is_some();
        Ok(!seeded && self.tree.get(VOTE)?.is_none() && self.tree.scan_prefix(&[ENTRY]).next().is_none())
    }

    fn get<T: Record>(&self, key: &[u8]) -> Result<Option<T>> {
        self.tree.get(key)?.map(|bytes| load(&bytes)).transpose()
    }

    async fn flush(&self) -> Result<()> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.flush())
            .await
            .map_err(|e| quiver_store::error::Error::Storage(format!("flush task: {e}")))?
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>> {
        let last = self.tree.scan((Bound::Included(entry_key(0)), Bound::Included(entry_key(u64::MAX)))).next_back();
        last.transpose()?.map(|(_, v)| load(&v)).transpose()
    }

    /// Deletes entries in `range` of indexes and writes `extra` in the same batch.
    fn delete_entries(&self, from: u64, to_inclusive: u64, extra: Option<(&[u8], Vec<u8>)>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for kv in self.tree.scan((Bound::Included(entry_key(from)), Bound::Included(entry_key(to_inclusive)))) {
            batch.delete(kv?.0);
        }
        if let Some((key, value)) = extra {
            batch.put(key, value);
        }
        self.tree.write(batch)
    }
}

fn read_err(e: quiver_store::error::Error) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: quiver_store::error::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(entry_key(*i)),
            Bound::Unbounded => Bound::Included(entry_key(0)),
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(entry_key(*i)),
            Bound::Unbounded => Bound::Included(entry_key(u64::MAX)),
        };
        self.tree.scan((start, end)).map(|kv| kv.and_then(|(_, v)| load(&v))).collect::<Result<_>>().map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get(PURGED).map_err(read_err)?;
        let last = self.last_entry().map_err(read_err)?.map(|e| e.log_id);
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let write = || -> Result<()> {
            let mut batch = WriteBatch::default();
            batch.put(VOTE, store(vote)?);
            self.tree.write(batch)
        };
        write().map_err(|e| StorageIOError::write_vote(&e))?;
        self.flush().await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get(VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.put(COMMITTED, store(&committed).map_err(write_err)?);
        // Not flushed: after a crash the committed id is recovered from a quorum anyway.
        self.tree.write(batch).map_err(write_err)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get::<Option<LogId<NodeId>>>(COMMITTED).map_err(read_err)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put(entry_key(entry.log_id.index), store(&entry).map_err(write_err)?);
        }
        self.tree.write(batch).map_err(write_err)?;
        let flushed = self.flush().await;
        let io = flushed.as_ref().map_err(|e| std::io::Error::other(e.to_string())).copied();
        callback.log_io_completed(io);
        flushed.map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.delete_entries(log_id.index, u64::MAX, None).map_err(write_err)?;
        self.flush().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // The purge mark and the deletion go together, so a crash never leaves a hole
        // between the last purged id and the first entry.
        let mark = store(&log_id).map_err(write_err)?;
        self.delete_entries(0, log_id.index, Some((PURGED, mark))).map_err(write_err)
    }
}
