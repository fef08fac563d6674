//! The meta state machine, command by command.

use quiver_core::row::WriteSeq;
use quiver_core::shard_ops::{OpKind, Outcome};

use super::*;
use crate::codec::encode;
use crate::storage::{KvEngine, MemEngine};

fn file(path: &str) -> DataFile {
    DataFile { path: path.into(), day: 0, rows: 1, bytes: 1, min_ts: 0, max_ts: 0, min_seq: 0, max_seq: 0 }
}

fn table() -> TableRef {
    TableRef { project: "p".into(), set: "s".into(), version: 1 }
}

/// Applies one command as the state machine does: a batch, written, then published.
fn apply(machine: &mut MetaMachine, tree: &dyn KvTree, at: i64, cmd: MetaCommand) -> Response {
    let mut batch = WriteBatch::default();
    let response = machine.apply(tree, &cmd, at, &mut batch).unwrap();
    machine.persist(&mut batch).unwrap();
    tree.write(batch).unwrap();
    machine.publish();
    response
}

fn commit(path: &str, source: &str, export: Option<ExportRange>) -> MetaCommand {
    MetaCommand::CommitFiles { files: vec![(table(), file(path))], source: (table(), source.into()), export }
}

#[test]
fn an_ingest_source_commits_once_until_it_is_forgotten() {
    let engine = MemEngine::default();
    let tree = engine.tree("meta").unwrap();
    let (mut machine, view) = MetaMachine::new();
    assert_eq!(apply(&mut machine, tree.as_ref(), 10, commit("a", "ingest:x", None)), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 20, commit("b", "ingest:x", None)), Response::Duplicate);
    assert_eq!(view.borrow().manifest[&table()].len(), 1, "the duplicate listed nothing");
    // Two commits of one source in the same batch: the second is the duplicate.
    let mut batch = WriteBatch::default();
    let first = machine.apply(tree.as_ref(), &commit("c", "ingest:y", None), 30, &mut batch).unwrap();
    let second = machine.apply(tree.as_ref(), &commit("d", "ingest:y", None), 30, &mut batch).unwrap();
    assert_eq!((first, second), (Response::Done, Response::Duplicate));
    machine.persist(&mut batch).unwrap();
    tree.write(batch).unwrap();
    machine.publish();
    // A commit past the retention forgets "x", which may then be committed again.
    let later = 10 + SOURCE_RETENTION_MICROS + 1;
    assert_eq!(apply(&mut machine, tree.as_ref(), later, commit("e", "ingest:z", None)), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), later, commit("f", "ingest:x", None)), Response::Done);
    assert_eq!(view.borrow().manifest[&table()].len(), 4);
}

/// One export round followed by compaction of its file into the day's compacted file.
fn export_round(machine: &mut MetaMachine, tree: &dyn KvTree, round: u64) -> Response {
    let seq = WriteSeq { log_index: round, pos: 0 };
    let new = format!("f{round}");
    let range = ExportRange { shard: 1, from: seq, through: seq };
    let committed = apply(machine, tree, round as i64, commit(&new, &format!("export:{round}"), Some(range)));
    let remove = if round == 1 { vec![new] } else { vec!["c".to_string(), new] };
    let replace = MetaCommand::ReplaceFiles { table: table(), remove: remove.clone(), add: file("c") };
    assert_eq!(apply(machine, tree, round as i64, replace), Response::Done);
    apply(machine, tree, round as i64, MetaCommand::ForgetGarbage { paths: remove });
    committed
}

#[test]
fn a_state_in_another_layout_is_refused_and_this_layout_reloads() {
    let engine = MemEngine::default();
    let tree = engine.tree("meta").unwrap();
    let (mut machine, _view) = MetaMachine::new();
    apply(&mut machine, tree.as_ref(), 1, commit("a", "ingest:x", None));
    let (mut reloaded, view) = MetaMachine::new();
    reloaded.load(tree.as_ref()).unwrap();
    assert_eq!(view.borrow().manifest[&table()].len(), 1);
    // A state in its envelope names its layout; a bare one, under its own key.
    let state = view.borrow().clone();
    let mut batch = WriteBatch::default();
    batch.put(keyspace::META_STATE, crate::codec::store_at(&*state, 2).unwrap());
    tree.write(batch).unwrap();
    MetaMachine::new().0.load(tree.as_ref()).unwrap();
    let mut later = crate::codec::store_at(&*state, 2).unwrap();
    later[2] += 1;
    let mut batch = WriteBatch::default();
    batch.put(keyspace::META_STATE, later);
    tree.write(batch).unwrap();
    let err = MetaMachine::new().0.load(tree.as_ref()).unwrap_err().to_string();
    assert!(err.contains("another version of Quiver"), "{err}");
    let mut batch = WriteBatch::default();
    batch.put(keyspace::META_STATE, encode(&*state).unwrap());
    tree.write(batch).unwrap();
    for stored in [None, Some(STATE_FORMAT + 1)] {
        let mut batch = WriteBatch::default();
        match stored {
            Some(f) => batch.put(keyspace::META_FORMAT, encode(&f).unwrap()),
            None => batch.delete(keyspace::META_FORMAT),
        }
        tree.write(batch).unwrap();
        let err = MetaMachine::new().0.load(tree.as_ref()).unwrap_err().to_string();
        assert!(err.contains("another version of Quiver") && err.contains("empty data dir"), "{err}");
    }
}

#[test]
fn leader_reports_of_an_older_term_change_nothing() {
    let engine = MemEngine::default();
    let tree = engine.tree("meta").unwrap();
    let (mut machine, view) = MetaMachine::new();
    let shard_map = ShardMap::uniform(2, &[1, 2]).unwrap();
    apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes: vec![], shard_map });
    let report = |leader, terms: Vec<(u64, u64)>| MetaCommand::ReportLeader { leader, terms };
    apply(&mut machine, tree.as_ref(), 2, report(2, vec![(1, 5), (2, 3), (9, 1)]));
    apply(&mut machine, tree.as_ref(), 3, report(1, vec![(1, 4), (2, 4)]));
    let leaders =
        |v: &MetaView| v.borrow().shard_map.shards.iter().map(|s| (s.leader, s.leader_term)).collect::<Vec<_>>();
    assert_eq!(leaders(&view), vec![(Some(2), 5), (Some(1), 4)]);
    // The same report again is not even persisted.
    let mut batch = WriteBatch::default();
    machine.apply(tree.as_ref(), &report(2, vec![(1, 5)]), 4, &mut batch).unwrap();
    machine.persist(&mut batch).unwrap();
    assert!(batch.into_ops().is_empty(), "an unchanged state is not written again");
}

#[test]
fn an_operators_request_goes_before_the_placement_rules_own_step() {
    let engine = MemEngine::default();
    let tree = engine.tree("meta").unwrap();
    let (mut machine, view) = MetaMachine::new();
    let nodes = (1..=3).map(|id| NodeInfo { id, addr: id.to_string(), client_addr: id.to_string(), draining: false });
    let shard_map = ShardMap::uniform(2, &[1, 2, 3]).unwrap();
    apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes: nodes.collect(), shard_map });
    let start = |kind, requested| MetaCommand::StartOp { kind, requested };
    let placement = start(OpKind::TransferLeader { shard: 1, to: 2 }, false);
    assert_eq!(apply(&mut machine, tree.as_ref(), 2, placement.clone()), Response::OpId(1));
    // The placement rule's second step on a busy shard is refused; an operator's is not.
    assert!(matches!(apply(&mut machine, tree.as_ref(), 3, placement), Response::Rejected(_)));
    let split = start(OpKind::Split { shard: 1, at: 0, child: 0 }, true);
    assert_eq!(apply(&mut machine, tree.as_ref(), 4, split.clone()), Response::OpId(2));
    let state = view.borrow().clone();
    assert_eq!(state.ops.iter().map(|op| op.id).collect::<Vec<_>>(), [2]);
    assert!(matches!(&state.finished_ops[0].outcome, Outcome::Failed(why) if why.contains("preempted by operation 2")));
    // An operator's operation is never preempted, nor a split of the placement rule's.
    assert!(matches!(apply(&mut machine, tree.as_ref(), 5, split), Response::Rejected(_)));
    let auto_split = start(OpKind::Split { shard: 2, at: 0, child: 0 }, false);
    assert_eq!(apply(&mut machine, tree.as_ref(), 6, auto_split), Response::OpId(3));
    let transfer = start(OpKind::TransferLeader { shard: 2, to: 3 }, true);
    assert!(matches!(apply(&mut machine, tree.as_ref(), 7, transfer), Response::Rejected(_)));
}

/// A meta machine bootstrapped with two shards on node 1, its tree and its view.
fn two_shards_on_one_node() -> (Arc<dyn KvTree>, MetaMachine, MetaView) {
    let tree = MemEngine::default().tree("meta").unwrap();
    let (mut machine, view) = MetaMachine::new();
    let shard_map = ShardMap::uniform(2, &[1]).unwrap();
    let nodes = vec![NodeInfo { id: 1, addr: "1".into(), client_addr: "1".into(), draining: false }];
    apply(&mut machine, tree.as_ref(), 1, MetaCommand::Bootstrap { nodes, shard_map });
    (tree, machine, view)
}

#[test]
fn a_backup_cut_holds_exports_and_splits_until_it_ends_or_lapses() {
    let (tree, mut machine, view) = two_shards_on_one_node();
    let begin = |id: &str| MetaCommand::BeginBackupCut { id: id.into(), hold_ms: 1 };
    let busy = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::Busy { .. }));
    let seq = WriteSeq { log_index: 1, pos: 0 };
    let export = commit("e", "export:1", Some(ExportRange { shard: 1, from: seq, through: seq }));
    let split = MetaCommand::StartOp { kind: OpKind::Split { shard: 1, at: 0, child: 0 }, requested: true };
    assert_eq!(apply(&mut machine, tree.as_ref(), 1_000, begin("a")), Response::Done);
    assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, export.clone())), "exports wait");
    assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, split.clone())), "splits wait");
    assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, begin("b"))), "one backup cuts at a time");
    assert_eq!(apply(&mut machine, tree.as_ref(), 1_500, commit("i", "ingest:x", None)), Response::Done);
    // The hold lapses by itself (a backup that died), or ends when asked.
    assert_eq!(apply(&mut machine, tree.as_ref(), 2_000, export), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 2_000, begin("b")), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 2_100, MetaCommand::EndBackupCut { id: "b".into() }), Response::Done);
    assert!(view.borrow().backup_cut.is_none());
    // A cut that ends after its hold lapsed does not stand.
    assert_eq!(apply(&mut machine, tree.as_ref(), 2_100, begin("late")), Response::Done);
    let late = apply(&mut machine, tree.as_ref(), 3_200, MetaCommand::EndBackupCut { id: "late".into() });
    assert!(matches!(late, Response::Rejected(quiver_core::Error::Unavailable(_))), "{late:?}");
    assert!(matches!(apply(&mut machine, tree.as_ref(), 3_300, split), Response::OpId(_)));
    assert!(busy(apply(&mut machine, tree.as_ref(), 3_400, begin("c"))), "no cut while a split is under way");
}

#[test]
fn a_split_point_is_chosen_once() {
    let (tree, mut machine, view) = two_shards_on_one_node();
    let upper = view.borrow().shard_map.shards[1].clone();
    let split = MetaCommand::StartOp { kind: OpKind::Split { shard: upper.id, at: 0, child: 0 }, requested: true };
    let Response::OpId(op) = apply(&mut machine, tree.as_ref(), 2, split) else { panic!("the split starts") };
    let point = |at| MetaCommand::SetSplitPoint { op, at };
    let refused = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::InvalidArgument(_)));
    assert!(refused(apply(&mut machine, tree.as_ref(), 3, point(upper.start))), "the start stays with the shard");
    assert_eq!(apply(&mut machine, tree.as_ref(), 3, point(upper.start + 10)), Response::Done);
    // A later leader's choice, on other rows, changes nothing.
    assert_eq!(apply(&mut machine, tree.as_ref(), 4, point(upper.start + 99)), Response::Done);
    let recorded = view.borrow().ops[0].kind.clone();
    assert_eq!(recorded, OpKind::Split { shard: upper.id, at: upper.start + 10, child: 3 });
    let gone = MetaCommand::SetSplitPoint { op: op + 1, at: upper.start + 10 };
    assert!(refused(apply(&mut machine, tree.as_ref(), 5, gone)));
}

#[test]
fn a_merge_is_abandoned_at_its_deadline_only_until_it_is_claimed() {
    let (tree, mut machine, view) = two_shards_on_one_node();
    let merge = || MetaCommand::StartOp { kind: OpKind::Merge { left: 1, right: 2 }, requested: true };
    let abandon = |id| MetaCommand::AbandonOp { id, why: "late".into() };
    let Response::OpId(first) = apply(&mut machine, tree.as_ref(), 2, merge()) else { panic!("a merge starts") };
    assert_eq!(apply(&mut machine, tree.as_ref(), 3, abandon(first)), Response::Done);
    assert!(view.borrow().ops.is_empty());
    assert_eq!(view.borrow().finished_ops.back().unwrap().outcome, Outcome::Failed("late".into()));
    let claim = |op| MetaCommand::ClaimMerge { op };
    assert!(matches!(apply(&mut machine, tree.as_ref(), 4, claim(first)), Response::Rejected(_)), "too late");

    let Response::OpId(second) = apply(&mut machine, tree.as_ref(), 5, merge()) else { panic!("again") };
    assert_eq!(apply(&mut machine, tree.as_ref(), 6, claim(second)), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 7, abandon(second)), Response::Done);
    assert_eq!(view.borrow().ops.len(), 1, "a claimed merge goes on");
    let commit = MetaCommand::CommitMerge { op: second, left: 1, right: 2 };
    assert_eq!(apply(&mut machine, tree.as_ref(), 8, commit), Response::Done);
    assert!(tree.get(&keyspace::merge_claim(second)).unwrap().is_none(), "the claim goes with the merge");
}

#[test]
fn a_cancelled_move_goes_back_to_the_voters_and_a_split_is_not_cancelled() {
    let (tree, mut machine, view) = two_shards_on_one_node();
    let join = MetaCommand::AddNode { addr: "2".into() };
    let Response::NodeId(two) = apply(&mut machine, tree.as_ref(), 2, join) else { panic!("node 2 joins") };
    let mv = MetaCommand::StartOp { kind: OpKind::MoveReplica { shard: 1, from: 1, to: two }, requested: true };
    let Response::OpId(op) = apply(&mut machine, tree.as_ref(), 3, mv) else { panic!("the move starts") };
    assert_eq!(view.borrow().shard_map.shards[0].replicas, vec![two]);
    let cancel = |id| MetaCommand::AbandonOp { id, why: "cancelled".into() };
    assert_eq!(apply(&mut machine, tree.as_ref(), 4, cancel(op)), Response::Done);
    let shard = view.borrow().shard_map.shards[0].clone();
    assert_eq!((shard.moving(), shard.replicas), (false, vec![1]), "back on its voters");
    assert!(view.borrow().ops.is_empty());

    let split = MetaCommand::StartOp { kind: OpKind::Split { shard: 2, at: 0, child: 0 }, requested: true };
    let Response::OpId(split) = apply(&mut machine, tree.as_ref(), 5, split) else { panic!("the split starts") };
    assert!(matches!(apply(&mut machine, tree.as_ref(), 6, cancel(split)), Response::Rejected(_)));
    assert_eq!(view.borrow().ops.len(), 1, "the split goes on");
    // A placement move given up by the scheduler (its target silent) goes back too.
    let conf_ver = view.borrow().shard_map.shards[0].epoch.conf_ver;
    let mv = MetaCommand::SetReplicas { shard: 1, replicas: vec![two], conf_ver };
    assert_eq!(apply(&mut machine, tree.as_ref(), 7, mv), Response::Done);
    let stale = MetaCommand::RollBackMove { shard: 1, conf_ver };
    assert_eq!(apply(&mut machine, tree.as_ref(), 8, stale), Response::Done);
    assert!(view.borrow().shard_map.shards[0].moving(), "a roll-back at an older conf_ver changes nothing");
    let roll_back = MetaCommand::RollBackMove { shard: 1, conf_ver: conf_ver + 1 };
    assert_eq!(apply(&mut machine, tree.as_ref(), 9, roll_back), Response::Done);
    assert_eq!(view.borrow().shard_map.shards[0].replicas, vec![1]);
}

#[test]
fn a_backup_does_not_cut_into_an_ingest_publishing_nor_an_ingest_into_a_cut() {
    let (tree, mut machine, _view) = two_shards_on_one_node();
    let busy = |r: Response| matches!(r, Response::Rejected(quiver_core::Error::Busy { .. }));
    let publish = |id: &str| MetaCommand::BeginPublish { id: id.into(), lease_ms: 1 };
    let cut = |id: &str| MetaCommand::BeginBackupCut { id: id.into(), hold_ms: 1 };
    assert_eq!(apply(&mut machine, tree.as_ref(), 1_000, publish("i")), Response::Done);
    assert!(busy(apply(&mut machine, tree.as_ref(), 1_500, cut("b"))), "the backup waits for the ingest");
    assert_eq!(apply(&mut machine, tree.as_ref(), 1_500, MetaCommand::EndPublish { id: "i".into() }), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 1_600, cut("b")), Response::Done);
    assert!(busy(apply(&mut machine, tree.as_ref(), 1_700, publish("j"))), "the ingest waits for the cut");
    // A lease that lapsed (its ingest died) holds nothing.
    assert_eq!(apply(&mut machine, tree.as_ref(), 3_000, publish("k")), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 5_000, cut("c")), Response::Done);
}

#[test]
fn the_first_cluster_id_stays() {
    let (tree, mut machine, _view) = two_shards_on_one_node();
    let set = |id: &str| MetaCommand::SetClusterId { id: id.into() };
    assert!(matches!(apply(&mut machine, tree.as_ref(), 1, set("nope")), Response::Rejected(_)));
    assert_eq!(cluster_id(tree.as_ref()).unwrap(), None);
    let (first, second) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210");
    assert_eq!(apply(&mut machine, tree.as_ref(), 2, set(first)), Response::Done);
    assert_eq!(apply(&mut machine, tree.as_ref(), 3, set(second)), Response::Done);
    assert_eq!(cluster_id(tree.as_ref()).unwrap().as_deref(), Some(first));
    // Bare or in its envelope (by the cluster version this process last applied), the
    // record's body is a length-prefixed string.
    let stored = tree.get(keyspace::CLUSTER_ID).unwrap().unwrap();
    assert_eq!(crate::codec::format_of(&stored).unwrap().1[0], 32, "a length-prefixed string");
}

#[test]
fn an_upgrade_is_finalized_once_every_member_runs_its_release_and_never_goes_back() {
    let (tree, mut machine, _view) = two_shards_on_one_node();
    let finalize = |version: u32| MetaCommand::FinalizeUpgrade { version, release: "0.2.0".into() };
    let report = |version: &str| MetaCommand::ReportVersion { node: 1, version: version.into() };
    assert_eq!(cluster_version(tree.as_ref()).unwrap(), 1, "a cluster that recorded none is at 1");
    let Response::Rejected(behind) = apply(&mut machine, tree.as_ref(), 1, finalize(2)) else { panic!() };
    assert!(behind.to_string().contains("node 1 runs a release that reports none"), "{behind}");
    apply(&mut machine, tree.as_ref(), 2, report("0.1.0"));
    let Response::Rejected(behind) = apply(&mut machine, tree.as_ref(), 3, finalize(2)) else { panic!() };
    assert!(behind.to_string().contains("node 1 runs 0.1.0"), "{behind}");
    assert_eq!(cluster_version(tree.as_ref()).unwrap(), 1);
    apply(&mut machine, tree.as_ref(), 4, report("0.2.0"));
    assert_eq!(apply(&mut machine, tree.as_ref(), 5, finalize(2)), Response::Done);
    assert_eq!(cluster_version(tree.as_ref()).unwrap(), 2);
    assert_eq!(apply(&mut machine, tree.as_ref(), 6, finalize(1)), Response::Duplicate, "never back");
    assert_eq!(cluster_version(tree.as_ref()).unwrap(), 2);
}

#[test]
fn export_rounds_leave_nothing_behind_but_their_mark() {
    let engine = MemEngine::default();
    let tree = engine.tree("meta").unwrap();
    let (mut machine, view) = MetaMachine::new();
    for round in 1..=100 {
        assert_eq!(export_round(&mut machine, tree.as_ref(), round), Response::Done);
    }
    // A replayed range is refused by the mark, not by a remembered source.
    let seq = WriteSeq { log_index: 50, pos: 0 };
    let replay = commit("g", "export:50", Some(ExportRange { shard: 1, from: seq, through: seq }));
    assert_eq!(apply(&mut machine, tree.as_ref(), 101, replay), Response::Duplicate);
    let keys = tree.scan((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)).count();
    assert_eq!(keys, 2, "only the meta state and its layout are stored");
    // The state does not grow with the rounds: what one round adds, compaction takes away.
    let size = encode(&**view.borrow()).unwrap().len();
    assert_eq!(export_round(&mut machine, tree.as_ref(), 101), Response::Done);
    assert_eq!(encode(&**view.borrow()).unwrap().len(), size);
    assert_eq!(view.borrow().export_marks[&1], WriteSeq { log_index: 101, pos: 0 });
}

/// Nodes 1–3, three shards on all three, project `p` with feature set `s`, a committed file
/// `a`, token `t`, and a split of shard 2 (operation 1) and a transfer of shard 1's
/// leadership (operation 2) under way.
fn prepared() -> (Arc<dyn KvTree>, MetaMachine) {
    use quiver_core::access::{Role, Scope};
    use quiver_core::spec::{Definitions, FeatureSetSpec};
    use quiver_core::{ValueType, shard_map::ShardMap};
    let tree = MemEngine::default().tree("meta").unwrap();
    let (mut machine, _) = MetaMachine::new();
    let nodes = (1..=3).map(|id| NodeInfo { id, addr: id.to_string(), client_addr: id.to_string(), draining: false });
    let shard_map = ShardMap::uniform(3, &[1, 2, 3]).unwrap();
    let defs = Definitions::new("p").entity("e", &[("k", ValueType::Int64)]).feature_set(FeatureSetSpec::new(
        "s",
        "e",
        "ts",
        &[("f", ValueType::Float64)],
    ));
    let token = MetaCommand::CreateToken {
        hash: [7; 32],
        name: "t".into(),
        scope: Scope::Cluster,
        role: Role::Admin,
        pii: false,
        ttl_micros: None,
        created_by: "admin".into(),
    };
    let split = MetaCommand::StartOp { kind: OpKind::Split { shard: 2, at: 0, child: 0 }, requested: true };
    let transfer = MetaCommand::StartOp { kind: OpKind::TransferLeader { shard: 1, to: 2 }, requested: true };
    for cmd in [
        MetaCommand::Bootstrap { nodes: nodes.collect(), shard_map },
        MetaCommand::ApplyDefinitions(defs),
        commit("a", "ingest:a", None),
        token,
        split,
        transfer,
    ] {
        let response = apply(&mut machine, tree.as_ref(), 1, cmd);
        assert!(!matches!(response, Response::Rejected(_)), "{response:?}");
    }
    (tree, machine)
}

/// What a command may change: the in-memory state and every key of the tree.
type Snapshot = (MetaState, Vec<(Vec<u8>, Vec<u8>)>);

fn snapshot(machine: &MetaMachine, tree: &dyn KvTree) -> Snapshot {
    (machine.state.clone(), tree.scan_prefix(&[]).map(|kv| kv.unwrap()).collect())
}

/// The name of a command's kind, as its `Debug` form starts.
fn kind(cmd: &MetaCommand) -> String {
    format!("{cmd:?}").chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// The number bincode gives a command's variant: its first byte, while there are fewer
/// than 251 of them.
fn variant(cmd: &MetaCommand) -> u8 {
    crate::codec::encode(cmd).unwrap()[0]
}

/// Commands each entry applies anew by design: a reservation takes the next numbers, and
/// audit entries are events (Raft applies each entry once: the applied index is stored
/// in the same batch as what it changed).
const APPLIED_ANEW: [&str; 2] = ["ReserveSeq", "RecordAudit"];

#[test]
fn every_kind_of_command_has_a_sample() {
    let mut variants: Vec<u8> = taken().iter().map(|(_, cmd)| variant(cmd)).collect();
    variants.sort_unstable();
    let all: Vec<u8> = (0..variants.len() as u8).collect();
    assert_eq!(variants, all, "one sample of each kind, numbered from 0 without a gap");
    // The number after the last sample's is no command: a new kind fails here until it
    // gets a sample.
    let next = crate::codec::decode::<MetaCommand>(&[all.len() as u8]).unwrap_err().to_string();
    assert!(next.contains("variant"), "kind {} exists without a sample: {next}", all.len());
}

/// One command of every kind that the prepared state takes, after the commands beside it.
fn taken() -> Vec<(Vec<MetaCommand>, MetaCommand)> {
    use quiver_core::access::{Role, Scope};
    use quiver_core::audit::AuditEntry;
    use quiver_core::spec::{Definitions, FeatureSetSpec};
    use quiver_core::stats::DriftReport;
    use quiver_core::{ValueType, shard_map::ShardMap};
    let stats = crate::records::Summaries::default;
    let dataset = quiver_core::offline::Dataset {
        name: "d".into(),
        path: "d.parquet".into(),
        vector: None,
        features: vec!["s:f".into()],
        feature_sets: vec!["s@1".into()],
        spine: "spine.csv".into(),
        rows: 1,
        bytes: 1,
        spine_from: 0,
        spine_to: 0,
        created_at: 0,
    };
    let audit = AuditEntry {
        at: 5,
        actor: "t".into(),
        from: "127.0.0.1".into(),
        node: 1,
        action: "Status".into(),
        project: None,
        detail: String::new(),
        outcome: "ok".into(),
    };
    let nodes = vec![NodeInfo { id: 9, addr: "9".into(), client_addr: "9".into(), draining: false }];
    let more = Definitions::new("p").entity("e", &[("k", ValueType::Int64)]).feature_set(FeatureSetSpec::new(
        "s",
        "e",
        "ts",
        &[("f", ValueType::Float64), ("g", ValueType::Int64)],
    ));
    let mid = u64::MAX / 2;
    let no_split = || MetaCommand::FinishOp { id: 1, outcome: Outcome::Done };
    let cuts = |id: &str| MetaCommand::BeginBackupCut { id: id.into(), hold_ms: 1_000 };
    let with = |setup: Vec<MetaCommand>, cmd| (setup, cmd);
    vec![
        with(vec![], MetaCommand::ApplyDefinitions(more)),
        with(vec![], MetaCommand::Bootstrap { nodes, shard_map: ShardMap::uniform(1, &[9]).unwrap() }),
        with(vec![], MetaCommand::SaveDataset { project: "p".into(), dataset, stats: stats() }),
        with(vec![], MetaCommand::RecordFileStats { table: table(), day: 1, path: "a".into(), stats: stats() }),
        with(vec![], MetaCommand::RecordMonitorRun { table: table(), at: 5, report: DriftReport::new(vec![]) }),
        with(vec![], MetaCommand::RecordServingStats { table: table(), day: 1, node: 1, seq: 1, stats: stats() }),
        with(vec![], MetaCommand::ReplaceFiles { table: table(), remove: vec!["a".into()], add: file("b") }),
        with(vec![], MetaCommand::ForgetGarbage { paths: vec!["a".into()] }),
        with(vec![], MetaCommand::AddNode { addr: "4".into() }),
        with(vec![], MetaCommand::SetClientAddr { id: 1, addr: "client-1".into() }),
        with(vec![], MetaCommand::DrainNode { id: 3 }),
        with(vec![], MetaCommand::ForgetNode { id: 9 }),
        with(vec![], MetaCommand::SetReplicas { shard: 3, replicas: vec![1, 2], conf_ver: 1 }),
        with(vec![], MetaCommand::SetVoters { shard: 1, voters: vec![1, 2] }),
        with(vec![], MetaCommand::ReportLeader { leader: 2, terms: vec![(1, 3)] }),
        with(vec![], MetaCommand::StartOp { kind: OpKind::Rebalance, requested: true }),
        with(vec![], MetaCommand::CommitSplit { op: 1, shard: 2, at: mid + 10, child: 4 }),
        with(vec![], MetaCommand::CommitMerge { op: 7, left: 1, right: 2 }),
        with(vec![], MetaCommand::FinishOp { id: 2, outcome: Outcome::Done }),
        with(vec![], MetaCommand::ReserveSeq { count: 10 }),
        with(vec![], commit("c", "ingest:c", None)),
        with(vec![no_split()], cuts("b")),
        with(vec![no_split(), cuts("b")], MetaCommand::EndBackupCut { id: "b".into() }),
        with(
            vec![],
            MetaCommand::PinFiles { backup: "b".into(), location: "/backups".into(), paths: vec!["a".into()] },
        ),
        with(vec![], MetaCommand::UnpinFiles { backup: "b".into(), paths: vec!["a".into()] }),
        with(
            vec![],
            MetaCommand::RecordBackup(quiver_core::backup::BackupRecord { id: "b".into(), ..Default::default() }),
        ),
        with(
            vec![],
            MetaCommand::CreateToken {
                hash: [8; 32],
                name: "u".into(),
                scope: Scope::Project("p".into()),
                role: Role::Viewer,
                pii: false,
                ttl_micros: Some(1_000),
                created_by: "t".into(),
            },
        ),
        with(vec![], MetaCommand::RevokeToken { name: "t".into() }),
        with(vec![], MetaCommand::RecordAudit { node: 1, first_seq: 0, entries: vec![audit], retention_micros: 0 }),
        with(vec![], MetaCommand::SetAuditRetention { retention_micros: 2 * audit_chain::MIN_RETENTION_MICROS }),
        with(vec![], MetaCommand::SetSplitPoint { op: 1, at: mid + 10 }),
        with(
            vec![no_split(), MetaCommand::StartOp { kind: OpKind::Merge { left: 2, right: 3 }, requested: true }],
            MetaCommand::ClaimMerge { op: 3 },
        ),
        with(vec![], MetaCommand::AbandonOp { id: 2, why: "no longer wanted".into() }),
        with(vec![], MetaCommand::RollBackMove { shard: 1, conf_ver: 1 }),
        with(vec![], MetaCommand::BeginPublish { id: "ingest-1".into(), lease_ms: 1_000 }),
        with(vec![], MetaCommand::SetClusterId { id: "0123456789abcdef0123456789abcdef".into() }),
        with(vec![], MetaCommand::MarkOfflineStore { cluster: "0123456789abcdef0123456789abcdef".into() }),
        with(vec![], MetaCommand::EndPublish { id: "ingest-1".into() }),
        with(vec![], MetaCommand::ReportVersion { node: 2, version: "0.2.0".into() }),
        with(
            (1..=3).map(|node| MetaCommand::ReportVersion { node, version: "0.10.0".into() }).collect(),
            MetaCommand::FinalizeUpgrade { version: 2, release: "0.9.0".into() },
        ),
    ]
}

/// One command of every kind that can be refused, refused by the prepared state.
fn refused() -> Vec<MetaCommand> {
    use quiver_core::access::{Role, Scope};
    let mid = u64::MAX / 2;
    vec![
        MetaCommand::SetClientAddr { id: 9, addr: "x".into() },
        MetaCommand::DrainNode { id: 9 },
        MetaCommand::ForgetNode { id: 1 },
        MetaCommand::SetReplicas { shard: 1, replicas: vec![1], conf_ver: 0 },
        MetaCommand::SetVoters { shard: 9, voters: vec![1] },
        MetaCommand::StartOp { kind: OpKind::TransferLeader { shard: 9, to: 1 }, requested: true },
        MetaCommand::CommitSplit { op: 1, shard: 2, at: 5, child: 4 },
        MetaCommand::CommitMerge { op: 7, left: 2, right: 1 },
        MetaCommand::CreateToken {
            hash: [9; 32],
            name: "t".into(),
            scope: Scope::Cluster,
            role: Role::Admin,
            pii: false,
            ttl_micros: None,
            created_by: "t".into(),
        },
        MetaCommand::RevokeToken { name: "nobody".into() },
        MetaCommand::SetAuditRetention { retention_micros: 1 },
        MetaCommand::SetSplitPoint { op: 9, at: mid },
        MetaCommand::SetSplitPoint { op: 1, at: 5 },
        MetaCommand::ClaimMerge { op: 9 },
        MetaCommand::AbandonOp { id: 1, why: "cancel a split".into() },
        MetaCommand::SetClusterId { id: "not hex".into() },
        MetaCommand::FinalizeUpgrade { version: 2, release: "0.2.0".into() },
    ]
}

#[test]
fn every_command_applied_twice_changes_the_state_once() {
    for (setup, cmd) in taken() {
        let (tree, mut machine) = prepared();
        for before in setup {
            apply(&mut machine, tree.as_ref(), 50, before);
        }
        let first = apply(&mut machine, tree.as_ref(), 100, cmd.clone());
        assert!(!matches!(first, Response::Rejected(_)), "{}: {first:?}", kind(&cmd));
        let once = snapshot(&machine, tree.as_ref());
        apply(&mut machine, tree.as_ref(), 100, cmd.clone());
        let twice = snapshot(&machine, tree.as_ref());
        if APPLIED_ANEW.contains(&kind(&cmd).as_str()) {
            assert_ne!(twice, once, "{} applies anew", kind(&cmd));
        } else {
            assert!(twice == once, "{} applied twice changed the state again", kind(&cmd));
        }
    }
}

#[test]
fn a_refused_command_changes_nothing() {
    for cmd in refused() {
        let (tree, mut machine) = prepared();
        let before = snapshot(&machine, tree.as_ref());
        let response = apply(&mut machine, tree.as_ref(), 100, cmd.clone());
        assert!(matches!(response, Response::Rejected(_)), "{}: {response:?}", kind(&cmd));
        assert!(snapshot(&machine, tree.as_ref()) == before, "{} refused, yet changed the state", kind(&cmd));
    }
}
