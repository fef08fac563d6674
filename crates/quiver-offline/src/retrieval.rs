//! Point-in-time retrieval: for every spine row (entity keys, timestamp) and every feature
//! set, the latest row with `event_ts <= ts` and `event_ts > ts - ttl`, ties to the row
//! ingested last, nulls when none. Every spine row is kept, in order, with its columns.
//!
//! Pass 1 reads the files that can match (pruned by the manifest's time bounds), newest
//! first, and holds no event: the events of a day's files (`day_groups`) are offered, as
//! one job on the offline threads (`cpu`), to the spine rows they can match (`SpineSlots`),
//! which keep the latest, and the feature values of the rows that won are kept beside them
//! (`gather::Kept`). Each spine row then has the place of its match, and its values. A
//! spine whose slots do not fit the retrieval's budget (`spill::Memory`) is partitioned by key, pass 1 reading only keys,
//! event times and sequence numbers, its events spilled to local files and joined a
//! partition at a time (`spill`); pass 2 then reads the feature columns of the files that
//! matched and takes the matched rows, as it does when the kept values outgrow the budget.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow_schema::{Field, Schema};
use quiver_core::asof::{EventRow, Latest, SpineRow, SpineSlots};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::time::MICROS_PER_SEC;
use quiver_core::{Error as CoreError, ValueType};

use crate::Result;
use crate::convert::row_key_hash;
use crate::cpu;
use crate::files::{DataFile, FileBatches, TimeWindow, read_files, read_groups};
use crate::gather::{Gathered, Kept, Place, Taken, column};
use crate::keyids::{KeyColumns, KeyIds};
use crate::schema::{SEQ_COLUMN, UTC, arrow_type};
use crate::spill::{Memory, Partitions, SPINE_ROW_BYTES, Tracker, Usage};
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
    // The first row with a missing key, and its first such column.
    let missing = entity.join_keys.iter().zip(&columns).filter(|(_, (a, _))| a.null_count() > 0);
    let first =
        missing.filter_map(|(k, (a, _))| Some(((0..a.len()).find(|&row| a.is_null(row))?, k))).min_by_key(|m| m.0);
    if let Some((row, k)) = first {
        return Err(CoreError::row(row + 1, &k.name, "join key is missing in the spine").into());
    }
    let mut keys = KeyColumns::new(columns.iter().map(|(a, t)| (a.as_ref(), *t)).collect());
    let mut ids = KeyIds::new(columns.iter().map(|(_, t)| *t));
    let mut row_ids: Vec<u32> = (0..spine.num_rows()).map(|row| ids.insert(&mut keys, row)).collect();
    // Ids in key-hash order: the events of a file sorted by key hash (compacted) then meet
    // the spine's slots in their order rather than at random, which the caches reward.
    let (mut hashes, mut scratch) = (Vec::with_capacity(ids.len()), Vec::new());
    for (row, &id) in row_ids.iter().enumerate() {
        // Ids are given in order of first sight: the row with the next id is its key's first.
        if id as usize == hashes.len() {
            hashes.push(row_key_hash(&mut scratch, &columns, row));
        }
    }
    let rank = ids.sort_by(&hashes);
    row_ids.iter_mut().for_each(|id| *id = rank[*id as usize]);
    ids.densify();
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
/// `phases` gets the time of reading the files (`read`), joining (`join`) and taking the
/// matched features (`features`), `usage` what the joins held and spilled.
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
    /// `events`, counting the file's decoded columns in `tracker` while they are held, and
    /// holding the events kept (the caller releases them).
    fn counted_events(
        &self,
        tracker: &Tracker,
        path: &str,
        batches: &[RecordBatch],
    ) -> Result<Vec<(EventRow<u32>, u32)>> {
        let decoded = decoded_bytes(batches);
        tracker.hold(decoded);
        let events = self.events(path, batches);
        tracker.hold(events.as_ref().map_or(0, |e| kept_bytes(e)));
        tracker.release(decoded);
        events
    }

    fn events(&self, path: &str, batches: &[RecordBatch]) -> Result<Vec<(EventRow<u32>, u32)>> {
        let mut out = Vec::new();
        let mut row_in_file = 0u32;
        for batch in batches {
            let keys = self
                .keys
                .iter()
                .map(|(name, ty)| batch.column_by_name(name).map(|c| (c.as_ref(), *ty)))
                .collect::<Option<_>>()
                .ok_or_else(|| CoreError::Internal(format!("file {path} lacks a join key column")))?;
            let mut keys = KeyColumns::new(keys);
            let ts = column(batch, &self.ts_column, path)?.as_primitive::<TimestampMicrosecondType>();
            let seq = column(batch, SEQ_COLUMN, path)?.as_primitive::<UInt64Type>();
            for row in 0..batch.num_rows() {
                let (t, at) = (ts.value(row), row_in_file);
                row_in_file += 1;
                if t < self.first || t > self.hi {
                    continue;
                }
                if let Some(id) = self.ids.id(&mut keys, row) {
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
    let mut files: Vec<DataFile> =
        source.files.iter().filter(|f| f.min_ts <= hi && f.max_ts >= first).cloned().collect();
    // Newest first: a slot's match then tends to come before the older events it beats. By
    // day first, so that a day's files are next to each other (`day_groups`).
    files.sort_by_key(|f| std::cmp::Reverse((f.day, f.max_ts)));
    let spine_rows: Vec<SpineRow<u32>> =
        spine_ids.iter().zip(spine_ts.values()).map(|(&key, &ts)| SpineRow { key, ts }).collect();

    let keys: Vec<(String, ValueType)> = source.entity.join_keys.iter().map(|k| (k.name.clone(), k.ty)).collect();
    let mut pass1: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
    pass1.push(source.fs.timestamp_column.clone());
    pass1.push(SEQ_COLUMN.to_string());
    let names: Vec<String> = source.features.iter().map(|(i, _)| source.fs.features[*i].name.clone()).collect();
    let filter = EventFilter { ids, keys, ts_column: source.fs.timestamp_column.clone(), first, hi };
    let pass1 = Pass1 { store, files: &files, columns: pass1, window: &window, filter };
    let tracker = Arc::new(Tracker::default());
    let count = Partitions::needed(memory, spine_rows.len() as u64);
    let (hits, kept, started) = match count {
        1 => {
            let slots = Arc::new(cpu::run("sorting the spine", move || SpineSlots::new(&spine_rows)).await?);
            let kept = Kept::new(files.len(), slots.len(), memory.budget / 4);
            let (latest, kept) = pass1.fold(slots.clone(), &names, kept, memory.budget, &tracker).await?;
            let started = phases.add("read", started);
            (cpu::run("the as-of join", move || matched(&latest, &slots, ttl)).await?, kept, started)
        }
        _ => {
            let parts = pass1.spill(memory, count, &tracker).await?;
            usage.spilled_bytes += parts.spilled_bytes();
            let started = phases.add("read", started);
            let counted = tracker.clone();
            let join = move || join_partitions(parts, &spine_rows, ttl, &counted);
            (cpu::run("the as-of join", join).await??, None, started)
        }
    };
    usage.partitions = usage.partitions.max(count);
    usage.peak_bytes = usage.peak_bytes.max(tracker.peak());
    let started = phases.add("join", started);

    let taken = match kept {
        Some(kept) => kept,
        None => pass2(store, &files, &hits, names, &window).await?,
    };
    let places: Vec<Option<Place>> = hits.iter().map(|h| h.map(|h| (h.file, h.row))).collect();
    let gathered = Arc::new(cpu::run("placing the matches", move || Gathered::new(places.into_iter(), taken)).await??);
    // A column per job on the offline threads, as many at once as there are cores.
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let types: Vec<_> = source.features.iter().map(|(i, _)| arrow_type(source.fs.features[*i].ty)).collect();
    let columns: Vec<_> = (types.into_iter().enumerate())
        .map(|(f, ty)| {
            let gathered = gathered.clone();
            async move { cpu::run("taking a feature", move || gathered.column(f, &ty)).await? }
        })
        .collect();
    let columns: Vec<ArrayRef> = futures::stream::iter(columns).buffered(parallel).try_collect().await?;
    let ts: TimestampMicrosecondArray = hits.iter().map(|h| h.map(|h| h.ts)).collect();
    let ts: ArrayRef = Arc::new(ts.with_timezone(UTC));
    phases.add("features", started);
    Ok((columns, ts))
}

/// Pass 2: the feature values of the matched rows, read file by file: per file, the rows
/// it must give, sorted, and their values.
async fn pass2(
    store: &OfflineStore,
    files: &[DataFile],
    hits: &[Option<Hit>],
    names: Vec<String>,
    window: &TimeWindow,
) -> Result<Vec<Option<Taken>>> {
    let mut wanted: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
    for hit in hits.iter().flatten() {
        wanted[hit.file as usize].push(hit.row);
    }
    for rows in &mut wanted {
        rows.sort_unstable();
        rows.dedup();
    }
    let read: Vec<usize> = (0..files.len()).filter(|&f| !wanted[f].is_empty()).collect();
    let matched_files: Vec<DataFile> = read.iter().map(|&f| files[f].clone()).collect();
    let rows_of: Vec<Vec<u32>> = read.iter().map(|&f| std::mem::take(&mut wanted[f])).collect();
    let columns = names.clone();
    let take = move |i: usize, file: &DataFile, batches: Vec<RecordBatch>| {
        Taken::from_batches(&batches, rows_of[i].clone(), &names, &file.path)
    };
    let mut reads = read_files(store, &matched_files, columns, window, take);
    let mut taken: Vec<Option<Taken>> = (0..files.len()).map(|_| None).collect();
    while let Some((i, values)) = reads.try_next().await? {
        taken[read[i]] = Some(values);
    }
    Ok(taken)
}

/// Bytes of a file's decoded columns.
fn decoded_bytes(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.get_array_memory_size() as u64).sum()
}

/// Bytes of pass 1's kept events of a file.
fn kept_bytes(events: &[(EventRow<u32>, u32)]) -> u64 {
    size_of_val(events) as u64
}

/// What pass 1 reads of a source's files, and keeps of them.
struct Pass1<'a> {
    store: &'a OfflineStore,
    files: &'a [DataFile],
    columns: Vec<String>,
    window: &'a TimeWindow,
    filter: EventFilter,
}

impl Pass1<'_> {
    /// Reads the files and their `names` columns, a day's files together (`day_groups`,
    /// groups within a sixteenth of `budget`), offering their events to their slots in the
    /// group's own job and keeping the values of the rows that won (`kept`); answers the
    /// latest event of every slot, and the values unless it gave up keeping them.
    async fn fold(
        self,
        slots: Arc<SpineSlots>,
        names: &[String],
        kept: Kept,
        budget: u64,
        tracker: &Arc<Tracker>,
    ) -> Result<(Latest<Place>, Option<Vec<Option<Taken>>>)> {
        let slots_held = slots.len() as u64 * SPINE_ROW_BYTES;
        tracker.hold(slots_held);
        let fold = Arc::new(Fold {
            latest: Mutex::new(Latest::new(&slots)),
            slots,
            filter: self.filter,
            names: names.to_vec(),
            keeping: kept.keeping(),
            kept: Mutex::new(kept),
            tracker: tracker.clone(),
        });
        let mut columns = self.columns;
        columns.extend(names.iter().cloned());
        let (groups, shared) = (day_groups(self.files, GROUP_BYTES.min(budget / 16)), fold.clone());
        let mut reads =
            read_groups(self.store, self.files, groups, columns, self.window, move |read| shared.group(read));
        while reads.try_next().await?.is_some() {}
        drop(reads);
        tracker.release(slots_held);
        let fold = Arc::into_inner(fold).ok_or_else(failed_elsewhere)?;
        let kept = fold.kept.into_inner().map_err(|_| failed_elsewhere())?;
        Ok((fold.latest.into_inner().map_err(|_| failed_elsewhere())?, kept.finish(tracker)))
    }

    /// Reads the files, appending each one's events to their partition's spill file.
    async fn spill(self, memory: &Memory, count: u32, tracker: &Arc<Tracker>) -> Result<Partitions> {
        let mut parts = Partitions::create(memory, count)?;
        tracker.hold(parts.held_bytes());
        let (counted, filter) = (tracker.clone(), self.filter);
        let mut reads = read_files(self.store, self.files, self.columns, self.window, move |_, file, batches| {
            filter.counted_events(&counted, &file.path, &batches)
        });
        while let Some((file_no, events)) = reads.try_next().await? {
            let kept = kept_bytes(&events);
            // Off the runtime's workers too: encoding and writing the events takes its turn
            // on the offline threads, behind the decoding rather than beside it.
            parts = cpu::run("spilling events", move || parts.add(file_no as u32, events).map(|()| parts)).await??;
            tracker.release(kept);
        }
        Ok(parts)
    }
}

/// Files read together by one task of pass 1 take at most this many bytes, or a sixteenth
/// of the budget when that is less (a larger file is read alone): as much as one whole-file
/// read fetches.
const GROUP_BYTES: u64 = 16 << 20;

/// Consecutive files of one day, up to `max_bytes` in all. An ingest writes a file per
/// source and day, each holding a few of the day's keys: read together, a day's events
/// visit the slots in one sweep rather than one per file.
fn day_groups(files: &[DataFile], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, file) in files.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if files[group.start].day == file.day && bytes + file.bytes <= max_bytes => {
                group.end = i + 1;
                bytes += file.bytes;
            }
            _ => {
                groups.push(i..i + 1);
                bytes = file.bytes;
            }
        }
    }
    groups
}

/// What the groups' tasks of pass 1 share (`Pass1::fold`).
struct Fold {
    slots: Arc<SpineSlots>,
    filter: EventFilter,
    names: Vec<String>,
    latest: Mutex<Latest<Place>>,
    kept: Mutex<Kept>,
    keeping: Arc<AtomicBool>,
    tracker: Arc<Tracker>,
}

/// An event offered to its slot: its file's place in the group and its row in the file.
#[derive(Clone, Copy)]
struct Offer {
    slot: u32,
    file: u32,
    row: u32,
    ts: i64,
    seq: u64,
}

impl Fold {
    /// Offers a group's events to their slots and keeps the values of the rows that won,
    /// counting the group's decoded columns while they are held.
    fn group(&self, read: Vec<FileBatches>) -> Result<()> {
        let decoded = read.iter().map(|r| decoded_bytes(&r.batches)).sum();
        self.tracker.hold(decoded);
        let folded = self.offer_and_keep(&read);
        self.tracker.release(decoded);
        folded
    }

    fn offer_and_keep(&self, read: &[FileBatches]) -> Result<()> {
        // In key order the events visit the slots in their order, not at random, which the
        // caches reward.
        let mut events = Vec::new();
        for (f, r) in read.iter().enumerate() {
            let file = self.filter.events(&r.file.path, &r.batches)?;
            events.extend(file.into_iter().map(|(event, row)| (event, f as u32, row)));
        }
        // The events, and their copy in key order or their offers (no larger).
        let held = 2 * size_of_val(events.as_slice()) as u64;
        self.tracker.hold(held);
        let events = in_key_order(events, self.filter.ids.len());
        // The slots are only read: each event finds its own here, beside the other groups'
        // tasks, and the lock is held only to offer them.
        let offers: Vec<Offer> = (events.iter())
            .filter_map(|&(e, file, row)| {
                Some(Offer { slot: self.slots.slot(e.key, e.ts)?, file, row, ts: e.ts, seq: e.seq })
            })
            .collect();
        drop(events);
        let keep = self.keeping.load(Ordering::Relaxed);
        let at: Vec<u32> = read.iter().map(|r| r.at as u32).collect();
        let mut won: Vec<Vec<u32>> = vec![Vec::new(); read.len()];
        let mut latest = self.latest.lock().map_err(|_| failed_elsewhere())?;
        for o in &offers {
            if latest.offer(o.slot, o.ts, o.seq, (at[o.file as usize], o.row)) && keep {
                won[o.file as usize].push(o.row);
            }
        }
        drop(latest);
        self.tracker.release(held);
        let mut taken = Vec::new();
        for (r, mut rows) in read.iter().zip(won).filter(|(_, rows)| !rows.is_empty()) {
            rows.sort_unstable();
            taken.push((r.at, Taken::from_batches(&r.batches, rows, &self.names, &r.file.path)?));
        }
        // Kept, then the slots: the order every task takes the two locks in.
        let mut kept = self.kept.lock().map_err(|_| failed_elsewhere())?;
        let latest = self.latest.lock().map_err(|_| failed_elsewhere())?;
        for (at, values) in taken {
            kept.add(at, values, &latest, &self.tracker)?;
        }
        Ok(())
    }
}

/// An event of a group: the event, its file's place in the group, its row in the file.
type GroupEvent = (EventRow<u32>, u32, u32);

/// `events` in key order (among `keys` dense ids). Counted into place when the keys are
/// no more than the events (a pass to count, one to place, where a sort compares each
/// event many times), else sorted.
fn in_key_order(mut events: Vec<GroupEvent>, keys: usize) -> Vec<GroupEvent> {
    // A compacted file's are in key order already.
    if events.is_sorted_by_key(|(event, _, _)| event.key) {
        return events;
    }
    if keys > events.len() {
        events.sort_unstable_by_key(|(event, _, _)| event.key);
        return events;
    }
    let mut next = vec![0u32; keys + 1];
    for (event, _, _) in &events {
        next[event.key as usize + 1] += 1;
    }
    for k in 1..next.len() {
        next[k] += next[k - 1];
    }
    let mut placed = vec![(EventRow { key: 0, ts: 0, seq: 0 }, 0, 0); events.len()];
    for e in events {
        let at = &mut next[e.0.key as usize];
        placed[*at as usize] = e;
        *at += 1;
    }
    placed
}

/// Each spine row's match, by position, from the latest event of every slot.
fn matched(latest: &Latest<Place>, slots: &SpineSlots, ttl: i64) -> Vec<Option<Hit>> {
    latest.matches(slots, ttl).into_iter().map(|m| m.map(|(ts, (file, row))| Hit { file, row, ts })).collect()
}

/// Joins the spilled partitions one at a time: each partition's spine rows (keys `key %
/// count == p`, numbered `key / count` within it) take their slots, and the partition's
/// events are offered to them as its file is read back. For each spine row, by position,
/// its match.
fn join_partitions(
    mut parts: Partitions,
    spine: &[SpineRow<u32>],
    ttl: i64,
    tracker: &Tracker,
) -> Result<Vec<Option<Hit>>> {
    let count = parts.count();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); count as usize];
    for (position, row) in spine.iter().enumerate() {
        members[(row.key % count) as usize].push(position as u32);
    }
    let mut hits = vec![None; spine.len()];
    for (p, positions) in (0..count).zip(&members) {
        let held = positions.len() as u64 * SPINE_ROW_BYTES;
        tracker.hold(held);
        let rows: Vec<SpineRow<u32>> = positions
            .iter()
            .map(|&i| SpineRow { key: spine[i as usize].key / count, ts: spine[i as usize].ts })
            .collect();
        let slots = SpineSlots::new(&rows);
        let mut latest = Latest::new(&slots);
        parts.drain(p, |l| {
            if let Some(slot) = slots.slot(l.event.key / count, l.event.ts) {
                latest.offer(slot, l.event.ts, l.event.seq, (l.file, l.row));
            }
        })?;
        for (position, hit) in positions.iter().zip(matched(&latest, &slots, ttl)) {
            hits[*position as usize] = hit;
        }
        tracker.release(held);
    }
    tracker.release(parts.held_bytes());
    Ok(hits)
}

/// A lock poisoned by another file's task, which failed.
fn failed_elsewhere() -> CoreError {
    CoreError::Internal("another file's join failed".into())
}

fn empty_answer(source: &Source<'_>, rows: usize) -> (Vec<ArrayRef>, ArrayRef) {
    let columns =
        source.features.iter().map(|(i, _)| new_null_array(&arrow_type(source.fs.features[*i].ty), rows)).collect();
    (columns, new_null_array(&arrow_type(ValueType::Timestamp), rows))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Counted or sorted, the events come out in key order, each one once.
        #[test]
        fn events_come_in_key_order(keys in 1usize..50, raw in proptest::collection::vec((0u32..50, 0i64..9), 0..120)) {
            let events: Vec<GroupEvent> = (raw.iter().enumerate())
                .map(|(i, &(key, ts))| (EventRow { key: key % keys as u32, ts, seq: i as u64 }, 0, i as u32))
                .collect();
            let ordered = in_key_order(events.clone(), keys);
            prop_assert!(ordered.is_sorted_by_key(|(event, _, _)| event.key));
            let mut rows: Vec<u32> = ordered.iter().map(|e| e.2).collect();
            rows.sort_unstable();
            prop_assert_eq!(rows, (0..events.len() as u32).collect::<Vec<_>>());
            for (event, _, row) in &ordered {
                prop_assert_eq!(event.seq, u64::from(*row), "each event keeps its row");
            }
        }
    }
}
