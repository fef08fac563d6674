//! Shard groups: the latest row of each (feature set version, entity) in a range of the
//! entity-hash space.
//!
//! Row keys: `0x02 | project | set | version | entity key`, each string length-prefixed,
//! so one feature set's rows are contiguous and no two tables share a key.
//!
//! Every written row is also queued for the offline store under `0x03 | log index | position`
//! (write order); the export worker drains the queue and `ExportAck` trims it.

use std::collections::HashMap;

use quiver_core::Value;
use quiver_core::row::{StoredRow, WriteSeq, supersedes};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::Result;
use crate::raft::Response;
use crate::storage::{KvTree, WriteBatch};

const ROW: u8 = 0x02;
const QUEUE: u8 = 0x03;

/// One version of one feature set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    pub project: String,
    pub set: String,
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRow {
    /// Canonical entity-key encoding (`quiver_core::key::encode_entity_key`).
    pub key: Vec<u8>,
    pub event_ts: i64,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Upserts rows (last writer wins); `export` also queues them for the offline store.
    Put { table: TableRef, rows: Vec<ShardRow>, export: bool },
    /// The queue through `through` is in the offline store: drop it.
    ExportAck { through: WriteSeq },
}

/// A written row waiting for export to the offline store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedRow {
    pub table: TableRef,
    pub row: ShardRow,
}

fn queue_key(seq: WriteSeq) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(QUEUE);
    key.extend_from_slice(&seq.log_index.to_be_bytes());
    key.extend_from_slice(&seq.pos.to_be_bytes());
    key
}

fn queue_seq(key: &[u8]) -> Option<WriteSeq> {
    let log_index = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let pos = u32::from_be_bytes(key.get(9..13)?.try_into().ok()?);
    Some(WriteSeq { log_index, pos })
}

/// Up to `limit` queued rows, oldest first.
pub fn read_queue(tree: &dyn KvTree, limit: usize) -> Result<Vec<(WriteSeq, QueuedRow)>> {
    tree.scan_prefix(&[QUEUE])
        .take(limit)
        .map(|kv| {
            let (k, v) = kv?;
            let seq = queue_seq(&k).ok_or_else(|| crate::error::Error::Storage(format!("bad queue key {k:02x?}")))?;
            Ok((seq, decode(&v)?))
        })
        .collect()
}

pub fn row_key(table: &TableRef, entity_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + table.project.len() + table.set.len() + entity_key.len());
    key.push(ROW);
    for part in [&table.project, &table.set] {
        key.extend_from_slice(&(part.len() as u16).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&table.version.to_be_bytes());
    key.extend_from_slice(entity_key);
    key
}

pub fn read_row(tree: &dyn KvTree, table: &TableRef, entity_key: &[u8]) -> Result<Option<StoredRow>> {
    tree.get(&row_key(table, entity_key))?.map(|b| decode(&b)).transpose()
}

/// Writes of one `apply` call, which the tree does not hold yet: later entries of the
/// same call must see the rows earlier ones wrote.
#[derive(Default)]
pub struct PendingWrites {
    rows: HashMap<Vec<u8>, StoredRow>,
    other: WriteBatch,
}

impl PendingWrites {
    /// The stored version of `key`: last written in this call, else in the tree.
    fn version(&self, tree: &dyn KvTree, key: &[u8]) -> Result<Option<(i64, WriteSeq)>> {
        if let Some(row) = self.rows.get(key) {
            return Ok(Some((row.event_ts, row.seq)));
        }
        let stored: Option<StoredRow> = tree.get(key)?.map(|b| decode(&b)).transpose()?;
        Ok(stored.map(|row| (row.event_ts, row.seq)))
    }

    pub fn flush_into(self, batch: &mut WriteBatch) -> Result<()> {
        for (key, row) in self.rows {
            batch.put(key, encode(&row)?);
        }
        for (key, value) in self.other.into_ops() {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        Ok(())
    }
}

pub fn apply(
    tree: &dyn KvTree,
    cache: &mut PendingWrites,
    log_index: u64,
    leader_time: i64,
    cmd: &ShardCommand,
) -> Result<Response> {
    let (table, rows, export) = match cmd {
        ShardCommand::Put { table, rows, export } => (table, rows, *export),
        ShardCommand::ExportAck { through } => {
            let range = (std::ops::Bound::Included(vec![QUEUE]), std::ops::Bound::Included(queue_key(*through)));
            for kv in tree.scan(range) {
                cache.other.delete(kv?.0);
            }
            return Ok(Response::Done);
        }
    };
    for (pos, row) in rows.iter().enumerate() {
        let key = row_key(table, &row.key);
        let seq = WriteSeq { log_index, pos: pos as u32 };
        if export {
            cache.other.put(queue_key(seq), encode(&QueuedRow { table: table.clone(), row: row.clone() })?);
        }
        let newer = match cache.version(tree, &key)? {
            Some(old) => supersedes((row.event_ts, seq), old),
            None => true,
        };
        if newer {
            let stored = StoredRow { event_ts: row.event_ts, seq, written_at: leader_time, values: row.values.clone() };
            cache.rows.insert(key, stored);
        }
    }
    Ok(Response::Written { rows: rows.len() as u64 })
}
