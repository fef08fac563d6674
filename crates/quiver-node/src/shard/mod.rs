//! Shard groups: the latest row of each (feature set version, entity) in a range of the
//! entity-hash space.
//!
//! Rows are keyed by table and entity key (`keyspace::row`), so one feature set's rows are
//! contiguous and no two tables share a key.
//!
//! Every written row is also queued for the offline store in write order
//! (`keyspace::queue`), one record per write and entry (`QueuedWrite`); the export worker
//! drains the queue and `ExportAck` trims it.
//!
//! Request ids of writes are kept (with an expiry index) for `REQUEST_ID_TTL_MICROS`, with
//! the positions of the rows applied, so a retried row applies at most once (`requests`).
//!
//! A shard owns a range of the entity-hash space (`keyspace::SHARD_RANGE`), changed only by
//! entries of its own log (`split`, `merge`): a write with a key outside it is refused whole, and a
//! read checks it after reading (see `Range`), so neither a write nor a read ever lands on a
//! shard that gave the key away, whatever the shard map the sender used.

pub mod export_order;
pub mod leftover;
pub mod machine;
pub mod merge;
pub mod requests;
pub mod split;
pub mod staging;

use std::collections::HashMap;
use std::sync::RwLock;

use quiver_core::key::key_hash;
use quiver_core::row::{MAX_ROWS_PER_WRITE, StoredRow, WriteSeq, supersedes};
use quiver_core::table::TableRef;
use serde::{Deserialize, Serialize};

use quiver_store::codec::{self, Record, load, load_leading, store};
use quiver_store::command::{Once, Response, ShardCommand, ShardRow, Write};
use quiver_store::error::Result;
use quiver_store::keyspace::{self, QUEUE, REQUEST_EXPIRY};
use quiver_store::storage::{KvTree, WriteBatch};
use requests::RequestRecord;

/// How long a write's request id is remembered.
pub const REQUEST_ID_TTL_MICROS: i64 = 600_000_000;
/// Expired request ids dropped per write, so cleanup cost stays bounded per entry.
const EXPIRED_PER_WRITE: usize = 16;

/// The hash range a shard group applies and serves, as its log last set it; `None` for a
/// group created by a split whose data has not arrived yet (it owns nothing until then).
/// Shared by the state machine, which changes it, and the read path, which checks a key
/// after reading its row: a split shrinks the range before deleting the rows it gives away,
/// so a row read while its key was still covered was still there.
pub struct Range {
    pub shard: u64,
    bounds: RwLock<Option<(u64, u64)>>,
}

impl Range {
    pub fn new(shard: u64, bounds: Option<(u64, u64)>) -> Range {
        Range { shard, bounds: RwLock::new(bounds) }
    }

    pub fn get(&self) -> Option<(u64, u64)> {
        *self.bounds.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, bounds: Option<(u64, u64)>) {
        *self.bounds.write().unwrap_or_else(|p| p.into_inner()) = bounds;
    }

    pub fn covers(&self, hash: u64) -> bool {
        covered(self.get(), hash)
    }

    /// `KeyNotInShard` for entity `position` (from 1) when its key's hash is outside the range.
    pub fn check(&self, hash: u64, position: usize) -> std::result::Result<(), quiver_core::Error> {
        check_hash(self.shard, self.get(), hash, position)
    }
}

fn covered(bounds: Option<(u64, u64)>, hash: u64) -> bool {
    bounds.is_some_and(|(start, end)| (start..=end).contains(&hash))
}

/// `KeyNotInShard` for entity `position` (from 1) of shard `shard` when `hash` is outside `bounds`.
fn check_hash(
    shard: u64,
    bounds: Option<(u64, u64)>,
    hash: u64,
    position: usize,
) -> std::result::Result<(), quiver_core::Error> {
    match covered(bounds, hash) {
        true => Ok(()),
        false => Err(quiver_core::Error::KeyNotInShard { shard, entity: position }),
    }
}

/// The cluster version from which a write's queued rows are one record (`QueuedWrite`);
/// before it, each row is a `QueuedRow` of its own, which a node of the earlier release reads.
const QUEUED_WRITES: u32 = 3;
// `queued_rows` tells the two kinds apart by format: a `QueuedWrite` is never stored bare.
const _: () = assert!(QUEUED_WRITES >= codec::VERSIONED_RECORDS);

/// A written row waiting for export to the offline store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedRow {
    pub table: TableRef,
    pub row: ShardRow,
}

impl Record for QueuedRow {}

/// The rows one write queued in one entry, with their positions in it, stored under the
/// queue key of the last: one sled insert and one delete per write instead of per row. An
/// acknowledgement trims whole records only, since its mark ends an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedWrite {
    pub table: TableRef,
    pub rows: Vec<(u32, ShardRow)>,
}

/// Format 2: records in formats 0 and 1 under a queue key are `QueuedRow`s.
impl Record for QueuedWrite {
    const FORMAT: u8 = 2;
}

/// The rows of the queue record stored under the key of `last`.
fn queued_rows(last: WriteSeq, bytes: &[u8]) -> Result<Vec<(WriteSeq, QueuedRow)>> {
    if codec::format_of(bytes)?.0 < QueuedWrite::FORMAT {
        return Ok(vec![(last, load(bytes)?)]);
    }
    let write: QueuedWrite = load(bytes)?;
    let at = |pos| WriteSeq { log_index: last.log_index, pos };
    Ok(write.rows.into_iter().map(|(pos, row)| (at(pos), QueuedRow { table: write.table.clone(), row })).collect())
}

/// Queues `rows` (position, row) of one write of entry `log_index` for export, in the form
/// of cluster version `version`.
fn queue(
    batch: &mut WriteBatch,
    (table, log_index): (&TableRef, u64),
    rows: Vec<(u32, ShardRow)>,
    version: u32,
) -> Result<()> {
    let key = |pos| keyspace::queue(WriteSeq { log_index, pos });
    if version < QUEUED_WRITES {
        for (pos, row) in rows {
            batch.put(key(pos), codec::store_at(&QueuedRow { table: table.clone(), row }, version)?);
        }
    } else if let Some((last, _)) = rows.last() {
        let last = key(*last);
        batch.put(last, codec::store_at(&QueuedWrite { table: table.clone(), rows }, version)?);
    }
    Ok(())
}

/// The oldest queued rows, in whole entries: `limit` rows, or more to finish the entry the
/// last of them came in. So an export mark always ends an entry, and a writer waiting for
/// its entry's rows (`Client::wait_for_export`) can compare log indexes alone.
pub fn read_queue(tree: &dyn KvTree, limit: usize) -> Result<Vec<(WriteSeq, QueuedRow)>> {
    let mut rows: Vec<(WriteSeq, QueuedRow)> = Vec::new();
    for kv in tree.scan_prefix(&[QUEUE]) {
        let (k, v) = kv?;
        let seq = keyspace::queue_seq(&k)
            .ok_or_else(|| quiver_store::error::Error::Storage(format!("bad queue key {k:02x?}")))?;
        if rows.len() >= limit && rows.last().is_none_or(|(last, _)| last.log_index != seq.log_index) {
            break;
        }
        rows.extend(queued_rows(seq, &v)?);
    }
    Ok(rows)
}

pub fn read_row(tree: &dyn KvTree, table: &TableRef, entity_key: &[u8]) -> Result<Option<StoredRow>> {
    tree.get(&keyspace::row(table, entity_key))?.map(|b| load(&b)).transpose()
}

/// Writes of one `apply` call, which the tree does not hold yet: later entries of the
/// same call must see the rows earlier ones wrote.
#[derive(Default)]
pub struct PendingWrites {
    rows: HashMap<Vec<u8>, StoredRow>,
    /// Request records changed in this call, by key.
    requests: HashMap<Vec<u8>, RequestRecord>,
    other: WriteBatch,
    /// The range set by this call (`merge`), published once the batch is written: a range
    /// that grows must not be read before the rows it gained are in the tree.
    range: Option<Option<(u64, u64)>>,
}

impl PendingWrites {
    /// The event time of the stored row of `key`: last written in this call, else in the
    /// tree (read without decoding the row's values).
    fn event_ts(&self, tree: &dyn KvTree, key: &[u8]) -> Result<Option<i64>> {
        if let Some(row) = self.rows.get(key) {
            return Ok(Some(row.event_ts));
        }
        tree.get(key)?.map(|b| load_leading::<StoredRow, i64>(&b)).transpose()
    }

    /// The shard's range as this call's entries see it.
    fn bounds(&self, owned: &Range) -> Option<(u64, u64)> {
        self.range.unwrap_or_else(|| owned.get())
    }

    /// Adds the call's writes to `batch`; returns the range to publish once it is written.
    pub fn flush_into(self, batch: &mut WriteBatch) -> Result<Option<Option<(u64, u64)>>> {
        if let Some(range) = self.range {
            batch.put(keyspace::SHARD_RANGE, store(&range)?);
        }
        for (key, row) in self.rows {
            batch.put(key, store(&row)?);
        }
        for (key, value) in self.other.into_ops() {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        for (key, record) in self.requests {
            batch.put(key, record.encode()?);
        }
        Ok(self.range)
    }
}

/// Applies writes or an export acknowledgement. A split is applied by `split::apply` (it
/// needs the tree to hold every earlier entry first) after `staging`, the steps of a merge
/// by `merge::apply`.
pub fn apply(
    tree: &dyn KvTree,
    cache: &mut PendingWrites,
    owned: &Range,
    log_index: u64,
    leader_time: i64,
    cmd: &ShardCommand,
) -> Result<Response> {
    let mut first = WriteSeq { log_index, pos: 0 };
    match cmd {
        ShardCommand::Write(w) => write(tree, cache, owned, first, leader_time, fields(w)),
        ShardCommand::Writes(writes) => {
            let mut answers = Vec::with_capacity(writes.len());
            for w in writes {
                answers.push(write(tree, cache, owned, first, leader_time, fields(w))?);
                first.pos = first.pos.saturating_add(u32::try_from(w.rows.len()).unwrap_or(u32::MAX));
            }
            Ok(Response::Batch(answers))
        }
        ShardCommand::Put { table, rows, export, request } => {
            let positions = (0..rows.len() as u32).collect();
            let once = request.clone().map(|id| Once { id, positions });
            write(tree, cache, owned, first, leader_time, (table, rows, *export, once.as_ref()))
        }
        ShardCommand::ExportAck { through } => {
            let range = (std::ops::Bound::Included(vec![QUEUE]), std::ops::Bound::Included(keyspace::queue(*through)));
            for kv in tree.scan(range) {
                cache.other.delete(kv?.0);
            }
            Ok(Response::Done)
        }
        ShardCommand::Split { .. }
        | ShardCommand::PrepareSplit { .. }
        | ShardCommand::Freeze
        | ShardCommand::Thaw
        | ShardCommand::Absorb { .. }
        | ShardCommand::Grow { .. } => {
            Err(quiver_store::error::Error::Storage("splits and merges are applied by their own modules".into()))
        }
    }
}

/// What `write` takes of a `Write`.
fn fields(w: &Write) -> (&TableRef, &[ShardRow], bool, Option<&Once>) {
    (&w.table, &w.rows, w.export, w.once.as_ref())
}

/// Applies one write whose rows take the entry's sequence numbers from `first` on.
fn write(
    tree: &dyn KvTree,
    cache: &mut PendingWrites,
    owned: &Range,
    first: WriteSeq,
    leader_time: i64,
    (table, rows, export, once): (&TableRef, &[ShardRow], bool, Option<&Once>),
) -> Result<Response> {
    // Sent with an older shard map: refused whole, before its request id is remembered, so
    // the retry with a fresh map applies.
    let bounds = cache.bounds(owned);
    if let Some(e) =
        rows.iter().enumerate().find_map(|(i, row)| check_hash(owned.shard, bounds, key_hash(&row.key), i + 1).err())
    {
        return Ok(Response::Rejected(e));
    }
    let fresh = match once {
        Some(once) => match remember_rows(tree, cache, once, rows.len(), leader_time)? {
            Ok(fresh) => fresh,
            Err(refused) => return Ok(Response::Rejected(refused)),
        },
        None => vec![true; rows.len()],
    };
    if !rows.is_empty() && !fresh.contains(&true) {
        return Ok(Response::Duplicate);
    }
    let mut queued = Vec::new();
    for (pos, row) in rows.iter().enumerate().filter(|(pos, _)| fresh[*pos]) {
        let key = keyspace::row(table, &row.key);
        let seq = WriteSeq { log_index: first.log_index, pos: first.pos.saturating_add(pos as u32) };
        if export {
            queued.push((seq.pos, row.clone()));
        }
        if cache.event_ts(tree, &key)?.is_none_or(|old| supersedes(row.event_ts, old)) {
            let stored = StoredRow { event_ts: row.event_ts, seq, written_at: leader_time, values: row.values.clone() };
            cache.rows.insert(key, stored);
        }
    }
    queue(&mut cache.other, (table, first.log_index), queued, codec::cluster_version())?;
    Ok(Response::Written { rows: rows.len() as u64 })
}

/// The request record of `key` as this call sees it: changed in it, else in the tree.
fn request_record(tree: &dyn KvTree, cache: &PendingWrites, key: &[u8]) -> Result<Option<RequestRecord>> {
    if let Some(record) = cache.requests.get(key) {
        return Ok(Some(record.clone()));
    }
    match cache.other.pending(key) {
        Some(pending) => pending.map(RequestRecord::decode).transpose(),
        None => tree.get(key)?.map(|b| RequestRecord::decode(&b)).transpose(),
    }
}

/// Records that `once`'s rows (`rows` of them) applied at `leader_time`; answers which of
/// them had not applied before, or why the positions are refused. Also forgets a few
/// expired ids (deterministic: it depends only on the tree and the entry's time).
fn remember_rows(
    tree: &dyn KvTree,
    cache: &mut PendingWrites,
    once: &Once,
    rows: usize,
    leader_time: i64,
) -> Result<std::result::Result<Vec<bool>, quiver_core::Error>> {
    if once.positions.len() != rows || once.positions.iter().any(|p| *p as usize >= MAX_ROWS_PER_WRITE) {
        let why = format!(
            "a write of {rows} rows needs as many row positions, each below {MAX_ROWS_PER_WRITE}; it has {}",
            once.positions.len()
        );
        return Ok(Err(quiver_core::Error::InvalidArgument(why)));
    }
    forget_expired(tree, cache, leader_time)?;
    let key = keyspace::request(&once.id);
    let mut record = match request_record(tree, cache, &key)? {
        Some(record) => record,
        None => {
            cache.other.put(keyspace::expiry(REQUEST_EXPIRY, leader_time, &once.id), Vec::new());
            RequestRecord::new(leader_time)
        }
    };
    let fresh = once.positions.iter().map(|p| record.insert(*p)).collect();
    cache.requests.insert(key, record);
    Ok(Ok(fresh))
}

/// Drops a few request ids whose time is past the TTL at `leader_time`.
fn forget_expired(tree: &dyn KvTree, cache: &mut PendingWrites, leader_time: i64) -> Result<()> {
    let cutoff = leader_time.saturating_sub(REQUEST_ID_TTL_MICROS);
    for kv in tree.scan_prefix(&[REQUEST_EXPIRY]).take(EXPIRED_PER_WRITE) {
        let (expiry_key, _) = kv?;
        let Some((_, id)) = keyspace::split_expiry(&expiry_key).filter(|(at, _)| *at < cutoff) else { break };
        let key = keyspace::request(id);
        // A merge may have joined a later record of the same id: it has its own expiry.
        if request_record(tree, cache, &key)?.is_some_and(|r| r.at < cutoff) {
            cache.requests.remove(&key);
            cache.other.delete(key);
        }
        cache.other.delete(expiry_key.clone());
    }
    Ok(())
}

/// Adds a frozen neighbour's record of a request id to this shard's (`merge`).
pub(crate) fn join_request(tree: &dyn KvTree, cache: &mut PendingWrites, key: &[u8], value: &[u8]) -> Result<()> {
    let theirs = RequestRecord::decode(value)?;
    let joined = match request_record(tree, cache, key)? {
        Some(mut mine) => {
            mine.join(&theirs);
            mine
        }
        None => theirs,
    };
    cache.requests.insert(key.to_vec(), joined);
    Ok(())
}

#[cfg(test)]
mod tests {
    use quiver_core::Value;

    use super::*;
    use quiver_store::storage::{KvEngine, MemEngine};

    fn put(request: &[u8]) -> ShardCommand {
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let rows = vec![ShardRow { key: b"k".to_vec(), event_ts: 1, values: vec![Value::Int64(1)] }];
        ShardCommand::Put { table, rows, export: true, request: Some(request.to_vec()) }
    }

    fn everything() -> Range {
        Range::new(1, Some((0, u64::MAX)))
    }

    fn apply_one(tree: &dyn KvTree, index: u64, time: i64, cmd: &ShardCommand) -> Response {
        let mut cache = PendingWrites::default();
        let response = apply(tree, &mut cache, &everything(), index, time, cmd).unwrap();
        let mut batch = WriteBatch::default();
        cache.flush_into(&mut batch).unwrap();
        tree.write(batch).unwrap();
        response
    }

    #[test]
    fn a_request_id_applies_once_until_it_expires() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        assert!(matches!(apply_one(tree.as_ref(), 1, 0, &put(b"a")), Response::Written { rows: 1 }));
        assert!(matches!(apply_one(tree.as_ref(), 2, 1, &put(b"a")), Response::Duplicate));
        assert_eq!(read_queue(tree.as_ref(), 10).unwrap().len(), 1, "the duplicate queued nothing");
        // A later write forgets ids older than the TTL, so "a" may be used again.
        let later = REQUEST_ID_TTL_MICROS + 10;
        assert!(matches!(apply_one(tree.as_ref(), 3, later, &put(b"b")), Response::Written { .. }));
        assert!(matches!(apply_one(tree.as_ref(), 4, later, &put(b"a")), Response::Written { .. }));
        // Two entries with one id in the same apply call: the second is the duplicate.
        let mut cache = PendingWrites::default();
        let all = everything();
        assert!(matches!(
            apply(tree.as_ref(), &mut cache, &all, 5, later, &put(b"c")).unwrap(),
            Response::Written { .. }
        ));
        assert!(matches!(apply(tree.as_ref(), &mut cache, &all, 6, later, &put(b"c")).unwrap(), Response::Duplicate));
    }

    /// Writes committed together in one entry: each answered as if alone, their rows
    /// queued in order under distinct sequence numbers, and one refused changing nothing.
    #[test]
    fn writes_in_one_entry_apply_each_as_if_alone() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let write = |keys: &[u8], id: &[u8]| {
            let rows =
                keys.iter().map(|k| ShardRow { key: vec![*k], event_ts: 1, values: vec![Value::Int64(*k as i64)] });
            let once = Some(Once { id: id.to_vec(), positions: (0..keys.len() as u32).collect() });
            Write { table: table.clone(), rows: rows.collect(), export: true, once }
        };
        let bad = Write { once: Some(Once { id: b"bad".to_vec(), positions: vec![] }), ..write(&[9], b"bad") };
        let entry = ShardCommand::Writes(vec![write(&[1, 2], b"a"), bad, write(&[3], b"b"), write(&[1], b"a")]);
        let Response::Batch(answers) = apply_one(tree.as_ref(), 7, 0, &entry) else {
            panic!("a batch is answered in a batch")
        };
        assert!(matches!(answers[0], Response::Written { rows: 2 }), "{answers:?}");
        assert!(matches!(answers[1], Response::Rejected(quiver_core::Error::InvalidArgument(_))), "{answers:?}");
        assert!(matches!(answers[2], Response::Written { rows: 1 }), "{answers:?}");
        assert_eq!(answers[3], Response::Duplicate, "request a's first row, again in the same entry");
        let queued: Vec<(u32, Vec<u8>)> =
            read_queue(tree.as_ref(), 100).unwrap().into_iter().map(|(seq, q)| (seq.pos, q.row.key)).collect();
        assert_eq!(queued, [(0, vec![1]), (1, vec![2]), (3, vec![3])], "the refused write's place stays empty");
        assert!(read_row(tree.as_ref(), &table, &[9]).unwrap().is_none());
        assert_eq!(read_row(tree.as_ref(), &table, &[3]).unwrap().unwrap().seq, WriteSeq { log_index: 7, pos: 3 });
    }

    #[test]
    fn the_queue_is_read_in_whole_entries() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let row = |k: u8| ShardRow { key: vec![k], event_ts: 1, values: vec![Value::Int64(1)] };
        for (index, keys) in [(1, 0..3), (2, 3..6)] {
            let rows = keys.map(row).collect();
            let write = ShardCommand::Put { table: table.clone(), rows, export: true, request: None };
            apply_one(tree.as_ref(), index, 0, &write);
        }
        let indexes = |limit| -> Vec<u64> {
            read_queue(tree.as_ref(), limit).unwrap().iter().map(|(seq, _)| seq.log_index).collect()
        };
        assert_eq!(indexes(1), [1, 1, 1], "the first entry is finished");
        assert_eq!(indexes(3), [1, 1, 1], "a limit that ends an entry stops there");
        assert_eq!(indexes(4), [1, 1, 1, 2, 2, 2]);
        assert_eq!(indexes(100).len(), 6);
    }

    /// A queue that holds rows of the release before (a record per row) and writes of this
    /// one (a record per write) reads as one sequence, and an acknowledgement through the
    /// end of an entry trims both.
    #[test]
    fn a_queue_of_rows_and_of_whole_writes_reads_in_write_order() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let row = |k: u8| ShardRow { key: vec![k], event_ts: 1, values: vec![Value::Int64(k.into())] };
        let mut batch = WriteBatch::default();
        queue(&mut batch, (&table, 4), vec![(0, row(1)), (1, row(2))], 2).unwrap();
        queue(&mut batch, (&table, 5), vec![(0, row(3)), (2, row(4))], QUEUED_WRITES).unwrap();
        queue(&mut batch, (&table, 5), vec![(3, row(5))], QUEUED_WRITES).unwrap();
        queue(&mut batch, (&table, 6), vec![(0, row(6))], QUEUED_WRITES).unwrap();
        assert_eq!(batch.keys().count(), 5, "one record per row before version 3, per write from it");
        tree.write(batch).unwrap();
        let read = |limit| -> Vec<(u64, u32, u8)> {
            let queue = read_queue(tree.as_ref(), limit).unwrap();
            queue.into_iter().map(|(seq, q)| (seq.log_index, seq.pos, q.row.key[0])).collect()
        };
        let all = [(4, 0, 1), (4, 1, 2), (5, 0, 3), (5, 2, 4), (5, 3, 5), (6, 0, 6)];
        assert_eq!(read(100), all);
        assert_eq!(read(3), all[..5], "the entry begun is finished");
        let ack = ShardCommand::ExportAck { through: WriteSeq { log_index: 5, pos: 3 } };
        apply_one(tree.as_ref(), 7, 0, &ack);
        assert_eq!(read(100), all[5..], "trimmed through the end of entry 5");
    }

    #[test]
    fn a_write_with_a_key_outside_the_range_is_refused_whole() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        let hash = key_hash(b"k");
        let elsewhere = Range::new(4, Some((hash.wrapping_add(1), hash.wrapping_add(1))));
        let mut cache = PendingWrites::default();
        let refused = apply(tree.as_ref(), &mut cache, &elsewhere, 1, 0, &put(b"a")).unwrap();
        assert_eq!(refused, Response::Rejected(quiver_core::Error::KeyNotInShard { shard: 4, entity: 1 }));
        let mut batch = WriteBatch::default();
        cache.flush_into(&mut batch).unwrap();
        assert!(batch.into_ops().is_empty(), "nothing of it is written, not even its request id");
        // The same request to the shard that owns the key applies.
        assert!(matches!(apply_one(tree.as_ref(), 2, 0, &put(b"a")), Response::Written { rows: 1 }));
        assert!(!Range::new(5, None).covers(hash), "a split child without its data owns nothing");
    }
}
