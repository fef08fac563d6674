//! Micro-benchmarks of the pure hot paths: the key encoding and hash every read and write
//! computes, the as-of join kernel of point-in-time retrieval, and the sketch updates that
//! statistics make per value. `cargo bench -p quiver-core`; figures are never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark stops loudly on a broken setup")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quiver_core::Value;
use quiver_core::ValueType;
use quiver_core::asof::{EventRow, SpineRow, asof_join, asof_join_dense};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::stats::FeatureSummary;

/// A fixed pseudo-random sequence (SplitMix64), so that every run measures the same inputs.
fn numbers(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn key_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    group.throughput(Throughput::Elements(1));
    let int_key = [Value::Int64(1_234_567)];
    group.bench_function("encode_and_hash/int64", |b| {
        b.iter(|| key_hash(&encode_entity_key(black_box(&int_key))));
    });
    let composite = [Value::String("customer-0042".into()), Value::Int64(7)];
    group.bench_function("encode_and_hash/string+int64", |b| {
        b.iter(|| key_hash(&encode_entity_key(black_box(&composite))));
    });
    let encoded = encode_entity_key(&int_key);
    group.bench_function("hash/int64", |b| b.iter(|| key_hash(black_box(&encoded))));
    group.finish();
}

fn asof_kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("asof_join");
    const DAY: i64 = 86_400_000_000;
    for (entities, events, spine) in [(1_000u64, 10_000usize, 1_000usize), (10_000, 100_000, 10_000)] {
        let keys: Vec<Vec<u8>> = (0..entities as i64).map(|id| encode_entity_key(&[Value::Int64(id)])).collect();
        let mut draw = numbers(entities);
        let mut next = move |below: u64| draw.next().unwrap_or_default() % below;
        // (entity index, time) draws, joined once on encoded keys and once on dense ids.
        let event_draws: Vec<(usize, i64)> =
            (0..events).map(|_| (next(entities) as usize, next(90 * DAY as u64) as i64)).collect();
        let spine_draws: Vec<(usize, i64)> =
            (0..spine).map(|_| (next(entities) as usize, next(90 * DAY as u64) as i64)).collect();
        let event_rows: Vec<EventRow<&[u8]>> =
            event_draws.iter().zip(0..).map(|(&(k, ts), seq)| EventRow { key: keys[k].as_slice(), ts, seq }).collect();
        let spine_rows: Vec<SpineRow<&[u8]>> =
            spine_draws.iter().map(|&(k, ts)| SpineRow { key: keys[k].as_slice(), ts }).collect();
        group.throughput(Throughput::Elements((events + spine) as u64));
        let size = format!("{events}_events_{spine}_spine");
        group.bench_with_input(BenchmarkId::new("byte_keys", &size), &(spine_rows, event_rows), |b, (s, e)| {
            b.iter(|| asof_join(black_box(s), black_box(e), 30 * DAY))
        });
        // Retrieval joins on dense ids of the spine's keys.
        let event_ids: Vec<EventRow<u32>> =
            event_draws.iter().zip(0..).map(|(&(k, ts), seq)| EventRow { key: k as u32, ts, seq }).collect();
        let spine_ids: Vec<SpineRow<u32>> = spine_draws.iter().map(|&(k, ts)| SpineRow { key: k as u32, ts }).collect();
        group.bench_with_input(BenchmarkId::new("dense_ids", &size), &(&spine_ids, &event_ids), |b, (s, e)| {
            b.iter(|| asof_join(black_box(s), black_box(e), 30 * DAY))
        });
        group.bench_with_input(BenchmarkId::new("dense_packed", &size), &(spine_ids, event_ids), |b, (s, e)| {
            b.iter(|| asof_join_dense(black_box(s), black_box(e), 30 * DAY))
        });
    }
    group.finish();
}

fn sketch_updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("summary_observe");
    const VALUES: usize = 10_000;
    group.throughput(Throughput::Elements(VALUES as u64));
    let floats: Vec<Value> =
        numbers(1).take(VALUES).map(|n| Value::Float64((n >> 11) as f64 / (1u64 << 53) as f64)).collect();
    group.bench_function("float64", |b| {
        b.iter(|| {
            let mut summary = FeatureSummary::new(ValueType::Float64);
            for v in &floats {
                summary.observe(black_box(v)).expect("float64 values fit a float64 summary");
            }
            summary
        });
    });
    // A skewed categorical column: a few hundred distinct values, some far more frequent.
    let strings: Vec<Value> =
        numbers(2).take(VALUES).map(|n| Value::String(format!("city-{}", (n % 400) * (n % 3) / 2))).collect();
    group.bench_function("string", |b| {
        b.iter(|| {
            let mut summary = FeatureSummary::new(ValueType::String);
            for v in &strings {
                summary.observe(black_box(v)).expect("string values fit a string summary");
            }
            summary
        });
    });
    group.finish();
}

criterion_group!(benches, key_encoding, asof_kernel, sketch_updates);
criterion_main!(benches);
