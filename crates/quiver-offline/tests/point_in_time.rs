//! Point-in-time retrieval through real Parquet files against a naive O(n·m) model.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a broken fixture stops the test loudly")]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use proptest::prelude::*;
use quiver_core::ValueType;
use quiver_core::registry::{Entity, FeatureSet, Registry};
use quiver_core::spec::{Definitions, FeatureSetSpec};
use quiver_offline::files::write_file;
use quiver_offline::retrieval::{Phases, Source, point_in_time};
use quiver_offline::schema::file_schema;
use quiver_offline::sorted::{sort_by_key_hash, write_sorted_file};
use quiver_offline::spill::{Memory, SPINE_ROW_BYTES, Usage};
use quiver_offline::split::{hash_range, merge_parts, split_spine};
use quiver_offline::store::{OfflineStore, S3Settings};

fn schema(ttl: Option<&str>) -> (Entity, FeatureSet) {
    let mut set = FeatureSetSpec::new("stats", "driver", "ts", &[("rate", ValueType::Float64)]);
    set.ttl = ttl.map(str::to_string);
    let defs = Definitions::new("p").entity("driver", &[("driver_id", ValueType::Int64)]).feature_set(set);
    let mut reg = Registry::default();
    reg.apply(&defs, 0).unwrap();
    let p = reg.project("p").unwrap();
    (p.entity("driver").unwrap().clone(), p.feature_set("stats", None).unwrap().clone())
}

/// (driver, event ts in seconds, rate or null, seq)
type Event = (i64, i64, Option<f64>, u64);

fn naive(spine: &[(i64, i64)], events: &[Event], ttl_secs: i64) -> Vec<(Option<f64>, Option<i64>)> {
    spine
        .iter()
        .map(|(driver, t)| {
            let best = events
                .iter()
                .filter(|e| e.0 == *driver && e.1 <= *t && (ttl_secs == 0 || e.1 > t - ttl_secs))
                .max_by_key(|e| (e.1, e.3));
            (best.and_then(|e| e.2), best.map(|e| e.1 * 1_000_000))
        })
        .collect()
}

/// Retrieval of `spine` from `files` written to the store at `location`, within `memory`,
/// split into `parts` joined one by one and merged (as nodes would); answers (rate, event
/// time) per spine row, and what the retrieval held and spilled.
async fn run_within(
    location: &str,
    spine: &[(i64, i64)],
    files: &[Vec<Event>],
    ttl_secs: i64,
    memory: &Memory,
    parts: usize,
) -> (Vec<(Option<f64>, Option<i64>)>, Usage) {
    let ttl = (ttl_secs > 0).then(|| format!("{ttl_secs}s"));
    let (entity, fs) = schema(ttl.as_deref());
    let store = OfflineStore::open(location, &S3Settings::default()).unwrap();
    let mut manifest = Vec::new();
    for (n, events) in files.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.1 * 1_000_000))
                    .with_timezone(quiver_offline::schema::UTC),
            ),
            Arc::new(events.iter().map(|e| e.2).collect::<arrow_array::Float64Array>()),
            Arc::new(UInt64Array::from_iter_values(events.iter().map(|e| e.3))),
        ];
        let batch = RecordBatch::try_new(file_schema(&entity, &fs), columns).unwrap();
        let path = format!("f{n}.parquet");
        // Every other file as compaction writes them: sorted by key hash, in four row groups
        // (of three rows at least), which the parts of a split retrieval read by key hash.
        let file = match n % 2 {
            0 => write_file(&store, &path, &batch, 1).await.unwrap(),
            _ => {
                let (sorted, hashes) = sort_by_key_hash(&batch, &entity, &fs).unwrap();
                write_sorted_file(&store, &path, (&sorted, &hashes), 1, (events.len() / 4).max(3)).await.unwrap()
            }
        };
        manifest.push(file);
    }
    let spine_batch = RecordBatch::try_from_iter(vec![
        ("driver_id", Arc::new(Int64Array::from_iter_values(spine.iter().map(|s| s.0))) as ArrayRef),
        ("label", Arc::new(StringArray::from_iter_values(spine.iter().map(|s| format!("l{}", s.1))))),
    ])
    .unwrap();
    let spine_ts = TimestampMicrosecondArray::from_iter_values(spine.iter().map(|s| s.1 * 1_000_000));
    let source = |key_hashes| Source {
        entity: &entity,
        fs: &fs,
        files: manifest.clone(),
        features: vec![(0, "stats:rate".into())],
        key_hashes,
    };
    let (mut phases, mut usage) = (Phases::default(), Usage::default());
    let sources = [source(None)];
    let out = if parts == 1 {
        point_in_time(&store, &spine_batch, &spine_ts, &sources, memory, &mut phases, &mut usage).await.unwrap()
    } else {
        let split = split_spine(&spine_batch, &spine_ts, "ts", &sources, parts).unwrap();
        let mut answers = Vec::new();
        for (p, part) in split.parts.iter().enumerate() {
            let times = part.column(1).as_primitive::<arrow_array::types::TimestampMicrosecondType>();
            let (mut used, of_part) = (Usage::default(), [source(Some(hash_range(p, parts)))]);
            answers.push(point_in_time(&store, part, times, &of_part, memory, &mut phases, &mut used).await.unwrap());
            usage.merge(&used);
        }
        merge_parts(&spine_batch, &sources, &answers, &split.places).unwrap()
    };
    assert_eq!(out.num_rows(), spine.len());
    let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["driver_id", "label", "stats:rate", "stats:ts"]);
    let labels = out.column(1).as_string::<i32>();
    for (i, s) in spine.iter().enumerate() {
        assert_eq!(labels.value(i), format!("l{}", s.1), "spine order and columns kept");
    }
    let rate = out.column(2).as_primitive::<Float64Type>();
    let ts = out.column(3).as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    let answer = (0..out.num_rows())
        .map(|i| ((!rate.is_null(i)).then(|| rate.value(i)), (!ts.is_null(i)).then(|| ts.value(i))))
        .collect();
    (answer, usage)
}

/// The answer in memory, and through partitions spilled to disk: both must be the model's.
async fn run(spine: &[(i64, i64)], files: &[Vec<Event>], ttl_secs: i64) -> Vec<(Option<f64>, Option<i64>)> {
    let (held, usage) = run_within("memory://", spine, files, ttl_secs, &Memory::unlimited(), 1).await;
    assert_eq!((usage.partitions, usage.spilled_bytes), (1, 0));
    // A local directory's files are read where they are decoded, not through the object store.
    let local = tempfile::tempdir().unwrap();
    let (from_disk, _) =
        run_within(&local.path().display().to_string(), spine, files, ttl_secs, &Memory::unlimited(), 1).await;
    assert_eq!(held, from_disk, "answers from memory and from a local directory differ");
    let dir = tempfile::tempdir().unwrap();
    // Half of what the spine's rows alone take in a join, whatever the events in its time
    // window: partitions by the dozen, most keys alone in one, some empty.
    let tiny = Memory { budget: spine.len() as u64 * SPINE_ROW_BYTES / 2, spill_dir: dir.path().to_path_buf() };
    let (spilled, usage) = run_within("memory://", spine, files, ttl_secs, &tiny, 1).await;
    assert!(usage.partitions > 1, "{usage:?}");
    assert_eq!(held, spilled, "held and spilled answers differ");
    // Room for the slots but hardly for the matched values: pass 1 stops keeping them and
    // pass 2 reads them.
    let scant = Memory { budget: spine.len() as u64 * SPINE_ROW_BYTES * 2, spill_dir: dir.path().to_path_buf() };
    let (read_again, usage) = run_within("memory://", spine, files, ttl_secs, &scant, 1).await;
    assert_eq!(usage.partitions, 1, "{usage:?}");
    assert_eq!(held, read_again, "kept and read-again answers differ");
    // Split over three "nodes", each spilling: the merge gives every row its own answer.
    let (split, _) = run_within("memory://", spine, files, ttl_secs, &tiny, 3).await;
    assert_eq!(held, split, "whole and split answers differ");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "spill files are removed");
    held
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn retrieval_matches_the_naive_model(
        raw in proptest::collection::vec((0i64..4, -5i64..20, proptest::option::of(0.0f64..1.0), 0usize..3), 0..40),
        spine in proptest::collection::vec((0i64..5, -8i64..25), 1..30),
        ttl in prop_oneof![Just(0i64), Just(1), Just(3), Just(10)],
    ) {
        // Unique, shuffled sequence numbers; events spread over up to three files.
        let n = raw.len() as u64;
        let events: Vec<(Event, usize)> =
            raw.iter().enumerate().map(|(i, (d, t, v, f))| ((*d, *t, *v, (i as u64 * 7919) % (n.max(1) * 7919 + 1)), *f)).collect();
        let mut files = vec![Vec::new(); 3];
        for (e, f) in &events {
            files[*f].push(*e);
        }
        let all: Vec<Event> = events.iter().map(|(e, _)| *e).collect();
        prop_assert_eq!(block_on(run(&spine, &files, ttl)), naive(&spine, &all, ttl));
    }
}

#[test]
fn ties_go_to_the_row_ingested_last_across_files() {
    let files = vec![vec![(1, 10, Some(0.1), 5)], vec![(1, 10, Some(0.2), 3)]];
    let out = block_on(run(&[(1, 10), (1, 9), (2, 10)], &files, 0));
    assert_eq!(out, vec![(Some(0.1), Some(10_000_000)), (None, None), (None, None)]);
}

/// A retrieval dropped while it spills (its client went away) leaves no spill file.
#[test]
fn a_retrieval_dropped_midway_leaves_no_spill_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (files, spine) = large();
    let memory = Memory { budget: 64 << 10, spill_dir: dir.path().to_path_buf() };
    let retrieval = runtime.spawn(async move { run_within("memory://", &spine, &files, 0, &memory, 1).await });
    let spilling = || std::fs::read_dir(dir.path()).unwrap().count() > 0;
    let waited = std::time::Instant::now();
    while !spilling() && !retrieval.is_finished() {
        assert!(waited.elapsed().as_secs() < 120, "the retrieval never spilled");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(spilling(), "dropped while spilling");
    retrieval.abort();
    // Whatever task holds the partitions drops them as it ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(60));
    assert!(!spilling(), "the spill dir is left empty");
}

/// 24 files of 20,000 events over 2,000 drivers (480,000 events), and a spine of each driver.
fn large() -> (Vec<Vec<Event>>, Vec<(i64, i64)>) {
    let files = (0..24u64)
        .map(|f| {
            let event = |i: u64| (((i * 7 + f) % 2000) as i64, (f * 20_000 + i) as i64, Some(0.5), f * 20_000 + i);
            (0..20_000u64).map(event).collect()
        })
        .collect();
    (files, (0..2000).map(|d| (d, 300_000 + d * 50)).collect())
}

/// A history many times the memory budget is joined within it without spilling (events
/// are folded as read), and a spine whose slots outgrow the budget is joined within it by
/// spilling, with the answer it gets in memory. By the retrieval's own accounting.
#[test]
fn a_history_and_a_spine_larger_than_the_budget_are_joined_within_it() {
    let (files, spine) = large();
    let budget = 4 << 20;
    let events: usize = files.iter().map(Vec::len).sum();
    assert!(events * size_of::<(quiver_core::asof::EventRow<u32>, u32)>() > 3 * budget as usize);
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory { budget, spill_dir: dir.path().to_path_buf() };
    let (held, usage) = block_on(run_within("memory://", &spine, &files, 0, &memory, 1));
    assert!(usage.peak_bytes <= budget && usage.spilled_bytes == 0 && usage.partitions == 1, "{usage:?}");
    assert!(held.iter().all(|(rate, _)| rate.is_some()), "every driver has events before its time");

    let long: Vec<(i64, i64)> = (0..60_000).map(|i| (i % 2_000, 300_000 + i)).collect();
    assert!(long.len() as u64 * SPINE_ROW_BYTES > budget / 2, "the spine's slots outgrow half the budget");
    let (whole, _) = block_on(run_within("memory://", &long, &files, 0, &Memory::unlimited(), 1));
    let (spilled, usage) = block_on(run_within("memory://", &long, &files, 0, &memory, 1));
    assert!(usage.peak_bytes <= budget && usage.spilled_bytes > 0 && usage.partitions > 1, "{usage:?}");
    assert_eq!(whole, spilled);
}

/// A file sorted by key hash is read, for one range of key hashes, only where its row
/// groups hold that range: every row of it, and few others.
#[test]
fn a_part_reads_only_the_row_groups_of_its_key_hashes() {
    use quiver_offline::files::{TimeWindow, read_file};
    let (entity, fs) = schema(None);
    let store = OfflineStore::open("memory://", &S3Settings::default()).unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..1_000)),
        Arc::new(TimestampMicrosecondArray::from_iter_values(0..1_000).with_timezone(quiver_offline::schema::UTC)),
        Arc::new(arrow_array::Float64Array::from_iter_values((0..1_000).map(|i| i as f64))),
        Arc::new(UInt64Array::from_iter_values(0..1_000)),
    ];
    let batch = RecordBatch::try_new(file_schema(&entity, &fs), columns).unwrap();
    let (sorted, hashes) = sort_by_key_hash(&batch, &entity, &fs).unwrap();
    assert!(hashes.is_sorted());
    let file = block_on(write_sorted_file(&store, "sorted.parquet", (&sorted, &hashes), 1, 50)).unwrap();
    let range = hash_range(1, 4);
    let window = TimeWindow { column: "ts".into(), lo: 0, hi: 1_000, key_hashes: Some(range) };
    let read: usize =
        block_on(read_file(&store, &file, None, Some(&window))).unwrap().iter().map(|b| b.num_rows()).sum();
    let wanted = hashes.iter().filter(|h| (range.0..=range.1).contains(*h)).count();
    assert!(read >= wanted && read <= wanted + 100, "{read} rows read for {wanted} in range");
    let all = TimeWindow { key_hashes: None, ..window };
    let whole: usize = block_on(read_file(&store, &file, None, Some(&all))).unwrap().iter().map(|b| b.num_rows()).sum();
    assert_eq!(whole, 1_000);
}
