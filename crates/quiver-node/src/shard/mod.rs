//! Shard groups: the latest row of each (feature set version, entity) in a range of the
//! entity-hash space.
//!
//! Row keys: `0x02 | project | set | version | entity key`, each string length-prefixed,
//! so one feature set's rows are contiguous and no two tables share a key.

use std::collections::HashMap;

use quiver_core::Value;
use quiver_core::row::{StoredRow, WriteSeq, supersedes};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::Result;
use crate::raft::Response;
use crate::storage::{KvTree, WriteBatch};

const ROW: u8 = 0x02;

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
    Put { table: TableRef, rows: Vec<ShardRow> },
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

/// Rows written earlier in the same `apply` call, which the tree does not hold yet.
#[derive(Default)]
pub struct StoredRowCache {
    rows: HashMap<Vec<u8>, StoredRow>,
}

impl StoredRowCache {
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
        Ok(())
    }
}

pub fn apply(
    tree: &dyn KvTree,
    cache: &mut StoredRowCache,
    log_index: u64,
    leader_time: i64,
    cmd: &ShardCommand,
) -> Result<Response> {
    let ShardCommand::Put { table, rows } = cmd;
    for (pos, row) in rows.iter().enumerate() {
        let key = row_key(table, &row.key);
        let seq = WriteSeq { log_index, pos: pos as u32 };
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
