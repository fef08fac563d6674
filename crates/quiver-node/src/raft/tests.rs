//! The Raft stores against openraft's conformance suite, over sled and the in-memory
//! engine, plus the properties of our own state machine the suite cannot express.

use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError};
use quiver_core::Value;
use quiver_core::table::TableRef;
use tempfile::TempDir;

use super::log_store::LogStore;
use super::state_machine::{Kind, StateMachine};
use super::{NodeId, TypeConfig};
use crate::shard::machine::ShardMachine;
use crate::shard::split::seed_log_id;
use crate::shard::staging::Progress;
use crate::shard::{Range, read_row};
use quiver_store::command::Response;
use quiver_store::command::{Command, Request, ShardCommand, ShardRow, Write};
use quiver_store::storage::{KvEngine, MemEngine, SledEngine};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().expect("temp dir");
        let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(dir.path()).expect("sled opens"));
        let (log, sm) = stores(engine);
        Ok((dir, log, sm))
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<NodeId>> {
        let (log, sm) = stores(Arc::new(MemEngine::default()));
        Ok(((), log, sm))
    }
}

/// A shard of the first layout, owning the whole hash space.
fn shard_kind() -> Kind {
    Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(7, None)), Some((0, u64::MAX)))))
}

fn stores(engine: Arc<dyn KvEngine>) -> (LogStore, StateMachine) {
    let log = LogStore::open(engine.clone(), 1).expect("log store opens");
    let sm = StateMachine::open(engine, 1, shard_kind()).expect("state machine opens");
    (log, sm)
}

#[test]
fn sled_stores_pass_the_openraft_suite() {
    Suite::test_all(SledBuilder).unwrap();
}

#[test]
fn mem_stores_pass_the_openraft_suite() {
    Suite::test_all(MemBuilder).unwrap();
}

fn table() -> TableRef {
    TableRef { project: "p".into(), set: "s".into(), version: 1 }
}

fn put(index: u64, rows: &[(i64, i64, f64)]) -> Entry<TypeConfig> {
    let rows = rows
        .iter()
        .map(|(key, ts, v)| ShardRow {
            key: quiver_core::key::encode_entity_key(&[Value::Int64(*key)]),
            event_ts: *ts,
            values: vec![Value::Float64(*v)],
        })
        .collect();
    entry(index, ShardCommand::Put { table: table(), rows, export: true, request: None })
}

fn value_of(sm: &StateMachine, key: i64) -> Option<(i64, Value)> {
    let key = quiver_core::key::encode_entity_key(&[Value::Int64(key)]);
    read_row(sm.data().as_ref(), &table(), &key).unwrap().map(|r| (r.event_ts, r.values[0].clone()))
}

#[tokio::test]
async fn shard_apply_keeps_the_newest_event_and_replays_harmlessly() {
    let dir = TempDir::new().unwrap();
    let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(dir.path()).unwrap());
    let mut sm = StateMachine::open(engine.clone(), 7, shard_kind()).unwrap();
    // Same entity three times in one batch and across batches: newest event time wins,
    // the later write wins a tie, an older event never replaces a newer one.
    let entries = vec![put(1, &[(1, 10, 1.0), (1, 20, 2.0), (1, 20, 3.0)]), put(2, &[(1, 15, 9.0), (2, 5, 5.0)])];
    sm.apply(entries.clone()).await.unwrap();
    assert_eq!(value_of(&sm, 1), Some((20, Value::Float64(3.0))));
    assert_eq!(value_of(&sm, 2), Some((5, Value::Float64(5.0))));
    sm.apply(entries).await.unwrap();
    assert_eq!(value_of(&sm, 1), Some((20, Value::Float64(3.0))), "replay changes nothing");
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));

    // A snapshot carries everything to a fresh state machine.
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let other_dir = TempDir::new().unwrap();
    let other_engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(other_dir.path()).unwrap());
    let mut other = StateMachine::open(other_engine, 7, shard_kind()).unwrap();
    other.apply(vec![put(1, &[(3, 1, 1.0)])]).await.unwrap();
    other.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
    assert_eq!(value_of(&other, 1), Some((20, Value::Float64(3.0))));
    assert_eq!(value_of(&other, 3), None, "install replaces what was there");
    assert_eq!(other.applied_state().await.unwrap().0.map(|l| l.index), Some(2));

    // Reopening finds the applied state on disk.
    drop(sm);
    let mut sm = StateMachine::open(engine, 7, shard_kind()).unwrap();
    assert_eq!(value_of(&sm, 2), Some((5, Value::Float64(5.0))));
    assert_eq!(sm.applied_state().await.unwrap().0.map(|l| l.index), Some(2));
}

fn entry(index: u64, command: ShardCommand) -> Entry<TypeConfig> {
    let request = Request { leader_time: index as i64, command: Command::Shard(command) };
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(request) }
}

fn hash_of(id: i64) -> u64 {
    quiver_core::key::key_hash(&quiver_core::key::encode_entity_key(&[Value::Int64(id)]))
}

#[tokio::test]
async fn a_split_seeds_the_child_from_the_parent_and_replays_harmlessly() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let mut parent = StateMachine::open(engine.clone(), 7, shard_kind()).unwrap();
    let rows: Vec<(i64, i64, f64)> = (0..200).map(|id| (id, 10, id as f64)).collect();
    let at = 1 << 63;
    let split = ShardCommand::Split { start: 0, end: u64::MAX, at, child: 9 };
    // A write, the split and a write of a key the parent kept, in one apply call.
    let kept = (0..200).find(|id| hash_of(*id) < at).unwrap();
    let moved = (0..200).find(|id| hash_of(*id) >= at).unwrap();
    let answers =
        parent.apply(vec![put(1, &rows), entry(2, split.clone()), put(3, &[(kept, 20, -1.0)])]).await.unwrap();
    assert_eq!(answers[1], Response::Done);
    assert!(matches!(answers[2], Response::Written { rows: 1 }));
    assert_eq!(parent.range().unwrap().get(), Some((0, at - 1)));
    // The parent kept its half; a write of a key it gave away is refused whole.
    assert_eq!(value_of(&parent, kept), Some((20, Value::Float64(-1.0))));
    assert_eq!(value_of(&parent, moved), None);
    let refused = parent.apply(vec![put(4, &[(kept, 30, 1.0), (moved, 30, 1.0)])]).await.unwrap();
    assert_eq!(refused[0], Response::Rejected(quiver_core::Error::KeyNotInShard { shard: 7, entity: 2 }));
    assert_eq!(value_of(&parent, kept), Some((20, Value::Float64(-1.0))), "nothing of it applied");

    // The child starts where its seed left it: the upper half's rows, applied at the seed.
    let child_kind = Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(9, None)), None)));
    let mut child = StateMachine::open(engine.clone(), 9, child_kind).unwrap();
    assert_eq!(child.range().unwrap().get(), Some((at, u64::MAX)));
    assert_eq!(child.applied_state().await.unwrap().0, Some(seed_log_id()));
    for id in 0..200 {
        let expected = (hash_of(id) >= at).then_some((10, Value::Float64(id as f64)));
        assert_eq!(value_of(&child, id), expected, "driver {id} in the child");
    }
    let mut log = LogStore::open(engine.clone(), 9).unwrap();
    let state = openraft::storage::RaftLogStorage::get_log_state(&mut log).await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(seed_log_id()), "the child's log starts after its seed");

    // The child takes a write; replaying the split in the parent leaves both as they are.
    child.apply(vec![put(1, &[(moved, 40, 4.0)])]).await.unwrap();
    let replay = parent.apply(vec![entry(2, split)]).await.unwrap();
    assert_eq!(replay[0], Response::Done);
    assert_eq!(value_of(&child, moved), Some((40, Value::Float64(4.0))), "the child is not seeded twice");
    assert_eq!(value_of(&parent, kept), Some((20, Value::Float64(-1.0))));
    // Another range than the shard holds is refused.
    let other = ShardCommand::Split { start: 5, end: 6, at: 6, child: 10 };
    assert!(matches!(parent.apply(vec![entry(5, other)]).await.unwrap()[0], Response::Rejected(_)));
}

/// The keys of the copied spaces in the state tree of group `id`.
fn copied_keys(engine: &dyn KvEngine, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tree = engine.tree(&quiver_store::keyspace::tree_name(id, quiver_store::keyspace::TreePart::State)).unwrap();
    crate::shard::staging::scan_copied(tree.as_ref(), None).map(Result::unwrap).collect()
}

/// A write of `ids` at event time `ts` applying once per request `request`.
fn write_request(index: u64, request: &[u8], ids: &[i64], ts: i64) -> Entry<TypeConfig> {
    let rows = ids
        .iter()
        .map(|id| ShardRow {
            key: quiver_core::key::encode_entity_key(&[Value::Int64(*id)]),
            event_ts: ts,
            values: vec![Value::Float64(-(*id as f64))],
        })
        .collect();
    let once = Some(quiver_store::command::Once { id: request.to_vec(), positions: (0..ids.len() as u32).collect() });
    entry(index, ShardCommand::Write(Write { table: table(), rows, export: true, once }))
}

/// Writes applied while a split's rows are copied ahead of it, over keys the copy has and has
/// not passed: the split seeds the child with the keys a split without the copy seeds, whether
/// the copy had finished or not.
#[tokio::test]
async fn a_split_copied_ahead_seeds_the_child_a_full_copy_would() {
    let (at, child) = (1 << 63, 9);
    let rows: Vec<(i64, i64, f64)> = (0..20_000).map(|id| (id, 10, id as f64)).collect();
    for wait_for_copy in [false, true] {
        let staged: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
        let plain: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
        let mut with_copy = StateMachine::open(staged.clone(), 7, shard_kind()).unwrap();
        let mut without = StateMachine::open(plain.clone(), 7, shard_kind()).unwrap();
        let load: Vec<_> = rows.chunks(1_000).zip(1..).map(|(chunk, index)| put(index, chunk)).collect();
        with_copy.apply(load.clone()).await.unwrap();
        without.apply(load).await.unwrap();
        let prepare = entry(30, ShardCommand::PrepareSplit { at, child });
        assert_eq!(with_copy.apply(vec![prepare]).await.unwrap()[0], Response::Done);
        let staging = with_copy.staging().unwrap();
        while wait_for_copy && staging.progress((at, u64::MAX), child) != Progress::Done {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Newer values across the key space, new keys, and request ids, in several calls.
        for n in 0..20 {
            let ids: Vec<i64> = (0..10).map(|i| (n * 997 + i * 1_999) % 25_000).collect();
            let write = vec![write_request(31 + n as u64, format!("w{n}").as_bytes(), &ids, 11 + n)];
            with_copy.apply(write.clone()).await.unwrap();
            without.apply(write).await.unwrap();
        }
        let split = entry(60, ShardCommand::Split { start: 0, end: u64::MAX, at, child });
        assert_eq!(with_copy.apply(vec![split.clone()]).await.unwrap()[0], Response::Done);
        assert_eq!(without.apply(vec![split]).await.unwrap()[0], Response::Done);
        let (ours, theirs) = (copied_keys(staged.as_ref(), child), copied_keys(plain.as_ref(), child));
        assert!(ours.len() > 10_000, "the child holds its half of the rows");
        assert!(ours == theirs, "the child seeded after a copy (finished: {wait_for_copy}) differs from a full copy");
        assert_eq!(staging.progress((at, u64::MAX), child), Progress::Absent, "staging ends with the split");
    }
}

/// The rows a split gave away leave the parent over its next applies, not in the split's
/// own; a merge right after the split sweeps them before taking its neighbour's rows back.
#[tokio::test]
async fn rows_given_away_are_swept_later_and_before_a_merge() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let (at, child) = (1 << 63, 9);
    let rows: Vec<(i64, i64, f64)> = (0..6_000).map(|id| (id, 10, id as f64)).collect();
    let given_away = |sm: &StateMachine| {
        sm.data()
            .scan_prefix(&[quiver_store::keyspace::ROW])
            .filter(|kv| {
                let key = &kv.as_ref().unwrap().0;
                quiver_store::keyspace::row_hash(key).is_some_and(|h| h >= at)
            })
            .count()
    };
    let mut parent = StateMachine::open(engine.clone(), 7, shard_kind()).unwrap();
    let load: Vec<_> = rows.chunks(1_000).zip(1..).map(|(chunk, index)| put(index, chunk)).collect();
    parent.apply(load).await.unwrap();
    let split = entry(10, ShardCommand::Split { start: 0, end: u64::MAX, at, child });
    assert_eq!(parent.apply(vec![split]).await.unwrap()[0], Response::Done);
    let left = given_away(&parent);
    assert!(left > 0, "the split's own entry leaves most of what it gave away");
    let kept = (0..).find(|id| hash_of(*id) < at).unwrap();
    parent.apply(vec![put(11, &[(kept, 20, 1.0)])]).await.unwrap();
    assert!(given_away(&parent) < left, "a later apply sweeps some");

    // The child takes a write, freezes, and the parent absorbs it back at once.
    let child_kind = Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(child, None)), None)));
    let mut child_sm = StateMachine::open(engine.clone(), child, child_kind).unwrap();
    let moved = (0..).find(|id| hash_of(*id) >= at).unwrap();
    child_sm.apply(vec![put(1, &[(moved, 30, 3.0)]), entry(2, ShardCommand::Freeze)]).await.unwrap();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = crate::shard::merge::CARRIED
        .iter()
        .flat_map(|space| child_sm.data().scan_prefix(&[*space]).map(Result::unwrap).collect::<Vec<_>>())
        .collect();
    let steps =
        vec![entry(12, ShardCommand::Absorb { pairs }), entry(13, ShardCommand::Grow { start: at, end: u64::MAX })];
    assert_eq!(parent.apply(steps).await.unwrap(), vec![Response::Done, Response::Done]);
    for index in 14..24 {
        parent.apply(vec![put(index, &[(kept, 20, 1.0)])]).await.unwrap();
    }
    assert_eq!(parent.data().get(quiver_store::keyspace::LEFTOVER).unwrap(), None, "nothing left to sweep");
    assert_eq!(value_of(&parent, moved), Some((30, Value::Float64(3.0))), "the absorbed row stays");
    for (id, ts, v) in rows.iter().filter(|(id, ..)| ![moved, kept].contains(id)) {
        assert_eq!(value_of(&parent, *id), Some((*ts, Value::Float64(*v))), "driver {id} after the merge");
    }
}

#[tokio::test]
async fn a_merge_absorbs_a_frozen_neighbour_and_replays_harmlessly() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let at = 1 << 63;
    let kind = |id, range| Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(id, None)), Some(range))));
    let mut lower = StateMachine::open(engine.clone(), 1, kind(1, (0, at - 1))).unwrap();
    let mut upper = StateMachine::open(engine.clone(), 2, kind(2, (at, u64::MAX))).unwrap();
    let (low, high): (Vec<i64>, Vec<i64>) = (0..100).partition(|id| hash_of(*id) < at);
    let rows = |ids: &[i64]| ids.iter().map(|id| (*id, 10, *id as f64)).collect::<Vec<_>>();
    lower.apply(vec![put(1, &rows(&low))]).await.unwrap();
    upper.apply(vec![put(1, &rows(&high))]).await.unwrap();

    // Frozen, the upper shard takes no write, and says so.
    use crate::shard::merge::is_frozen;
    assert!(!is_frozen(upper.data().as_ref()).unwrap());
    let answers = upper.apply(vec![entry(2, ShardCommand::Freeze), put(3, &[(high[0], 20, 0.0)])]).await.unwrap();
    assert_eq!(answers[0], Response::Done);
    assert!(matches!(answers[1], Response::Rejected(quiver_core::Error::KeyNotInShard { shard: 2, .. })));
    assert_eq!(upper.range().unwrap().get(), None);
    assert!(is_frozen(upper.data().as_ref()).unwrap());
    let marker = upper.data().get(quiver_store::keyspace::FROZEN).unwrap().unwrap();
    assert_eq!(marker, [253, 0, 0, 0, 0, 0, 0, 0, 128, 253, 255, 255, 255, 255, 255, 255, 255, 255], "its range, kept");
    assert_eq!(upper.apply(vec![entry(4, ShardCommand::Freeze)]).await.unwrap()[0], Response::Done, "again: no change");
    // A split's child waiting for its rows owns nothing too, but is not frozen, and cannot be.
    let waiting = Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(5, None)), None)));
    let mut waiting = StateMachine::open(engine.clone(), 5, waiting).unwrap();
    assert!(!is_frozen(waiting.data().as_ref()).unwrap());
    assert!(matches!(waiting.apply(vec![entry(1, ShardCommand::Freeze)]).await.unwrap()[0], Response::Rejected(_)));
    assert!(!is_frozen(waiting.data().as_ref()).unwrap());

    // The lower shard absorbs the upper one's pairs and grows over its range.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = crate::shard::merge::CARRIED
        .iter()
        .flat_map(|space| upper.data().scan_prefix(&[*space]).collect::<Vec<_>>())
        .collect::<quiver_store::error::Result<_>>()
        .unwrap();
    let absorb = ShardCommand::Absorb { pairs };
    let grow = ShardCommand::Grow { start: at, end: u64::MAX };
    let answers = lower.apply(vec![entry(2, absorb.clone()), entry(3, grow.clone())]).await.unwrap();
    assert_eq!(answers, vec![Response::Done, Response::Done]);
    assert_eq!(lower.range().unwrap().get(), Some((0, u64::MAX)));
    for id in 0..100 {
        assert_eq!(value_of(&lower, id), Some((10, Value::Float64(id as f64))), "driver {id}");
    }
    // A newer write, then the steps again (a new leader): nothing is overwritten.
    lower.apply(vec![put(4, &[(high[0], 30, -1.0)])]).await.unwrap();
    let again = lower.apply(vec![entry(5, absorb), entry(6, grow)]).await.unwrap();
    assert_eq!(again, vec![Response::Done, Response::Done]);
    assert_eq!(value_of(&lower, high[0]), Some((30, Value::Float64(-1.0))));
    // Growing over a range that is not the neighbour's is refused.
    let far = ShardCommand::Grow { start: 5, end: 6 };
    assert!(matches!(lower.apply(vec![entry(7, far)]).await.unwrap()[0], Response::Rejected(_)));
}

#[tokio::test]
async fn a_shard_frozen_for_an_abandoned_merge_thaws() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let mut shard = StateMachine::open(engine, 7, shard_kind()).unwrap();
    shard.apply(vec![entry(1, ShardCommand::Freeze)]).await.unwrap();
    assert!(matches!(shard.apply(vec![put(2, &[(1, 10, 1.0)])]).await.unwrap()[0], Response::Rejected(_)));
    let answers = shard.apply(vec![entry(3, ShardCommand::Thaw), put(4, &[(1, 10, 1.0)])]).await.unwrap();
    assert_eq!(answers[0], Response::Done);
    assert!(matches!(answers[1], Response::Written { rows: 1 }), "{answers:?}");
    assert_eq!(shard.range().unwrap().get(), Some((0, u64::MAX)));
    assert!(!crate::shard::merge::is_frozen(shard.data().as_ref()).unwrap());
    assert_eq!(shard.apply(vec![entry(5, ShardCommand::Thaw)]).await.unwrap()[0], Response::Done, "again: nothing");
    assert_eq!(shard.range().unwrap().get(), Some((0, u64::MAX)));
}

/// A write of drivers `ids` at positions `positions` of request "r".
fn write_once(index: u64, ids: &[i64], positions: &[u32]) -> Entry<TypeConfig> {
    let rows = ids
        .iter()
        .map(|id| ShardRow {
            key: quiver_core::key::encode_entity_key(&[Value::Int64(*id)]),
            event_ts: 10,
            values: vec![Value::Float64(*id as f64)],
        })
        .collect();
    let once = Some(quiver_store::command::Once { id: b"r".to_vec(), positions: positions.to_vec() });
    entry(index, ShardCommand::Write(Write { table: table(), rows, export: true, once }))
}

fn queued(sm: &StateMachine) -> usize {
    crate::shard::read_queue(sm.data().as_ref(), usize::MAX).unwrap().len()
}

#[tokio::test]
async fn a_row_applies_once_per_request_through_a_split_and_a_merge() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let mut parent = StateMachine::open(engine.clone(), 7, shard_kind()).unwrap();
    let at = 1 << 63;
    let ids: Vec<i64> = (0..40).collect();
    let positions: Vec<u32> = (0..40).collect();
    assert!(matches!(parent.apply(vec![write_once(1, &ids, &positions)]).await.unwrap()[0], Response::Written { .. }));
    let split = ShardCommand::Split { start: 0, end: u64::MAX, at, child: 9 };
    assert_eq!(parent.apply(vec![entry(2, split)]).await.unwrap()[0], Response::Done);
    let mut child = StateMachine::open(
        engine.clone(),
        9,
        Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(9, None)), None))),
    )
    .unwrap();

    // The part a client sends the child again, with a row the request had not written yet:
    // only that row applies.
    let (moved, moved_at): (Vec<i64>, Vec<u32>) =
        ids.iter().filter(|id| hash_of(**id) >= at).map(|id| (*id, *id as u32)).unzip();
    let new = (40..).find(|id| hash_of(*id) >= at).unwrap();
    let retry = write_once(1, &[moved.clone(), vec![new]].concat(), &[moved_at.clone(), vec![40]].concat());
    assert!(matches!(child.apply(vec![retry]).await.unwrap()[0], Response::Written { .. }));
    assert_eq!(queued(&child), 1, "only the new row is queued for export");
    assert_eq!(child.apply(vec![write_once(2, &moved, &moved_at)]).await.unwrap()[0], Response::Duplicate);

    // Merged back, the parent knows what either applied.
    assert_eq!(child.apply(vec![entry(3, ShardCommand::Freeze)]).await.unwrap()[0], Response::Done);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = crate::shard::merge::CARRIED
        .iter()
        .flat_map(|space| child.data().scan_prefix(&[*space]).collect::<Vec<_>>())
        .collect::<quiver_store::error::Result<_>>()
        .unwrap();
    let steps =
        vec![entry(3, ShardCommand::Absorb { pairs }), entry(4, ShardCommand::Grow { start: at, end: u64::MAX })];
    assert_eq!(parent.apply(steps).await.unwrap(), vec![Response::Done, Response::Done]);
    let before = queued(&parent);
    let everything = write_once(5, &[ids, vec![new]].concat(), &[positions, vec![40]].concat());
    assert_eq!(parent.apply(vec![everything]).await.unwrap()[0], Response::Duplicate);
    assert_eq!(queued(&parent), before, "nothing queued twice");
}

#[test]
fn meta_commands_survive_the_log_encoding() {
    use quiver_store::command::MetaCommand;
    let defs = quiver_core::spec::Definitions::new("p").entity("e", &[("k", quiver_core::ValueType::Int64)]);
    let request = Request { leader_time: 1, command: Command::Meta(MetaCommand::ApplyDefinitions(defs.clone())) };
    let decoded: Request = quiver_store::codec::decode(&quiver_store::codec::encode(&request).unwrap()).unwrap();
    match decoded.command {
        Command::Meta(MetaCommand::ApplyDefinitions(d)) => assert_eq!(d, defs),
        other => panic!("decoded into {other:?}"),
    }
}

/// A model cluster of shard state machines for `ties_survive_splits_and_merges`: the real
/// apply of writes, splits, merge steps and export acknowledgements, with exports run the
/// way `workers::export` runs them, and the register each key should be beside it.
mod lineage {
    use std::collections::BTreeMap;

    use quiver_core::asof::{EventRow, SpineRow, asof_join};
    use quiver_core::row::WriteSeq;

    use super::*;
    use crate::shard::export_order::{self, ExportWait};
    use crate::shard::merge::{CARRIED, carried_waits};
    use crate::shard::read_queue;

    const KEYS: i64 = 8;

    struct Shard {
        id: u64,
        sm: StateMachine,
        next: u64,
    }

    impl Shard {
        async fn apply(&mut self, command: ShardCommand) -> Response {
            self.next += 1;
            self.sm.apply(vec![entry(self.next, command)]).await.unwrap().remove(0)
        }

        fn bounds(&self) -> (u64, u64) {
            self.sm.range().unwrap().get().expect("a live shard owns a range")
        }
    }

    pub struct Cluster {
        engine: Arc<dyn KvEngine>,
        /// In range order.
        shards: Vec<Shard>,
        next_id: u64,
        next_value: f64,
        /// What each key should read: the last write of its newest event time.
        model: BTreeMap<i64, (i64, f64)>,
        /// Rows in the offline store: key, event time, ingestion order, value.
        offline: Vec<(i64, i64, u64, f64)>,
        marks: BTreeMap<u64, WriteSeq>,
        /// Splits copied ahead (`PrepareSplit`), by shard: the point and the child.
        prepared: BTreeMap<u64, (u64, u64)>,
    }

    impl Cluster {
        pub fn new() -> Cluster {
            let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
            let sm = StateMachine::open(
                engine.clone(),
                1,
                Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(1, None)), Some((0, u64::MAX))))),
            )
            .unwrap();
            Cluster {
                engine,
                shards: vec![Shard { id: 1, sm, next: 0 }],
                next_id: 2,
                next_value: 0.0,
                model: BTreeMap::new(),
                offline: Vec::new(),
                marks: BTreeMap::new(),
                prepared: BTreeMap::new(),
            }
        }

        pub async fn write(&mut self, key: i64, ts: i64) {
            self.next_value += 1.0;
            let value = self.next_value;
            let shard = self.shards.iter_mut().find(|s| covers(s.bounds(), hash_of(key))).unwrap();
            let rows = vec![ShardRow {
                key: quiver_core::key::encode_entity_key(&[Value::Int64(key)]),
                event_ts: ts,
                values: vec![Value::Float64(value)],
            }];
            let answer = shard.apply(ShardCommand::Put { table: table(), rows, export: true, request: None }).await;
            assert_eq!(answer, Response::Written { rows: 1 });
            if self.model.get(&key).is_none_or(|(old, _)| ts >= *old) {
                self.model.insert(key, (ts, value));
            }
        }

        /// Starts copying ahead a split of the `which`th shard at `point`; a later `split` of
        /// that shard splits there, with the writes between noted.
        pub async fn prepare(&mut self, which: usize, point: u64) {
            let i = which % self.shards.len();
            let (start, end) = self.shards[i].bounds();
            if start == end {
                return;
            }
            let (at, child) = (start + 1 + point % (end - start), self.next_id);
            self.next_id += 1;
            let answer = self.shards[i].apply(ShardCommand::PrepareSplit { at, child }).await;
            assert_eq!(answer, Response::Done);
            self.prepared.insert(self.shards[i].id, (at, child));
        }

        pub async fn split(&mut self, which: usize, point: u64) {
            let i = which % self.shards.len();
            let (start, end) = self.shards[i].bounds();
            if start == end {
                return;
            }
            let (at, child) = match self.prepared.remove(&self.shards[i].id) {
                Some(prepared) => prepared,
                None => {
                    self.next_id += 1;
                    (start + 1 + point % (end - start), self.next_id - 1)
                }
            };
            let answer = self.shards[i].apply(ShardCommand::Split { start, end, at, child }).await;
            assert_eq!(answer, Response::Done);
            let kind = Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(child, None)), None)));
            let sm = StateMachine::open(self.engine.clone(), child, kind).unwrap();
            self.shards.insert(i + 1, Shard { id: child, sm, next: 0 });
        }

        /// Merges a shard with its upper neighbour, as `workers::replicas` does.
        pub async fn merge(&mut self, which: usize) {
            if self.shards.len() < 2 {
                return;
            }
            let i = which % (self.shards.len() - 1);
            let (start, end) = self.shards[i + 1].bounds();
            assert_eq!(self.shards[i + 1].apply(ShardCommand::Freeze).await, Response::Done);
            while !read_queue(self.shards[i + 1].sm.data().as_ref(), 1).unwrap().is_empty() {
                assert!(self.export_some(0, usize::MAX).await, "exports wait for each other in a cycle");
            }
            let upper = self.shards.remove(i + 1);
            self.prepared.retain(|id, _| ![upper.id, self.shards[i].id].contains(id));
            let tree = upper.sm.data();
            // As the merge's leader reads them: rows the upper shard gave away stay behind.
            let owned = |key: &[u8]| quiver_store::keyspace::row_hash(key).is_none_or(|h| covers((start, end), h));
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = CARRIED
                .iter()
                .flat_map(|space| tree.scan_prefix(&[*space]).map(|kv| kv.unwrap()))
                .filter(|(key, _)| owned(key))
                .collect();
            pairs.extend(carried_waits(upper.id, tree.as_ref()).unwrap());
            let lower = &mut self.shards[i];
            assert_eq!(lower.apply(ShardCommand::Absorb { pairs }).await, Response::Done);
            assert_eq!(lower.apply(ShardCommand::Grow { start, end }).await, Response::Done);
            self.marks.remove(&upper.id);
        }

        /// Exports up to `limit` rows of the first shard from the `which`th on that may export
        /// any; false when none may.
        pub async fn export_some(&mut self, which: usize, limit: usize) -> bool {
            let live: Vec<u64> = self.shards.iter().map(|s| s.id).collect();
            let first = which % self.shards.len();
            let (before, after) = self.shards.split_at_mut(first);
            for shard in after.iter_mut().chain(before) {
                let tree = shard.sm.data();
                let queue = read_queue(tree.as_ref(), limit).unwrap();
                let waits = export_order::waits(tree.as_ref()).unwrap();
                let seqs: Vec<WriteSeq> = queue.iter().map(|(seq, _)| *seq).collect();
                let met = |w: &ExportWait| {
                    !live.contains(&w.shard) || self.marks.get(&w.shard).is_some_and(|m| *m >= w.through)
                };
                let n = export_order::exportable(&seqs, &waits, met);
                let Some((through, _)) = queue.get(n.wrapping_sub(1)) else { continue };
                for (_, queued) in &queue[..n] {
                    let key =
                        keys().find(|k| quiver_core::key::encode_entity_key(&[Value::Int64(*k)]) == queued.row.key);
                    let Value::Float64(value) = queued.row.values[0] else { unreachable!() };
                    let ingested = self.offline.len() as u64;
                    self.offline.push((key.unwrap(), queued.row.event_ts, ingested, value));
                }
                self.marks.insert(shard.id, *through);
                assert_eq!(shard.apply(ShardCommand::ExportAck { through: *through }).await, Response::Done);
                return true;
            }
            false
        }

        /// Exports everything, then checks every key online and offline against the model.
        pub async fn check(&mut self) {
            loop {
                let queued = self.shards.iter().any(|s| !read_queue(s.sm.data().as_ref(), 1).unwrap().is_empty());
                if !queued {
                    break;
                }
                assert!(self.export_some(0, usize::MAX).await, "exports wait for each other in a cycle");
            }
            let spine: Vec<SpineRow<i64>> = keys().map(|key| SpineRow { key, ts: i64::MAX }).collect();
            let events: Vec<EventRow<i64>> =
                self.offline.iter().map(|(key, ts, seq, _)| EventRow { key: *key, ts: *ts, seq: *seq }).collect();
            let offline = asof_join(&spine, &events, 0);
            for (key, found) in keys().zip(offline) {
                let expected = self.model.get(&key).map(|(ts, v)| (*ts, Value::Float64(*v)));
                let shard = self.shards.iter().find(|s| covers(s.bounds(), hash_of(key))).unwrap();
                assert_eq!(value_of(&shard.sm, key), expected, "key {key} online, in shard {}", shard.id);
                let found = found.map(|i| (self.offline[i].1, Value::Float64(self.offline[i].3)));
                assert_eq!(found, expected, "key {key} offline");
            }
        }
    }

    fn keys() -> impl Iterator<Item = i64> {
        0..KEYS
    }

    fn covers((start, end): (u64, u64), hash: u64) -> bool {
        (start..=end).contains(&hash)
    }

    #[derive(Debug, Clone)]
    enum LineageOp {
        Write { key: i64, ts: i64 },
        Prepare { shard: usize, point: u64 },
        Split { shard: usize, point: u64 },
        Merge { shard: usize },
        Export { shard: usize, rows: usize },
    }

    fn lineage_op() -> impl proptest::strategy::Strategy<Value = LineageOp> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0..KEYS, 1i64..4).prop_map(|(key, ts)| LineageOp::Write { key, ts }),
            1 => (any::<usize>(), any::<u64>()).prop_map(|(shard, point)| LineageOp::Prepare { shard, point }),
            1 => (any::<usize>(), any::<u64>()).prop_map(|(shard, point)| LineageOp::Split { shard, point }),
            1 => any::<usize>().prop_map(|shard| LineageOp::Merge { shard }),
            2 => (any::<usize>(), 1usize..4).prop_map(|(shard, rows)| LineageOp::Export { shard, rows }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Writes with few distinct event times, splits (some copied ahead, with writes
        /// between), merges and exports in any order: every
        /// key reads, online and in a training set, the last write of its newest event time.
        #[test]
        fn ties_survive_splits_and_merges(ops in proptest::collection::vec(lineage_op(), 1..80)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut cluster = Cluster::new();
                for op in ops {
                    match op {
                        LineageOp::Write { key, ts } => cluster.write(key, ts).await,
                        LineageOp::Prepare { shard, point } => cluster.prepare(shard, point).await,
                        LineageOp::Split { shard, point } => cluster.split(shard, point).await,
                        LineageOp::Merge { shard } => cluster.merge(shard).await,
                        LineageOp::Export { shard, rows } => drop(cluster.export_some(shard, rows).await),
                    }
                }
                cluster.check().await;
            });
        }
    }
}
