//! Feature statistics in the meta group's tree, beside (not inside) the in-memory meta
//! state: summaries are large and read only by statistics queries, so they live under
//! their own keys and are merged on read for any range of days.
//!
//! - `0x10 | table | day | file path`  summaries of one offline file
//! - `0x11 | table | day | node | seq` summaries of a sample of values served online
//! - `0x12 | project | dataset name`   summaries of a saved training dataset
//! - `0x13 | table | time`             a monitor's drift report (protobuf `GetDriftResponse`)

use std::collections::BTreeMap;

use quiver_core::stats::FeatureSummary;
use serde::{Deserialize, Serialize};

use crate::codec::decode;
use crate::error::Result;
use crate::shard::TableRef;
use crate::storage::KvTree;

const FILE: u8 = 0x10;
const SERVING: u8 = 0x11;
const DATASET: u8 = 0x12;
const MONITOR: u8 = 0x13;

/// Summaries of some rows, by column name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summaries {
    pub rows: u64,
    pub columns: Vec<(String, FeatureSummary)>,
}

/// Where a record of statistics comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Offline,
    Serving,
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_be_bytes());
    key.extend_from_slice(s.as_bytes());
}

fn table_prefix(kind: u8, table: &TableRef) -> Vec<u8> {
    let mut key = vec![kind];
    push_str(&mut key, &table.project);
    push_str(&mut key, &table.set);
    key.extend_from_slice(&table.version.to_be_bytes());
    key
}

/// Days order as unsigned big-endian numbers once the sign bit is flipped.
fn day_bytes(day: i64) -> [u8; 8] {
    ((day as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn file_key(table: &TableRef, day: i64, path: &str) -> Vec<u8> {
    let mut key = table_prefix(FILE, table);
    key.extend_from_slice(&day_bytes(day));
    key.extend_from_slice(path.as_bytes());
    key
}

pub fn serving_key(table: &TableRef, day: i64, node: u64, seq: u64) -> Vec<u8> {
    let mut key = table_prefix(SERVING, table);
    key.extend_from_slice(&day_bytes(day));
    key.extend_from_slice(&node.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub fn monitor_key(table: &TableRef, at: i64) -> Vec<u8> {
    let mut key = table_prefix(MONITOR, table);
    key.extend_from_slice(&day_bytes(at));
    key
}

/// The latest `limit` monitor runs of `table`, newest first: (time, encoded report).
pub fn monitor_runs(tree: &dyn KvTree, table: &TableRef, limit: usize) -> Result<Vec<(i64, Vec<u8>)>> {
    let prefix = table_prefix(MONITOR, table);
    let end = [prefix.as_slice(), &[0xff; 9]].concat();
    tree.scan((std::ops::Bound::Included(prefix.clone()), std::ops::Bound::Excluded(end)))
        .rev()
        .take(limit)
        .map(|kv| {
            let (key, value) = kv?;
            let bytes: [u8; 8] = key[prefix.len()..prefix.len() + 8].try_into().unwrap_or_default();
            Ok(((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64, value))
        })
        .collect()
}

pub fn dataset_key(project: &str, name: &str) -> Vec<u8> {
    let mut key = vec![DATASET];
    push_str(&mut key, project);
    push_str(&mut key, name);
    key
}

/// Merges every record of `table` from `origin` with day in `[from_day, to_day)`; also
/// answers the number of days that had any.
pub fn merged(
    tree: &dyn KvTree,
    table: &TableRef,
    origin: Origin,
    (from_day, to_day): (i64, i64),
) -> Result<(Summaries, u32)> {
    let prefix = table_prefix(if origin == Origin::Offline { FILE } else { SERVING }, table);
    let start = [prefix.as_slice(), &day_bytes(from_day)].concat();
    let end = [prefix.as_slice(), &day_bytes(to_day)].concat();
    let mut merged: BTreeMap<String, FeatureSummary> = BTreeMap::new();
    let mut rows = 0;
    let mut days = std::collections::BTreeSet::new();
    for kv in tree.scan((std::ops::Bound::Included(start), std::ops::Bound::Excluded(end))) {
        let (key, value) = kv?;
        days.insert(key[prefix.len()..prefix.len() + 8].to_vec());
        let record: Summaries = decode(&value)?;
        rows += record.rows;
        merge_into(&mut merged, record.columns)?;
    }
    Ok((Summaries { rows, columns: merged.into_iter().collect() }, days.len() as u32))
}

/// The days of `table` that have records from `origin`, in order.
pub fn days(tree: &dyn KvTree, table: &TableRef, origin: Origin) -> Result<Vec<i64>> {
    let prefix = table_prefix(if origin == Origin::Offline { FILE } else { SERVING }, table);
    let mut days = Vec::new();
    for kv in tree.scan_prefix(&prefix) {
        let (key, _) = kv?;
        let bytes: [u8; 8] = key[prefix.len()..prefix.len() + 8].try_into().unwrap_or_default();
        let day = (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64;
        if days.last() != Some(&day) {
            days.push(day);
        }
    }
    Ok(days)
}

pub fn merge_into(into: &mut BTreeMap<String, FeatureSummary>, columns: Vec<(String, FeatureSummary)>) -> Result<()> {
    for (name, summary) in columns {
        match into.get_mut(&name) {
            // A feature whose type changed within a version cannot happen; a failed merge
            // is an internal error rather than a silently wrong answer.
            Some(existing) => existing.merge(&summary)?,
            None => {
                into.insert(name, summary);
            }
        }
    }
    Ok(())
}

pub fn dataset(tree: &dyn KvTree, project: &str, name: &str) -> Result<Option<Summaries>> {
    tree.get(&dataset_key(project, name))?.map(|b| decode(&b)).transpose()
}

pub fn has_file(tree: &dyn KvTree, table: &TableRef, day: i64, path: &str) -> Result<bool> {
    Ok(tree.get(&file_key(table, day, path))?.is_some())
}
