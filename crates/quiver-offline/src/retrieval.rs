//! Point-in-time retrieval: for every spine row (entity keys, timestamp) and every feature
//! set, the latest row with `event_ts <= ts` and `event_ts > ts - ttl`, ties to the row
//! ingested last, nulls when none. Every spine row is kept, in order, with its columns.
//!
//! Two passes per feature set: the first reads only keys, event times and sequence numbers
//! of the files that can match (pruned by the manifest's time bounds) and runs the as-of
//! kernel; the second reads feature columns only of files that matched and gathers them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow_schema::{Field, Schema};
use quiver_core::asof::{EventRow, SpineRow, asof_join};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::time::MICROS_PER_SEC;
use quiver_core::{Error as CoreError, ValueType};

use crate::Result;
use crate::convert::encode_key_cell;
use crate::files::{DataFile, TimeWindow, read_file};
use crate::schema::{SEQ_COLUMN, UTC, arrow_type};
use crate::store::OfflineStore;

/// One feature set version to join, with the manifest files that hold its rows.
pub struct Source<'a> {
    pub entity: &'a Entity,
    pub fs: &'a FeatureSet,
    pub files: Vec<DataFile>,
    /// (index in the feature set, output column name).
    pub features: Vec<(usize, String)>,
}

/// Encoded entity keys, back to back, so millions of them cost two allocations.
#[derive(Default)]
struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn push_row(&mut self, columns: &[(&dyn Array, ValueType)], row: usize) {
        for (array, ty) in columns {
            encode_key_cell(&mut self.bytes, *array, row, *ty);
        }
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// The spine's key columns for `entity`, cast to the join-key types.
fn spine_keys(spine: &RecordBatch, entity: &Entity) -> Result<Keys> {
    let mut columns = Vec::new();
    for k in &entity.join_keys {
        let column = spine.column_by_name(&k.name).ok_or_else(|| {
            CoreError::InvalidArgument(format!(
                "the spine has no column '{}' (join key of entity {})",
                k.name, entity.name
            ))
        })?;
        let cast = arrow_cast::cast(column, &arrow_type(k.ty)).map_err(|e| {
            CoreError::InvalidArgument(format!("spine column '{}' cannot be read as {}: {e}", k.name, k.ty))
        })?;
        columns.push((cast, k.ty));
    }
    let refs: Vec<(&dyn Array, ValueType)> = columns.iter().map(|(a, t)| (a.as_ref(), *t)).collect();
    let mut keys = Keys::default();
    for row in 0..spine.num_rows() {
        if let Some((k, _)) = entity.join_keys.iter().zip(&refs).find(|(_, (a, _))| a.is_null(row)) {
            return Err(CoreError::row(row + 1, &k.name, "join key is missing in the spine").into());
        }
        keys.push_row(&refs, row);
    }
    Ok(keys)
}

/// Joins every source onto the spine. `spine_ts` is the spine's time column, already µs UTC.
pub async fn point_in_time(
    store: &OfflineStore,
    spine: &RecordBatch,
    spine_ts: &TimestampMicrosecondArray,
    sources: &[Source<'_>],
) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = spine.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = spine.columns().to_vec();
    for source in sources {
        let (feature_columns, event_ts) = join_source(store, spine, spine_ts, source).await?;
        for ((index, name), column) in source.features.iter().zip(feature_columns) {
            fields.push(Field::new(name, arrow_type(source.fs.features[*index].ty), true));
            columns.push(column);
        }
        let ts_name = format!("{}:{}", source.fs.name, source.fs.timestamp_column);
        fields.push(Field::new(ts_name, arrow_type(ValueType::Timestamp), true));
        columns.push(event_ts);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

async fn join_source(
    store: &OfflineStore,
    spine: &RecordBatch,
    spine_ts: &TimestampMicrosecondArray,
    source: &Source<'_>,
) -> Result<(Vec<ArrayRef>, ArrayRef)> {
    let spine_keys = spine_keys(spine, source.entity)?;
    let ttl = i64::try_from(source.fs.ttl_secs).unwrap_or(i64::MAX).saturating_mul(MICROS_PER_SEC);
    let (lo, hi) = (spine_ts.values().iter().min().copied(), spine_ts.values().iter().max().copied());
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(empty_answer(source, spine.num_rows()));
    };
    // Only files, and row groups within them, that can hold an event in (lo - ttl, hi].
    let first = if ttl > 0 { lo.saturating_sub(ttl).saturating_add(1) } else { i64::MIN };
    let window = TimeWindow { column: &source.fs.timestamp_column, lo: first, hi };
    let files: Vec<&DataFile> = source.files.iter().filter(|f| f.min_ts <= hi && f.max_ts >= first).collect();

    // Pass 1: keys, event times and sequence numbers.
    let key_names: Vec<&str> = source.entity.join_keys.iter().map(|k| k.name.as_str()).collect();
    let mut pass1: Vec<&str> = key_names.clone();
    pass1.push(&source.fs.timestamp_column);
    pass1.push(SEQ_COLUMN);
    let mut event_keys = Keys::default();
    let mut event_ts = Vec::new();
    let mut event_seq = Vec::new();
    let mut event_loc: Vec<(u32, u32)> = Vec::new();
    for (file_no, file) in files.iter().enumerate() {
        let mut row_in_file = 0u32;
        for batch in read_file(store, file, Some(&pass1), Some(window)).await? {
            let keys: Vec<(&dyn Array, ValueType)> = source
                .entity
                .join_keys
                .iter()
                .map(|k| batch.column_by_name(&k.name).map(|c| (c.as_ref(), k.ty)))
                .collect::<Option<_>>()
                .ok_or_else(|| CoreError::Internal(format!("file {} lacks a join key column", file.path)))?;
            let ts =
                column(&batch, &source.fs.timestamp_column, &file.path)?.as_primitive::<TimestampMicrosecondType>();
            let seq = column(&batch, SEQ_COLUMN, &file.path)?.as_primitive::<UInt64Type>();
            for row in 0..batch.num_rows() {
                event_keys.push_row(&keys, row);
                event_ts.push(ts.value(row));
                event_seq.push(seq.value(row));
                event_loc.push((file_no as u32, row_in_file));
                row_in_file += 1;
            }
        }
    }
    let spine_rows: Vec<SpineRow> =
        (0..spine.num_rows()).map(|i| SpineRow { key: spine_keys.get(i), ts: spine_ts.value(i) }).collect();
    let events: Vec<EventRow> =
        (0..event_ts.len()).map(|i| EventRow { key: event_keys.get(i), ts: event_ts[i], seq: event_seq[i] }).collect();
    let matches = asof_join(&spine_rows, &events, ttl);
    drop(events);

    // Pass 2: gather matched feature values, file by file.
    let mut wanted: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for m in matches.iter().flatten() {
        let (file, row) = event_loc[*m];
        wanted.entry(file).or_default().push(row);
    }
    let names: Vec<&str> = source.features.iter().map(|(i, _)| source.fs.features[*i].name.as_str()).collect();
    let mut taken: Vec<Vec<ArrayRef>> = Vec::new(); // per matched file, per feature
    let mut slot: HashMap<(u32, u32), (usize, usize)> = HashMap::with_capacity(matches.len());
    for (file_no, rows) in &mut wanted {
        rows.sort_unstable();
        rows.dedup();
        let file = files[*file_no as usize];
        let batches = read_file(store, file, Some(&names), Some(window)).await?;
        let batch = arrow_select::concat::concat_batches(
            &batches.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty())),
            &batches,
        )?;
        let indices = arrow_array::UInt32Array::from(rows.clone());
        let per_feature = source
            .features
            .iter()
            .map(|(i, _)| {
                let name = &source.fs.features[*i].name;
                let c = column(&batch, name, &file.path)?;
                Ok(arrow_select::take::take(c.as_ref(), &indices, None)?)
            })
            .collect::<Result<Vec<_>>>()?;
        for (pos, row) in rows.iter().enumerate() {
            slot.insert((*file_no, *row), (taken.len(), pos));
        }
        taken.push(per_feature);
    }
    let mut columns = Vec::with_capacity(source.features.len());
    for (f, (i, _)) in source.features.iter().enumerate() {
        let null = new_null_array(&arrow_type(source.fs.features[*i].ty), 1);
        let mut arrays: Vec<&dyn Array> = taken.iter().map(|t| t[f].as_ref()).collect();
        arrays.push(null.as_ref());
        let null_slot = (arrays.len() - 1, 0);
        let picks: Vec<(usize, usize)> = matches.iter().map(|m| m.map_or(null_slot, |e| slot[&event_loc[e]])).collect();
        columns.push(arrow_select::interleave::interleave(&arrays, &picks)?);
    }
    let ts: TimestampMicrosecondArray = matches.iter().map(|m| m.map(|e| event_ts[e])).collect();
    let ts: ArrayRef = Arc::new(ts.with_timezone(UTC));
    Ok((columns, ts))
}

fn column<'b>(batch: &'b RecordBatch, name: &str, path: &str) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| CoreError::Internal(format!("file {path} has no column '{name}'")).into())
}

fn empty_answer(source: &Source<'_>, rows: usize) -> (Vec<ArrayRef>, ArrayRef) {
    let columns =
        source.features.iter().map(|(i, _)| new_null_array(&arrow_type(source.fs.features[*i].ty), rows)).collect();
    (columns, new_null_array(&arrow_type(ValueType::Timestamp), rows))
}
