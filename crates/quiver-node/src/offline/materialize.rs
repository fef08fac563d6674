//! Materialization: the latest row per entity with event time in [start, end), read file by
//! file from the offline store and upserted into the online shards. Upserts follow the
//! online last-writer-wins rule, so a second run (or a run after a crash) changes nothing
//! that is already there, and never replaces newer online values.
//!
//! The latest rows are kept in memory until upserted. When the window's rows could take
//! more than `[offline] retrieval_memory`, entities are split by key hash into parts, and
//! the files are read once per part, each part's rows upserted before the next is read:
//! memory stays within the budget at the cost of reading the files again.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::row::{ValidatedRow, check_event_time};
use quiver_core::table::TableRef;
use quiver_core::{Error as CoreError, Value};
use quiver_offline::convert::array_value;
use quiver_offline::files::read_file;
use quiver_offline::schema::{SEQ_COLUMN, columns};
use quiver_proto::v1::MaterializeProgress;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::raft::now_micros;

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
    let cols = columns(entity, fs);
    let keys = entity.join_keys.len();
    let rows_in_window: u64 = files.iter().map(|f| f.rows).sum();
    let budget = node.config.offline.retrieval_bytes()?;
    let parts = rows_in_window.saturating_mul(LATEST_ROW_BYTES).div_ceil(budget.max(1)).max(1);
    let mut report = MaterializeProgress { files_total: files.len() as u64 * parts, ..Default::default() };
    let (now, skew) = (now_micros(), node.config.ingest.max_future());
    for part in 0..parts {
        let mut latest: HashMap<Vec<u8>, (i64, u64, ValidatedRow)> = HashMap::new();
        for file in &files {
            let mut file_rows = 0;
            for batch in read_file(&node.offline, file, None, None).await.map_err(|e| Error::from(e.into_core()))? {
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
                    check_event_time(file_rows + row + 1, &fs.timestamp_column, t, now, skew)
                        .map_err(|e| CoreError::InvalidArgument(format!("offline file {}: {e}", file.path)))?;
                    let value = |c: usize| array_value(batch.column(c).as_ref(), row, cols[c].1);
                    let key: Vec<Value> = (0..keys).map(value).collect();
                    let encoded = encode_entity_key(&key);
                    if key_hash(&encoded) % parts != part {
                        continue;
                    }
                    if latest.get(&encoded).is_some_and(|(bt, bs, _)| (*bt, *bs) >= (t, s)) {
                        continue;
                    }
                    let values = (keys + 1..cols.len()).map(value).collect();
                    latest.insert(encoded, (t, s, ValidatedRow { key, event_ts: t, values }));
                }
                file_rows += batch.num_rows();
                report.rows_read += batch.num_rows() as u64;
            }
            report.files_done += 1;
            let _ = progress.send(report).await;
        }
        let rows: Vec<ValidatedRow> = latest.into_values().map(|(_, _, row)| row).collect();
        for chunk in rows.chunks(UPSERT_CHUNK) {
            node.proposer.put_rows(&table, chunk.to_vec(), false, None).await?;
            report.entities_written += chunk.len() as u64;
        }
    }
    report.done = true;
    Ok(report)
}
