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
use crate::command::{Command, Request, ShardCommand, ShardRow};
use crate::shard::read_row;
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

fn stores(engine: Arc<dyn KvEngine>) -> (LogStore, StateMachine) {
    let log = LogStore::open(engine.clone(), 1).expect("log store opens");
    let sm = StateMachine::open(engine, 1, Kind::Shard).expect("state machine opens");
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
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            leader_time: 0,
            command: Command::Shard(ShardCommand::Put { table: table(), rows, export: true, request: None }),
        }),
    }
}

fn value_of(sm: &StateMachine, key: i64) -> Option<(i64, Value)> {
    let key = quiver_core::key::encode_entity_key(&[Value::Int64(key)]);
    read_row(sm.data().as_ref(), &table(), &key).unwrap().map(|r| (r.event_ts, r.values[0].clone()))
}

#[tokio::test]
async fn shard_apply_keeps_the_newest_event_and_replays_harmlessly() {
    let dir = TempDir::new().unwrap();
    let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(dir.path()).unwrap());
    let mut sm = StateMachine::open(engine.clone(), 7, Kind::Shard).unwrap();
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
    let mut other = StateMachine::open(other_engine, 7, Kind::Shard).unwrap();
    other.apply(vec![put(1, &[(3, 1, 1.0)])]).await.unwrap();
    other.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
    assert_eq!(value_of(&other, 1), Some((20, Value::Float64(3.0))));
    assert_eq!(value_of(&other, 3), None, "install replaces what was there");
    assert_eq!(other.applied_state().await.unwrap().0.map(|l| l.index), Some(2));

    // Reopening finds the applied state on disk.
    drop(sm);
    let mut sm = StateMachine::open(engine, 7, Kind::Shard).unwrap();
    assert_eq!(value_of(&sm, 2), Some((5, Value::Float64(5.0))));
    assert_eq!(sm.applied_state().await.unwrap().0.map(|l| l.index), Some(2));
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
