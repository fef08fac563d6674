//! Point-in-time retrieval through real Parquet files against a naive O(n·m) model.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use proptest::prelude::*;
use quiver_core::ValueType;
use quiver_core::registry::{Entity, FeatureSet, Registry};
use quiver_core::spec::{Definitions, EntitySpec, FeatureSetSpec, FeatureSpec, JoinKey};
use quiver_offline::files::write_file;
use quiver_offline::retrieval::{Source, point_in_time};
use quiver_offline::schema::file_schema;
use quiver_offline::store::{OfflineStore, S3Settings};

fn schema(ttl: Option<&str>) -> (Entity, FeatureSet) {
    let defs = Definitions {
        project: "p".into(),
        entities: vec![EntitySpec {
            name: "driver".into(),
            join_keys: vec![JoinKey { name: "driver_id".into(), ty: ValueType::Int64 }],
            description: String::new(),
        }],
        feature_sets: vec![FeatureSetSpec {
            name: "stats".into(),
            entity: "driver".into(),
            timestamp: "ts".into(),
            ttl: ttl.map(str::to_string),
            owner: String::new(),
            description: String::new(),
            tags: vec![],
            features: vec![FeatureSpec {
                name: "rate".into(),
                ty: ValueType::Float64,
                description: String::new(),
                tags: vec![],
            }],
            monitoring: None,
        }],
        ..Default::default()
    };
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

async fn run(spine: &[(i64, i64)], files: &[Vec<Event>], ttl_secs: i64) -> Vec<(Option<f64>, Option<i64>)> {
    let ttl = (ttl_secs > 0).then(|| format!("{ttl_secs}s"));
    let (entity, fs) = schema(ttl.as_deref());
    let store = OfflineStore::open("memory://", &S3Settings::default()).unwrap();
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
        manifest.push(write_file(&store, &format!("f{n}.parquet"), &batch, 1).await.unwrap());
    }
    let spine_batch = RecordBatch::try_from_iter(vec![
        ("driver_id", Arc::new(Int64Array::from_iter_values(spine.iter().map(|s| s.0))) as ArrayRef),
        ("label", Arc::new(StringArray::from_iter_values(spine.iter().map(|s| format!("l{}", s.1))))),
    ])
    .unwrap();
    let spine_ts = TimestampMicrosecondArray::from_iter_values(spine.iter().map(|s| s.1 * 1_000_000));
    let source = Source { entity: &entity, fs: &fs, files: manifest, features: vec![(0, "stats:rate".into())] };
    let mut phases = quiver_offline::retrieval::Phases::default();
    let out = point_in_time(&store, &spine_batch, &spine_ts, &[source], &mut phases).await.unwrap();
    assert_eq!(out.num_rows(), spine.len());
    let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["driver_id", "label", "stats:rate", "stats:ts"]);
    let labels = out.column(1).as_string::<i32>();
    for (i, s) in spine.iter().enumerate() {
        assert_eq!(labels.value(i), format!("l{}", s.1), "spine order and columns kept");
    }
    let rate = out.column(2).as_primitive::<Float64Type>();
    let ts = out.column(3).as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    (0..out.num_rows())
        .map(|i| ((!rate.is_null(i)).then(|| rate.value(i)), (!ts.is_null(i)).then(|| ts.value(i))))
        .collect()
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
