//! Materialization: the latest row per entity with event time in [start, end), read file by
//! file from the offline store and upserted into the online shards. Upserts follow the
//! online last-writer-wins rule, so a second run (or a run after a crash) changes nothing
//! that is already there, and never replaces newer online values.
//!
//! The latest rows are kept in memory until upserted. When they would take more than
//! `[offline] retrieval_memory` (planned at `LATEST_ROW_BYTES` a row), entities are split by
//! key hash into parts, and the files are read once per part, each part's rows upserted
//! before the next is read: memory stays within the budget at the cost of reading the files
//! again. The split is found by trying: one part first, four times as many when it outgrows
//! the budget.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::{ValidatedRow, check_event_time};
use quiver_core::table::TableRef;
use quiver_core::{Error as CoreError, Value};
use quiver_offline::convert::array_value;
use quiver_offline::files::{DataFile, read_file};
use quiver_offline::schema::{SEQ_COLUMN, columns};
use quiver_proto::v1::MaterializeProgress;
use tokio::sync::mpsc;

use crate::node::Node;
use quiver_core::time::now_micros;
use quiver_store::error::{Error, Result};

const UPSERT_CHUNK: usize = 10_000;
/// Bytes a kept row may take (key, values, map entry): an upper bound for planning parts.
const LATEST_ROW_BYTES: u64 = 512;

/// Upserts the latest offline row of each entity with event time in `window` into the
/// online store (idempotent: last writer wins).
pub async fn materialize_online(
    node: Arc<Node>,
    project: String,
    feature_set: String,
    window: (Option<i64>, Option<i64>),
    progress: mpsc::Sender<MaterializeProgress>,
) -> Result<MaterializeProgress> {
    // Every file committed before the request, through any node, is materialized.
    let state = node.meta.caught_up().await?;
    let registry = state.registry.project(&project)?;
    let fs = registry.feature_set_by_ref(&feature_set)?;
    let entity = registry.entity(&fs.entity)?;
    let table = TableRef::new(&project, fs);
    let (start, end) = (window.0.unwrap_or(i64::MIN), window.1.unwrap_or(i64::MAX));
    let files: Vec<_> = state
        .manifest
        .get(&table)
        .into_iter()
        .flatten()
        .filter(|f| f.max_ts >= start && f.min_ts < end)
        .cloned()
        .collect();
    let budget = node.config.offline.retrieval_bytes()?;
    // Entities a part may keep. One part to begin with: should the first part outgrow the
    // budget, the files are read again in four times as many parts.
    let most = usize::try_from(budget / LATEST_ROW_BYTES).unwrap_or(usize::MAX).max(1);
    let mut report = MaterializeProgress { files_total: files.len() as u64, ..Default::default() };
    let (mut parts, mut part) = (1u64, 0u64);
    let read = Read { node: &node, entity, fs, window: (start, end), now: now_micros() };
    while part < parts {
        let limit = (part == 0).then_some(most);
        let Some(latest) = read.part(&files, (part, parts), limit, &mut report, &progress).await? else {
            parts *= 4;
            report.files_total = report.files_done + files.len() as u64 * parts;
            continue;
        };
        let rows: Vec<ValidatedRow> = latest.into_values().map(|(_, _, row)| row).collect();
        for chunk in rows.chunks(UPSERT_CHUNK) {
            node.proposer.put_rows(&table, chunk.to_vec(), false, None).await?;
            report.entities_written += chunk.len() as u64;
        }
        part += 1;
    }
    report.done = true;
    Ok(report)
}

/// The latest kept row of each entity: (event time, sequence number, the row).
type Latest = HashMap<Vec<u8>, (i64, u64, ValidatedRow)>;

/// What reading a part needs.
struct Read<'a> {
    node: &'a Node,
    entity: &'a Entity,
    fs: &'a FeatureSet,
    window: (i64, i64),
    now: i64,
}

impl Read<'_> {
    /// The latest row in the window of each entity of part `part` of `parts` (by key
    /// hash), read file by file; `None` as soon as it keeps more than `limit` entities.
    async fn part(
        &self,
        files: &[DataFile],
        (part, parts): (u64, u64),
        limit: Option<usize>,
        report: &mut MaterializeProgress,
        progress: &mpsc::Sender<MaterializeProgress>,
    ) -> Result<Option<Latest>> {
        let (cols, keys) = (columns(self.entity, self.fs), self.entity.join_keys.len());
        let ((start, end), skew) = (self.window, self.node.config.ingest.max_future());
        let mut latest = Latest::new();
        for file in files {
            let mut file_rows = 0;
            let batches =
                read_file(&self.node.offline, file, None, None).await.map_err(|e| Error::from(e.into_core()))?;
            for batch in batches {
                let ts = batch.column(keys).as_primitive::<TimestampMicrosecondType>();
                let seq = batch
                    .column_by_name(SEQ_COLUMN)
                    .map(|c| c.as_primitive::<UInt64Type>().clone())
                    .ok_or_else(|| Error::Storage(format!("{} has no {SEQ_COLUMN} column", file.path)))?;
                for row in 0..batch.num_rows() {
                    let (t, s) = (ts.value(row), seq.value(row));
                    if t < start || t >= end {
                        continue;
                    }
                    check_event_time(file_rows + row + 1, &self.fs.timestamp_column, t, self.now, skew)
                        .map_err(|e| CoreError::InvalidArgument(format!("offline file {}: {e}", file.path)))?;
                    let value = |c: usize| array_value(batch.column(c).as_ref(), row, cols[c].1);
                    let key: Vec<Value> = (0..keys).map(value).collect();
                    let encoded = encode_entity_key(&key);
                    if key_hash(&encoded) % parts != part
                        || latest.get(&encoded).is_some_and(|(bt, bs, _)| (*bt, *bs) >= (t, s))
                    {
                        continue;
                    }
                    let values = (keys + 1..cols.len()).map(value).collect();
                    latest.insert(encoded, (t, s, ValidatedRow { key, event_ts: t, values }));
                    if limit.is_some_and(|most| latest.len() > most) {
                        return Ok(None);
                    }
                }
                file_rows += batch.num_rows();
                report.rows_read += batch.num_rows() as u64;
            }
            report.files_done += 1;
            let _ = progress.send(*report).await;
        }
        Ok(Some(latest))
    }
}
