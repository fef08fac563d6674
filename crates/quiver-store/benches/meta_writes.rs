//! What a meta write costs as a cluster ages: export rounds (one `CommitFiles` per shard and
//! second, each followed by compaction's `ReplaceFiles` and `ForgetGarbage`) applied to the
//! meta state machine on the in-memory engine, timed at checkpoints. A cost that stays flat
//! means a year of exports leaves meta writes as cheap as on day one.
//! `cargo bench -p quiver-store --bench meta_writes [-- ROUNDS]` (default 200,000 rounds,
//! about 7 hours of exports from 8 shards).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark stops loudly on a broken setup")]

use std::time::Instant;

use quiver_core::row::WriteSeq;
use quiver_core::table::TableRef;
use quiver_offline::files::DataFile;
use quiver_store::command::{MetaCommand, Response};
use quiver_store::meta::{ExportRange, MetaMachine};
use quiver_store::storage::{KvEngine, KvTree, MemEngine, WriteBatch};

const SHARDS: u64 = 8;
const SAMPLE: u64 = 1_000;

fn file(path: String) -> DataFile {
    DataFile { path, day: 0, rows: 1000, bytes: 65_536, min_ts: 0, max_ts: 0, min_seq: 0, max_seq: 0 }
}

fn apply(machine: &mut MetaMachine, tree: &dyn KvTree, at: i64, cmd: MetaCommand) -> Response {
    let mut batch = WriteBatch::default();
    let response = machine.apply(tree, &cmd, at, &mut batch).expect("apply");
    machine.persist(&mut batch).expect("persist");
    tree.write(batch).expect("write");
    machine.publish();
    response
}

/// One export round of one shard, then its file compacted into the table's file.
fn round(machine: &mut MetaMachine, tree: &dyn KvTree, table: &TableRef, n: u64) {
    let shard = n % SHARDS + 1;
    let seq = WriteSeq { log_index: n / SHARDS + 1, pos: 0 };
    let new = format!("export-s{shard}-{n}");
    let range = ExportRange { shard, from: seq, through: seq };
    let commit = MetaCommand::CommitFiles {
        files: vec![(table.clone(), file(new.clone()))],
        source: (table.clone(), format!("export:s{shard}:{n}")),
        export: Some(range),
    };
    assert_eq!(apply(machine, tree, n as i64, commit), Response::Done);
    let remove = if n == 0 { vec![new] } else { vec!["compacted".to_string(), new] };
    let replace =
        MetaCommand::ReplaceFiles { table: table.clone(), remove: remove.clone(), add: file("compacted".into()) };
    apply(machine, tree, n as i64, replace);
    apply(machine, tree, n as i64, MetaCommand::ForgetGarbage { paths: remove });
}

fn main() {
    let rounds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let engine = MemEngine::default();
    let tree = engine.tree("meta").expect("tree");
    let (mut machine, _view) = MetaMachine::new();
    let table = TableRef { project: "bench".into(), set: "driver_stats".into(), version: 1 };
    println!("{:>10}  {:>14}", "rounds", "µs per round");
    let mut done = 0;
    for checkpoint in [0, 10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000].into_iter().filter(|c| *c < rounds) {
        while done < checkpoint {
            round(&mut machine, tree.as_ref(), &table, done);
            done += 1;
        }
        let started = Instant::now();
        for _ in 0..SAMPLE {
            round(&mut machine, tree.as_ref(), &table, done);
            done += 1;
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / SAMPLE as f64;
        println!("{checkpoint:>10}  {micros:>14.1}");
    }
}
