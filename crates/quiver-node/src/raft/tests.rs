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
use crate::command::Response;
use crate::command::{Command, Request, ShardCommand, ShardRow};
use crate::shard::split::seed_log_id;
use crate::shard::{Range, read_row};
use crate::storage::{KvEngine, MemEngine, SledEngine};

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
    Kind::Shard { range: Arc::new(Range::new(7, None)), initial: Some((0, u64::MAX)) }
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
    let child_kind = Kind::Shard { range: Arc::new(Range::new(9, None)), initial: None };
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

#[tokio::test]
async fn a_merge_absorbs_a_frozen_neighbour_and_replays_harmlessly() {
    let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
    let at = 1 << 63;
    let kind = |id, range| Kind::Shard { range: Arc::new(Range::new(id, None)), initial: Some(range) };
    let mut lower = StateMachine::open(engine.clone(), 1, kind(1, (0, at - 1))).unwrap();
    let mut upper = StateMachine::open(engine.clone(), 2, kind(2, (at, u64::MAX))).unwrap();
    let (low, high): (Vec<i64>, Vec<i64>) = (0..100).partition(|id| hash_of(*id) < at);
    let rows = |ids: &[i64]| ids.iter().map(|id| (*id, 10, *id as f64)).collect::<Vec<_>>();
    lower.apply(vec![put(1, &rows(&low))]).await.unwrap();
    upper.apply(vec![put(1, &rows(&high))]).await.unwrap();

    // Frozen, the upper shard takes no write.
    let answers = upper.apply(vec![entry(2, ShardCommand::Freeze), put(3, &[(high[0], 20, 0.0)])]).await.unwrap();
    assert_eq!(answers[0], Response::Done);
    assert!(matches!(answers[1], Response::Rejected(quiver_core::Error::KeyNotInShard { shard: 2, .. })));
    assert_eq!(upper.range().unwrap().get(), None);

    // The lower shard absorbs the upper one's pairs and grows over its range.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = crate::shard::merge::CARRIED
        .iter()
        .flat_map(|space| upper.data().scan_prefix(&[*space]).collect::<Vec<_>>())
        .collect::<crate::error::Result<_>>()
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

#[test]
fn meta_commands_survive_the_log_encoding() {
    use crate::command::MetaCommand;
    let defs = quiver_core::spec::Definitions {
        project: "p".into(),
        entities: vec![quiver_core::spec::EntitySpec {
            name: "e".into(),
            join_keys: vec![quiver_core::spec::JoinKey { name: "k".into(), ty: quiver_core::ValueType::Int64 }],
            description: String::new(),
        }],
        ..Default::default()
    };
    let request = Request { leader_time: 1, command: Command::Meta(MetaCommand::ApplyDefinitions(defs.clone())) };
    let decoded: Request = crate::codec::decode(&crate::codec::encode(&request).unwrap()).unwrap();
    match decoded.command {
        Command::Meta(MetaCommand::ApplyDefinitions(d)) => assert_eq!(d, defs),
        other => panic!("decoded into {other:?}"),
    }
}
