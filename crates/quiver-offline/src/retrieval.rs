//! Point-in-time retrieval: for every spine row (entity keys, timestamp) and every feature
//! set, the latest row with `event_ts <= ts` and `event_ts > ts - ttl`, ties to the row
//! ingested last, nulls when none. Every spine row is kept, in order, with its columns.
//!
//! Two passes per feature set: the first reads only keys, event times and sequence numbers
//! of the files that can match (pruned by the manifest's time bounds) and runs the as-of
//! kernel; the second reads feature columns only of files that matched and gathers them.
//!
//! Pass 1's events are held in memory when the retrieval's budget (`spill::Memory`) holds
//! them, else partitioned by spine key and spilled to local files (`spill`); the kernel then
//! joins one partition at a time, and each spine row keeps the place of its match.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow_schema::{Field, Schema};
use quiver_core::asof::{EventRow, SpineRow, asof_join_dense};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::time::MICROS_PER_SEC;
use quiver_core::{Error as CoreError, ValueType};

use crate::Result;
use crate::convert::encode_key_cell;
use crate::files::{DataFile, TimeWindow, read_files};
use crate::schema::{SEQ_COLUMN, UTC, arrow_type};
use crate::spill::{EVENT_BYTES, Memory, Partitions, SPINE_ROW_BYTES, Tracker, Usage};
use crate::store::OfflineStore;

/// One feature set version to join, with the manifest files that hold its rows.
pub struct Source<'a> {
    pub entity: &'a Entity,
    pub fs: &'a FeatureSet,
    pub files: Vec<DataFile>,
    /// (index in the feature set, output column name).
    pub features: Vec<(usize, String)>,
    /// The entity-key hashes (inclusive) of every spine key, when the spine is a part of
    /// one (`split`): files sorted by key hash are read only where they hold these.
    pub key_hashes: Option<(u64, u64)>,
}

fn encode_row_key(out: &mut Vec<u8>, columns: &[(&dyn Array, ValueType)], row: usize) {
    for (array, ty) in columns {
        encode_key_cell(out, *array, row, *ty);
    }
}

/// Dense ids of the spine's distinct keys of `entity`, by encoded key: the join then compares
/// integers, and an event of a key the spine does not hold is dropped as soon as it is read.
type KeyIds = HashMap<Vec<u8>, u32, Xxh3DefaultBuilder>;

/// The spine's columns of `entity`'s join keys, cast to the join-key types.
pub(crate) fn key_columns(spine: &RecordBatch, entity: &Entity) -> Result<Vec<(ArrayRef, ValueType)>> {
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
    Ok(columns)
}

/// The key id of every spine row, and the ids.
fn spine_key_ids(spine: &RecordBatch, entity: &Entity) -> Result<(Vec<u32>, KeyIds)> {
    let columns = key_columns(spine, entity)?;
    let refs: Vec<(&dyn Array, ValueType)> = columns.iter().map(|(a, t)| (a.as_ref(), *t)).collect();
    let (mut row_ids, mut ids, mut key) = (Vec::with_capacity(spine.num_rows()), KeyIds::default(), Vec::new());
    for row in 0..spine.num_rows() {
        if let Some((k, _)) = entity.join_keys.iter().zip(&refs).find(|(_, (a, _))| a.is_null(row)) {
            return Err(CoreError::row(row + 1, &k.name, "join key is missing in the spine").into());
        }
        key.clear();
        encode_row_key(&mut key, &refs, row);
        let id = match ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = ids.len() as u32;
                ids.insert(key.clone(), id);
                id
            }
        };
        row_ids.push(id);
    }
    Ok((row_ids, ids))
}

/// Where a retrieval's time went: phases in the order they ran, each summed over sources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases(pub Vec<(&'static str, Duration)>);

impl Phases {
    /// Adds the time since `since` to phase `name`; answers now, where the next one starts.
    pub fn add(&mut self, name: &'static str, since: Instant) -> Instant {
        let now = Instant::now();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, d)) => *d += now - since,
            None => self.0.push((name, now - since)),
        }
        now
    }
}

/// Joins every source onto the spine. `spine_ts` is the spine's time column, already µs UTC;
/// the events of each source's join take at most `memory`'s budget (spilling beyond it);
/// `phases` gets the time of reading keys (`keys`), joining (`join`) and taking features
/// (`features`), `usage` what the joins held and spilled.
pub async fn point_in_time(
    store: &OfflineStore,
    spine: &RecordBatch,
    spine_ts: &TimestampMicrosecondArray,
    sources: &[Source<'_>],
    memory: &Memory,
    phases: &mut Phases,
    usage: &mut Usage,
) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = spine.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(answer_fields(&spine.schema(), sources)?);
    let mut columns: Vec<ArrayRef> = spine.columns().to_vec();
    for source in sources {
        let (feature_columns, event_ts) = join_source(store, spine, spine_ts, source, memory, phases, usage).await?;
        columns.extend(feature_columns);
        columns.push(event_ts);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// The columns the answer adds to the spine's: per source its features, then its event
/// time. A name that clashes with a spine column or another answer column is refused,
/// before any file is read.
pub fn answer_fields(spine: &Schema, sources: &[Source<'_>]) -> Result<Vec<Field>> {
    let mut names: std::collections::HashSet<&str> = spine.fields().iter().map(|f| f.name().as_str()).collect();
    let mut fields = Vec::new();
    for source in sources {
        for (index, name) in &source.features {
            fields.push(Field::new(name, arrow_type(source.fs.features[*index].ty), true));
        }
        let ts = format!("{}:{}", source.fs.name, source.fs.timestamp_column);
        fields.push(Field::new(ts, arrow_type(ValueType::Timestamp), true));
    }
    for field in &fields {
        if !names.insert(field.name()) {
            return Err(CoreError::InvalidArgument(format!(
                "the answer's column '{}' clashes with a spine column or another of its own: rename the spine's \
                 column (or ask without short names)",
                field.name()
            ))
            .into());
        }
    }
    Ok(fields)
}

/// What pass 1 keeps of a file, decided on the file's own task: events of a spine key
/// (by dense id) inside the time window, each with its row among those the window selects.
struct EventFilter {
    ids: KeyIds,
    keys: Vec<(String, ValueType)>,
    ts_column: String,
    first: i64,
    hi: i64,
}

impl EventFilter {
    fn events(&self, path: &str, batches: Vec<RecordBatch>) -> Result<Vec<(EventRow<u32>, u32)>> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut row_in_file = 0u32;
        for batch in batches {
            let keys: Vec<(&dyn Array, ValueType)> = self
                .keys
                .iter()
                .map(|(name, ty)| batch.column_by_name(name).map(|c| (c.as_ref(), *ty)))
                .collect::<Option<_>>()
                .ok_or_else(|| CoreError::Internal(format!("file {path} lacks a join key column")))?;
            let ts = column(&batch, &self.ts_column, path)?.as_primitive::<TimestampMicrosecondType>();
            let seq = column(&batch, SEQ_COLUMN, path)?.as_primitive::<UInt64Type>();
            for row in 0..batch.num_rows() {
                let (t, at) = (ts.value(row), row_in_file);
                row_in_file += 1;
                if t < self.first || t > self.hi {
                    continue;
                }
                scratch.clear();
                encode_row_key(&mut scratch, &keys, row);
                if let Some(&id) = self.ids.get(scratch.as_slice()) {
                    out.push((EventRow { key: id, ts: t, seq: seq.value(row) }, at));
                }
            }
        }
        Ok(out)
    }
}

/// Where a spine row's match is: its file (index in the file list), its row in the file,
/// and its event time.
#[derive(Debug, Clone, Copy)]
struct Hit {
    file: u32,
    row: u32,
    ts: i64,
}

async fn join_source(
    store: &OfflineStore,
    spine: &RecordBatch,
    spine_ts: &TimestampMicrosecondArray,
    source: &Source<'_>,
    memory: &Memory,
    phases: &mut Phases,
    usage: &mut Usage,
) -> Result<(Vec<ArrayRef>, ArrayRef)> {
    let started = Instant::now();
    let (spine_ids, ids) = spine_key_ids(spine, source.entity)?;
    let ttl = i64::try_from(source.fs.ttl_secs).unwrap_or(i64::MAX).saturating_mul(MICROS_PER_SEC);
    let (lo, hi) = (spine_ts.values().iter().min().copied(), spine_ts.values().iter().max().copied());
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(empty_answer(source, spine.num_rows()));
    };
    // Only files, and row groups within them, that can hold an event in (lo - ttl, hi].
    let first = if ttl > 0 { lo.saturating_sub(ttl).saturating_add(1) } else { i64::MIN };
    let window =
        TimeWindow { column: source.fs.timestamp_column.clone(), lo: first, hi, key_hashes: source.key_hashes };
    let files: Vec<DataFile> = source.files.iter().filter(|f| f.min_ts <= hi && f.max_ts >= first).cloned().collect();
    let rows_read: u64 = files.iter().map(|f| f.rows).sum();
    let mut parts = Partitions::for_join(memory, rows_read, spine.num_rows() as u64)?;

    // Pass 1: keys, event times and sequence numbers, into their partitions.
    let keys: Vec<(String, ValueType)> = source.entity.join_keys.iter().map(|k| (k.name.clone(), k.ty)).collect();
    let mut pass1: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
    pass1.push(source.fs.timestamp_column.clone());
    pass1.push(SEQ_COLUMN.to_string());
    let filter = EventFilter { ids, keys, ts_column: source.fs.timestamp_column.clone(), first, hi };
    let tracker = Arc::new(Tracker::default());
    tracker.hold(parts.held_bytes());
    let counted = tracker.clone();
    let mut reads = read_files(store, &files, pass1, &window, move |_, file, batches| {
        // A file's decoded key columns are held until its events are kept.
        let decoded: u64 = batches.iter().map(|b| b.get_array_memory_size() as u64).sum();
        counted.hold(decoded);
        let events = filter.events(&file.path, batches);
        counted.hold(events.as_ref().map_or(0, |e| kept_bytes(e)));
        counted.release(decoded);
        events
    });
    let mut file_no = 0u32;
    while let Some(file_events) = reads.next().await {
        let file_events = file_events?;
        let (kept, held) = (kept_bytes(&file_events), parts.held_bytes());
        parts = match parts.spills() {
            false => {
                parts.add(file_no, file_events)?;
                parts
            }
            // File writes go to the blocking pool.
            true => blocking("spilling events", move || parts.add(file_no, file_events).map(|()| parts)).await??,
        };
        tracker.hold(parts.held_bytes() - held);
        tracker.release(kept);
        file_no += 1;
    }
    drop(reads);
    tracker.release(parts.held_bytes());
    usage.spilled_bytes += parts.spilled_bytes();
    usage.partitions = usage.partitions.max(parts.count());
    let started = phases.add("keys", started);
    // Seconds of CPU for a large set: on the blocking pool, not on a task online reads share.
    let spine_times = spine_ts.values().clone();
    let (hits, joined) =
        blocking("the as-of join", move || join_partitions(parts, &spine_ids, &spine_times, ttl)).await??;
    usage.peak_bytes = usage.peak_bytes.max(tracker.peak()).max(joined);
    let started = phases.add("join", started);

    // Pass 2: gather matched feature values, file by file: the rows each file must give,
    // sorted, so that a match finds its place by binary search.
    let mut wanted: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
    for hit in hits.iter().flatten() {
        wanted[hit.file as usize].push(hit.row);
    }
    for rows in &mut wanted {
        rows.sort_unstable();
        rows.dedup();
    }
    let read: Vec<usize> = (0..files.len()).filter(|&f| !wanted[f].is_empty()).collect();
    let names: Vec<String> = source.features.iter().map(|(i, _)| source.fs.features[*i].name.clone()).collect();
    let matched_files: Vec<DataFile> = read.iter().map(|&f| files[f].clone()).collect();
    let rows_of: Arc<Vec<Vec<u32>>> = Arc::new(read.iter().map(|&f| wanted[f].clone()).collect());
    let take_rows = {
        let names = names.clone();
        move |i: usize, file: &DataFile, batches: Vec<RecordBatch>| -> Result<Vec<ArrayRef>> {
            let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty()));
            let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
            let indices = arrow_array::UInt32Array::from(rows_of[i].clone());
            names
                .iter()
                .map(|name| Ok(arrow_select::take::take(column(&batch, name, &file.path)?.as_ref(), &indices, None)?))
                .collect()
        }
    };
    let mut reads = read_files(store, &matched_files, names, &window, take_rows);
    // Per file read, per feature: the wanted rows' values; and where each file's are.
    let mut taken: Vec<Vec<ArrayRef>> = Vec::with_capacity(read.len());
    let mut taken_at: Vec<usize> = vec![usize::MAX; files.len()];
    for &file_no in &read {
        let per_feature = reads.next().await.ok_or(CoreError::Internal("a file read went missing".into()))??;
        taken_at[file_no] = taken.len();
        taken.push(per_feature);
    }
    drop(reads);
    let null_slot = (taken.len(), 0);
    let picks: Vec<(usize, usize)> = hits
        .iter()
        .map(|hit| {
            hit.map_or(null_slot, |h| {
                let rows = &wanted[h.file as usize];
                (taken_at[h.file as usize], rows.binary_search(&h.row).unwrap_or_default())
            })
        })
        .collect();
    let mut columns = Vec::with_capacity(source.features.len());
    for (f, (i, _)) in source.features.iter().enumerate() {
        let null = new_null_array(&arrow_type(source.fs.features[*i].ty), 1);
        let mut arrays: Vec<&dyn Array> = taken.iter().map(|t| t[f].as_ref()).collect();
        arrays.push(null.as_ref());
        columns.push(arrow_select::interleave::interleave(&arrays, &picks)?);
    }
    let ts: TimestampMicrosecondArray = hits.iter().map(|h| h.map(|h| h.ts)).collect();
    let ts: ArrayRef = Arc::new(ts.with_timezone(UTC));
    phases.add("features", started);
    Ok((columns, ts))
}

/// Bytes of pass 1's kept events of a file.
fn kept_bytes(events: &[(EventRow<u32>, u32)]) -> u64 {
    size_of_val(events) as u64
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| CoreError::Internal(format!("{what}: {e}")).into())
}

/// Joins each partition's spine rows with its events, one partition at a time: for each
/// spine row (by position) its match. Answers the most bytes one partition's join held.
fn join_partitions(
    mut parts: Partitions,
    spine_ids: &[u32],
    spine_ts: &[i64],
    ttl: i64,
) -> Result<(Vec<Option<Hit>>, u64)> {
    let count = parts.count();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); count as usize];
    for (position, id) in spine_ids.iter().enumerate() {
        members[(id % count) as usize].push(position as u32);
    }
    let (mut hits, mut most) = (vec![None; spine_ids.len()], 0u64);
    for (p, positions) in (0..count).zip(&members) {
        let located = parts.take(p)?;
        most = most.max(located.len() as u64 * EVENT_BYTES + positions.len() as u64 * SPINE_ROW_BYTES);
        let rows: Vec<SpineRow<u32>> =
            positions.iter().map(|&i| SpineRow { key: spine_ids[i as usize], ts: spine_ts[i as usize] }).collect();
        let events: Vec<EventRow<u32>> = located.iter().map(|l| l.event).collect();
        for (position, matched) in positions.iter().zip(asof_join_dense(&rows, &events, ttl)) {
            hits[*position as usize] =
                matched.map(|e| Hit { file: located[e].file, row: located[e].row, ts: located[e].event.ts });
        }
    }
    Ok((hits, most))
}

fn column<'b>(batch: &'b RecordBatch, name: &str, path: &str) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| CoreError::Internal(format!("file {path} has no column '{name}'")).into())
}

fn empty_answer(source: &Source<'_>, rows: usize) -> (Vec<ArrayRef>, ArrayRef) {
    let columns =
        source.features.iter().map(|(i, _)| new_null_array(&arrow_type(source.fs.features[*i].ty), rows)).collect();
    (columns, new_null_array(&arrow_type(ValueType::Timestamp), rows))
}
