//! Micro-benchmarks of the row codec: every online write stores, and every read decodes, one
//! `StoredRow` per entity through `quiver_store::codec`. `cargo bench -p quiver-store`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark stops loudly on a broken setup")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_core::Value;
use quiver_core::row::{StoredRow, WriteSeq};
use quiver_store::codec::{load, store_at};

/// The benchmark data set's row: 8 float64 and 2 int64 features.
fn driver_row() -> StoredRow {
    let mut values: Vec<Value> = (0..8).map(|i| Value::Float64(0.1 + f64::from(i) / 7.0)).collect();
    values.extend([Value::Int64(417), Value::Int64(9)]);
    StoredRow {
        event_ts: 1_780_272_000_000_000,
        seq: WriteSeq { log_index: 123_456, pos: 42 },
        written_at: 1_780_272_000_250_000,
        values,
    }
}

/// A row with strings, lists and nulls, the costlier shapes a feature set may have.
fn mixed_row() -> StoredRow {
    StoredRow {
        event_ts: 1_780_272_000_000_000,
        seq: WriteSeq { log_index: 7, pos: 0 },
        written_at: 1_780_272_000_250_000,
        values: vec![
            Value::String("San Francisco".into()),
            Value::Bool(true),
            Value::Null,
            Value::Timestamp(1_780_000_000_000_000),
            Value::Float32List((0..32).map(|i| i as f32 / 32.0).collect()),
            Value::StringList(vec!["a".into(), "bb".into(), "ccc".into()]),
        ],
    }
}

fn row_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("stored_row");
    group.throughput(Throughput::Elements(1));
    for (name, row) in [("10_numeric", driver_row()), ("mixed", mixed_row())] {
        // Bare (before cluster version 2) and in its envelope (from it).
        for version in [1, 2] {
            let bytes = store_at(&row, version).expect("a stored row encodes");
            group.bench_function(format!("store/{name}/v{version}"), |b| b.iter(|| store_at(black_box(&row), version)));
            group
                .bench_function(format!("load/{name}/v{version}"), |b| b.iter(|| load::<StoredRow>(black_box(&bytes))));
        }
    }
    group.finish();
}

criterion_group!(benches, row_codec);
criterion_main!(benches);
