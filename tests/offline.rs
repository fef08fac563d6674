//! The offline store end to end, against a local directory and against a real S3-compatible
//! server over HTTP: ingestion (CSV, Parquet, s3:// sources), duplicate detection, bad files,
//! point-in-time training sets and online/offline parity.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow_schema::DataType;
use quiver_client::{Client, Consistency, FeatureSelection, HistoricalRequest, OnlineRequest, Spine, Value};
use quiver_core::time::{MICROS_PER_SEC, format_timestamp};
use quiver_offline::store::OfflineStore;
use quiver_tests::s3::S3Server;
use quiver_tests::{driver_key, node_with_rides_env, now_micros, quiverctl};

const HOUR: i64 = 3600 * MICROS_PER_SEC;

/// Three events per driver, hours apart, ending an hour ago: (driver, ts, conv_rate, trips).
fn events(now: i64) -> Vec<(i64, i64, f64, i64)> {
    let mut out = Vec::new();
    for driver in 1..=6 {
        for k in 0..3 {
            out.push((driver, now - (4 - k) * HOUR, driver as f64 + k as f64 / 10.0, driver * 10 + k));
        }
    }
    out
}

fn csv_of(rows: &[(i64, i64, f64, i64)]) -> String {
    let mut csv = String::from("event_timestamp,driver_id,conv_rate,acc_rate,avg_daily_trips,city,unused\n");
    for (d, ts, rate, trips) in rows {
        csv += &format!("{},{d},{rate},0.5,{trips},city-{d},x\n", format_timestamp(*ts));
    }
    csv
}

fn parquet_of(rows: &[(i64, i64, f64, i64)]) -> Vec<u8> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("city", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| format!("city-{}", r.0))))),
        ("avg_daily_trips", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3)))),
        ("acc_rate", Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 0.5)))),
        ("conv_rate", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ("driver_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
        ("event_timestamp", Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)))),
    ];
    to_parquet(columns)
}

fn to_parquet(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// A training set for `spine` rows of (driver, ts), the spine sent as CSV: (conv_rate, trips) per row.
async fn history(client: &Client, spine: &[(i64, i64)]) -> Vec<(Option<f64>, Option<i64>)> {
    let mut csv = String::from("driver_id,event_timestamp,label\n");
    for (d, ts) in spine {
        csv += &format!("{d},{},{}\n", format_timestamp(*ts), d % 2);
    }
    joined(client, spine, Spine::Csv(csv.into_bytes())).await
}

/// The same spine as Arrow record batches, split in two.
fn spine_batches(spine: &[(i64, i64)]) -> Spine {
    let batch = |rows: &[(i64, i64)]| {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("driver_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
            ("event_timestamp", Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)))),
            ("label", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| (r.0 % 2).to_string())))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    };
    let (first, second) = spine.split_at(spine.len() / 2);
    Spine::Batches(vec![batch(first), batch(second)])
}

/// The training set for `spine`, sent as `sent`: (conv_rate, trips) per row.
async fn joined(client: &Client, spine: &[(i64, i64)], sent: Spine) -> Vec<(Option<f64>, Option<i64>)> {
    let batch = client
        .historical(HistoricalRequest {
            short_names: true,
            ..HistoricalRequest::new(
                "rides",
                FeatureSelection::Refs(vec!["driver_stats:conv_rate".into(), "driver_stats:avg_daily_trips".into()]),
                sent,
            )
        })
        .await
        .unwrap();
    let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(
        names,
        vec!["driver_id", "event_timestamp", "label", "conv_rate", "avg_daily_trips", "driver_stats:event_timestamp"]
    );
    assert_eq!(batch.num_rows(), spine.len(), "every spine row is kept");
    let ids = batch.column(0).as_primitive::<Int64Type>();
    assert!(spine.iter().enumerate().all(|(i, (d, _))| ids.value(i) == *d), "in the spine's order");
    let rate = batch.column(3).as_primitive::<Float64Type>();
    let trips = batch.column(4).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| ((!rate.is_null(i)).then(|| rate.value(i)), (!trips.is_null(i)).then(|| trips.value(i))))
        .collect()
}

/// What the point-in-time rule says, computed by hand from `rows`.
fn expected(rows: &[(i64, i64, f64, i64)], spine: &[(i64, i64)]) -> Vec<(Option<f64>, Option<i64>)> {
    let ttl = 7 * 24 * HOUR;
    spine
        .iter()
        .map(|(d, t)| {
            let best = rows.iter().filter(|r| r.0 == *d && r.1 <= *t && r.1 > t - ttl).max_by_key(|r| r.1);
            (best.map(|r| r.2), best.map(|r| r.3))
        })
        .collect()
}

async fn online(client: &Client, driver: i64) -> (Value, Value) {
    let answer = client
        .get_online(OnlineRequest {
            project: "rides".into(),
            features: FeatureSelection::Refs(vec![
                "driver_stats:conv_rate".into(),
                "driver_stats:avg_daily_trips".into(),
            ]),
            entities: vec![driver_key(driver)],
            consistency: Consistency::Linearizable,
        })
        .await
        .unwrap();
    (answer.rows[0][0].value.clone(), answer.rows[0][1].value.clone())
}

async fn ingest(client: &Client, path: &str) -> Result<quiver_client::IngestProgress, quiver_client::Error> {
    client.ingest("rides", "driver_stats", path, |_| {}).await
}

/// The whole suite against one node; `source` turns a file name and its bytes into a path
/// the node can ingest (a local file, or an object on the S3 server).
async fn suite(client: &Client, dir: &std::path::Path, source: &dyn Fn(&str, &[u8]) -> String) {
    let now = now_micros();
    let rows = events(now);
    let (csv_rows, parquet_rows) = rows.split_at(9);
    let spine: Vec<(i64, i64)> =
        (0..=7).flat_map(|d| [(d, now - 5 * HOUR), (d, now - 3 * HOUR - 1), (d, now - 3 * HOUR), (d, now)]).collect();
    assert!(history(client, &spine).await.iter().all(|r| *r == (None, None)), "nothing ingested yet");

    let csv = source("first.csv", csv_of(csv_rows).as_bytes());
    let report = ingest(client, &csv).await.unwrap();
    assert_eq!((report.rows, report.files_done), (9, 1));
    assert!(report.warnings.iter().any(|w| w.contains("'unused'")), "{:?}", report.warnings);
    let parquet = source("second.parquet", &parquet_of(parquet_rows));
    assert_eq!(ingest(client, &parquet).await.unwrap().rows, 9);
    assert_eq!(history(client, &spine).await, expected(&rows, &spine));
    assert_eq!(joined(client, &spine, spine_batches(&spine)).await, expected(&rows, &spine), "a spine of batches");

    // The same content again adds nothing.
    let again = ingest(client, &csv).await.unwrap();
    assert_eq!((again.rows, again.files_written, again.duplicates.len()), (0, 0, 1));
    assert_eq!(history(client, &spine).await, expected(&rows, &spine));

    // Online/offline parity: `get` equals the last row `history` gives for a spine at now.
    let at_now: Vec<(i64, i64)> = (1..=6).map(|d| (d, now_micros())).collect();
    for ((d, _), (rate, trips)) in at_now.iter().zip(history(client, &at_now).await) {
        assert_eq!(
            online(client, *d).await,
            (Value::Float64(rate.unwrap()), Value::Int64(trips.unwrap())),
            "driver {d}"
        );
    }

    // Bad files are refused whole, naming what is wrong, and change nothing.
    let mistyped = csv_of(&[(9, now, 0.5, 1)]).replace(",0.5,1,", ",high,1,");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("mistyped.csv", mistyped.into_bytes(), "row 1, field 'acc_rate'"),
        ("missing.csv", b"driver_id,event_timestamp\n9,2026-01-01T00:00:00Z\n".to_vec(), "missing column 'conv_rate'"),
        ("ragged.csv", format!("{}9,{}\n", csv_of(&[(9, now, 0.5, 1)]), format_timestamp(now)).into_bytes(), "row 2"),
        ("truncated.parquet", parquet_of(&[(9, now, 0.5, 1)])[..100].to_vec(), "not a readable Parquet file"),
        ("wrong-type.parquet", parquet_of(&[(9, now, 0.5, 1)]), "has type"),
    ];
    for (name, bytes, message) in cases {
        let bytes = if name == "wrong-type.parquet" { retyped_parquet(now) } else { bytes };
        let err = ingest(client, &source(name, &bytes)).await.unwrap_err().to_string();
        assert!(err.contains(message) && err.contains(name), "{name}: {err}");
    }
    assert_eq!(online(client, 9).await, (Value::Null, Value::Null));
    assert_eq!(history(client, &spine).await, expected(&rows, &spine));

    // Ingested rows upserted online are not exported back: the offline store holds each once.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stored: u64 = client.files("rides", "driver_stats").await.unwrap().iter().map(|f| f.rows).sum();
    assert_eq!(stored, rows.len() as u64);
    let _ = dir;
}

const FAST_EXPORT: &str = "[workers]\nexport_interval_ms = 100\n";

/// A file whose conv_rate column holds strings.
fn retyped_parquet(now: i64) -> Vec<u8> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("driver_id", Arc::new(Int64Array::from(vec![9]))),
        ("event_timestamp", Arc::new(TimestampMicrosecondArray::from(vec![now]))),
        ("conv_rate", Arc::new(StringArray::from(vec!["high"]))),
        ("acc_rate", Arc::new(Float64Array::from(vec![0.5]))),
        ("avg_daily_trips", Arc::new(Int64Array::from(vec![1]))),
        ("city", Arc::new(StringArray::from(vec!["x"]))),
    ];
    to_parquet(columns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_store_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, FAST_EXPORT).unwrap();
    let (node, client) = node_with_rides_env(dir.path(), &["--config", config.to_str().unwrap()], &[]).await;
    let files = dir.path().join("inputs");
    std::fs::create_dir(&files).unwrap();
    let source = |name: &str, bytes: &[u8]| {
        let path = files.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    suite(&client, dir.path(), &source).await;
    // The project's files; the store also holds the cluster's mark (`clusters/`).
    let parquet_files = walk(&dir.path().join("node/offline/rides"));
    assert!(parquet_files.iter().all(|p| p.ends_with(".parquet")) && parquet_files.len() >= 2, "{parquet_files:?}");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_store_on_an_s3_compatible_server() {
    let s3 = S3Server::start(&["quiver", "inputs"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, FAST_EXPORT).unwrap();
    let args = ["--offline-store", "s3://quiver/offline", "--config", config.to_str().unwrap()];
    let (node, client) = node_with_rides_env(dir.path(), &args, &s3.env()).await;
    let inputs = OfflineStore::open("s3://inputs", &s3.settings()).unwrap();
    let handle = tokio::runtime::Handle::current();
    let source = |name: &str, bytes: &[u8]| {
        let (inputs, bytes, name) = (inputs.clone(), bytes::Bytes::copy_from_slice(bytes), name.to_string());
        std::thread::scope(|s| s.spawn(|| handle.block_on(inputs.put(&format!("drops/{name}"), bytes))).join())
            .unwrap()
            .unwrap();
        format!("s3://inputs/drops/{name}")
    };
    suite(&client, dir.path(), &source).await;
    let stored = OfflineStore::open("s3://quiver/offline", &s3.settings()).unwrap().list("rides").await.unwrap();
    assert!(stored.len() >= 2 && stored.iter().all(|(p, _)| p.ends_with(".parquet")), "{stored:?}");
    assert!(!dir.path().join("node/offline").exists(), "nothing went to the local directory");
    drop(node);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

async fn quiet_history(
    client: &Client,
    spine_csv: String,
    save_as: Option<&str>,
) -> Result<RecordBatch, quiver_client::Error> {
    client
        .historical(HistoricalRequest {
            save_as: save_as.map(str::to_string),
            spine_name: "spine.csv".into(),
            ..HistoricalRequest::new(
                "rides",
                FeatureSelection::Vector("driver_model_v1".into()),
                Spine::Csv(spine_csv.into_bytes()),
            )
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_training_set_records_its_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let now = now_micros();
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, csv_of(&events(now))).unwrap();
    ingest(&client, input.to_str().unwrap()).await.unwrap();
    let spine =
        format!("driver_id,event_timestamp\n1,{}\n2,{}\n", format_timestamp(now), format_timestamp(now - 2 * HOUR));
    let answer = quiet_history(&client, spine.clone(), Some("train_v1")).await.unwrap();
    let datasets = client.datasets("rides").await.unwrap();
    assert_eq!(datasets.len(), 1);
    let d = &datasets[0];
    assert_eq!(
        (d.name.as_str(), d.rows, d.vector.as_deref(), d.spine.as_str()),
        ("train_v1", 2, Some("driver_model_v1"), "spine.csv")
    );
    assert_eq!(d.feature_sets, vec!["driver_stats@1"]);
    assert_eq!(d.features.len(), 3);
    assert_eq!((d.spine_from, d.spine_to), (now - 2 * HOUR, now));
    // The stored file holds the same rows as the answer.
    let stored = std::fs::read(dir.path().join("node/offline").join(&d.path)).unwrap();
    let stored = quiver_offline::files::read_parquet(bytes::Bytes::from(stored), None).unwrap();
    assert_eq!(stored[0].num_rows(), answer.num_rows());
    assert_eq!(stored[0].column(2), answer.column(2));
    let err = quiet_history(&client, spine, Some("train_v1")).await.unwrap_err().to_string();
    assert!(err.contains("dataset 'train_v1' exists"), "{err}");
    assert_eq!(client.datasets("rides").await.unwrap().len(), 1);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_fills_the_online_store_after_an_ingest_died_before_its_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("QUIVER_FAILPOINT".to_string(), "ingest-after-commit".to_string())];
    let (mut node, client) = node_with_rides_env(dir.path(), &[], &env).await;
    let now = now_micros();
    let rows = events(now);
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, csv_of(&rows)).unwrap();
    assert!(ingest(&client, input.to_str().unwrap()).await.is_err(), "the node died mid-ingest");
    node.wait_for_exit(std::time::Duration::from_secs(10)).await.unwrap();
    // 512 bytes planned per kept row: 2 KiB keeps 4 of the 6 drivers, so the files are
    // read again in parts.
    node.set_env(vec![("QUIVER_RETRIEVAL_MEMORY".to_string(), "2KiB".to_string())]);
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    assert_eq!(online(&client, 1).await, (Value::Null, Value::Null), "committed offline, never upserted online");

    let window = (Some(now - 24 * HOUR), None);
    let report = client.materialize("rides", "driver_stats", window, |_| {}).await.unwrap();
    assert!(report.rows_read > rows.len() as u64, "read in parts: {report:?}");
    assert_eq!(report.entities_written, 6);
    let at_now: Vec<(i64, i64)> = (1..=6).map(|d| (d, now_micros())).collect();
    let offline = history(&client, &at_now).await;
    for ((d, _), (rate, trips)) in at_now.iter().zip(&offline) {
        assert_eq!(online(&client, *d).await, (Value::Float64(rate.unwrap()), Value::Int64(trips.unwrap())));
    }
    // Idempotent, and never replaces a newer online value.
    client.write("rides", "driver_stats", vec![quiver_tests::driver_row(1, now_micros(), 0.99, 99)]).await.unwrap();
    client.materialize("rides", "driver_stats", window, |_| {}).await.unwrap();
    assert_eq!(online(&client, 1).await, (Value::Float64(0.99), Value::Int64(99)));
    assert_eq!(online(&client, 2).await, (Value::Float64(offline[1].0.unwrap()), Value::Int64(offline[1].1.unwrap())));
    // A window before every event loads nothing.
    let empty = client.materialize("rides", "driver_stats", (None, Some(now - 24 * HOUR)), |_| {}).await.unwrap();
    assert_eq!(empty.entities_written, 0);
}

/// A training set that takes longer than the client's silence timeout still arrives: the
/// node reports progress while it computes, so only silence fails a call, not duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_set_slower_than_the_silence_timeout_arrives_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let slow = [("QUIVER_DELAY".to_string(), "training-set:4000".to_string())];
    let (_node, client) = node_with_rides_env(dir.path(), &[], &slow).await;
    let now = now_micros();
    let rows = events(now);
    let path = dir.path().join("events.csv");
    std::fs::write(&path, csv_of(&rows)).unwrap();
    ingest(&client, path.to_str().unwrap()).await.unwrap();
    let client = client.with_silence_timeout(std::time::Duration::from_millis(1500));
    let spine = [(1, now), (2, now)];
    let csv = spine.iter().fold(String::from("driver_id,event_timestamp\n"), |csv, (d, ts)| {
        csv + &format!("{d},{}\n", format_timestamp(*ts))
    });
    let mut reports = Vec::new();
    let request = HistoricalRequest::new(
        "rides",
        FeatureSelection::Refs(vec!["driver_stats:avg_daily_trips".into()]),
        Spine::Csv(csv.into_bytes()),
    );
    let batch = client.historical_with_progress(request, |spent| reports.push(spent)).await.unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert!(reports.len() >= 3, "progress while the node computed: {reports:?}");
    assert!(reports.windows(2).all(|w| w[0] <= w[1]), "{reports:?}");
}

/// Reads a Parquet file `quiverctl history --out` wrote.
fn read_out(path: &std::path::Path) -> RecordBatch {
    let mut batches =
        quiver_offline::files::read_parquet(bytes::Bytes::from(std::fs::read(path).unwrap()), None).unwrap();
    assert_eq!(batches.len(), 1, "a small training set is one batch");
    batches.remove(0)
}

/// `driver_stats` rows whose event time column is `Timestamp(ns, zone)`, as pandas and pyarrow
/// write time-zone-aware (or naive) columns.
fn zoned_parquet(rows: &[(i64, i64, f64, i64)], zone: Option<&str>) -> Vec<u8> {
    let nanos = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.1 * 1_000));
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("driver_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
        ("event_timestamp", Arc::new(nanos.with_timezone_opt(zone))),
        ("conv_rate", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ("acc_rate", Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 0.5)))),
        ("avg_daily_trips", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3)))),
        ("city", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| format!("city-{}", r.0))))),
    ];
    to_parquet(columns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_time_zones_offsets_and_naive_times_work_for_ingest_and_spines() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let ep = node.endpoint();
    let now = now_micros();
    let zones = [Some("UTC"), Some("Europe/Amsterdam"), Some("America/New_York"), Some("+02:00"), None];
    // Driver d's one event, 30 minutes before the spine's time (µs apart, so each is exact).
    let event = |d: i64| now - 1800 * MICROS_PER_SEC - d;
    for (i, zone) in zones.iter().enumerate() {
        let d = i as i64 + 1;
        let file = dir.path().join(format!("zone-{d}.parquet"));
        std::fs::write(&file, zoned_parquet(&[(d, event(d), d as f64, d)], *zone)).unwrap();
        let out = quiverctl(
            &ep,
            &["--project", "rides", "ingest", "--feature-set", "driver_stats", file.to_str().unwrap()],
            None,
        );
        assert!(out.success, "zone {zone:?}: {}", out.stderr);
    }

    let drivers = zones.len() as i64;
    let spine_times = TimestampNanosecondArray::from_iter_values((1..=drivers).map(|_| now * 1_000));
    let spine: Vec<(&str, ArrayRef)> = vec![
        ("driver_id", Arc::new(Int64Array::from_iter_values(1..=drivers))),
        ("event_timestamp", Arc::new(spine_times.with_timezone("UTC"))),
        ("clicks", Arc::new(Int32Array::from_iter_values((1..=drivers).map(|d| d as i32 * 10)))),
        ("score", Arc::new(Float32Array::from_iter_values((1..=drivers).map(|d| d as f32 / 4.0)))),
        ("signup", Arc::new(Date32Array::from_iter_values((1..=drivers).map(|d| 20_000 + d as i32)))),
    ];
    let spine_file = dir.path().join("spine.parquet");
    std::fs::write(&spine_file, to_parquet(spine.clone())).unwrap();
    let out_file = dir.path().join("train.parquet");
    let args = [
        "--project",
        "rides",
        "history",
        "--features",
        "driver_stats:conv_rate",
        "--spine",
        spine_file.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ];
    let out = quiverctl(&ep, &args, None);
    assert!(out.success, "{}", out.stderr);
    let train = read_out(&out_file);
    let rates = train.column_by_name("driver_stats:conv_rate").unwrap().as_primitive::<Float64Type>();
    let found =
        train.column_by_name("driver_stats:event_timestamp").unwrap().as_primitive::<TimestampMicrosecondType>();
    for d in 1..=drivers {
        let row = d as usize - 1;
        assert_eq!((rates.value(row), found.value(row)), (d as f64, event(d)), "zone {:?}", zones[row]);
    }
    // The spine's own columns come back exactly as they were, types included.
    for (name, column) in &spine {
        assert_eq!(train.column_by_name(name).unwrap(), column, "{name}");
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_spine_labels_keep_the_types_a_reader_infers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![quiver_tests::driver_row(1, now - HOUR, 0.5, 3)]).await.unwrap();
    let t = format_timestamp(now);
    let spine = format!(
        "driver_id,event_timestamp,trips,rating,churned,segment\n1,{t},3,4.5,true,gold\n2,{t},-7,1e-3,false,\n1,{t},,2,FALSE,12\n"
    );
    let spine_file = dir.path().join("spine.csv");
    std::fs::write(&spine_file, spine).unwrap();
    let out_file = dir.path().join("train.parquet");
    let args = [
        "--project",
        "rides",
        "history",
        "--vector",
        "driver_model_v1",
        "--spine",
        spine_file.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ];
    let out = quiverctl(&node.endpoint(), &args, None);
    assert!(out.success, "{}", out.stderr);
    let train = read_out(&out_file);
    let types: Vec<(String, DataType)> = ["driver_id", "trips", "rating", "churned", "segment"]
        .iter()
        .map(|n| (n.to_string(), train.schema().field_with_name(n).unwrap().data_type().clone()))
        .collect();
    let expected = [
        ("driver_id", DataType::Int64),
        ("trips", DataType::Int64),
        ("rating", DataType::Float64),
        ("churned", DataType::Boolean),
        ("segment", DataType::Utf8),
    ];
    assert_eq!(types, expected.map(|(n, t)| (n.to_string(), t)));
    let trips: Vec<Option<i64>> = train.column_by_name("trips").unwrap().as_primitive::<Int64Type>().iter().collect();
    assert_eq!(trips, vec![Some(3), Some(-7), None]);
    let rating: Vec<Option<f64>> =
        train.column_by_name("rating").unwrap().as_primitive::<Float64Type>().iter().collect();
    assert_eq!(rating, vec![Some(4.5), Some(0.001), Some(2.0)]);
    let churned: Vec<Option<bool>> = train.column_by_name("churned").unwrap().as_boolean().iter().collect();
    assert_eq!(churned, vec![Some(true), Some(false), Some(false)]);
    let segment: Vec<Option<&str>> = train.column_by_name("segment").unwrap().as_string::<i32>().iter().collect();
    assert_eq!(segment, vec![Some("gold"), None, Some("12")]);
    drop(node);
}

/// `9999-12-31T23:59:59Z`: a row stamped so would win every later write by event time.
const END_OF_TIME: i64 = 253_402_300_799 * MICROS_PER_SEC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_materialize_refuse_rows_further_ahead_than_the_allowed_skew() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    // A node that allows any skew takes the far-future row into its offline store.
    std::fs::write(&config, "[ingest]\nmax_future_ms = 9223372036854775807\n").unwrap();
    let (mut node, client) = node_with_rides_env(dir.path(), &["--config", config.to_str().unwrap()], &[]).await;
    let now = now_micros();
    let early = dir.path().join("early.csv");
    std::fs::write(&early, csv_of(&[(1, now - HOUR, 0.1, 1), (2, END_OF_TIME, 0.2, 2)])).unwrap();
    ingest(&client, early.to_str().unwrap()).await.unwrap();

    // With the default skew of one day, the same kind of row is refused, the file whole.
    std::fs::write(&config, "").unwrap();
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    let files_before = client.files("rides", "driver_stats").await.unwrap();
    let late = dir.path().join("late.csv");
    std::fs::write(&late, csv_of(&[(3, now - HOUR, 0.3, 3), (4, END_OF_TIME, 0.4, 4)])).unwrap();
    let err = ingest(&client, late.to_str().unwrap()).await.unwrap_err().to_string();
    assert!(
        err.contains("late.csv") && err.contains("row 2, field 'event_timestamp'") && err.contains("9999-12-31"),
        "{err}"
    );
    assert_eq!(client.files("rides", "driver_stats").await.unwrap(), files_before, "nothing committed");
    assert_eq!(online(&client, 3).await, (Value::Null, Value::Null), "nothing upserted");
    let ahead = dir.path().join("ahead.csv");
    std::fs::write(&ahead, csv_of(&[(3, now + 12 * HOUR, 0.3, 3)])).unwrap();
    assert_eq!(ingest(&client, ahead.to_str().unwrap()).await.unwrap().rows, 1, "within the skew");
    assert_eq!(online(&client, 3).await, (Value::Float64(0.3), Value::Int64(3)));

    // Materializing a window that holds the far-future row is refused; one before it is not.
    let err = client.materialize("rides", "driver_stats", (None, None), |_| {}).await.unwrap_err().to_string();
    assert!(err.contains("field 'event_timestamp'") && err.contains("9999-12-31"), "{err}");
    let before = client.materialize("rides", "driver_stats", (None, Some(now + 24 * HOUR)), |_| {}).await.unwrap();
    assert_eq!(before.entities_written, 2);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spines_are_refused_before_any_work_and_an_empty_one_gives_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![quiver_tests::driver_row(1, now - HOUR, 0.5, 3)]).await.unwrap();
    let t = format_timestamp(now);
    let history = |spine: String, name: &str| {
        let spine_file = dir.path().join(format!("{name}.csv"));
        std::fs::write(&spine_file, spine).unwrap();
        let out_file = dir.path().join(format!("{name}.parquet"));
        let args = ["--project", "rides", "history", "--vector", "driver_model_v1", "--spine"];
        let args = [&args[..], &[spine_file.to_str().unwrap(), "--out", out_file.to_str().unwrap()]].concat();
        (quiverctl(&node.endpoint(), &args, None), out_file)
    };
    let refused = [
        ("keys", format!("driver_id,event_timestamp\n1,{t}\nx,{t}\n"), "row 2, field 'driver_id'"),
        ("time", format!("driver_id,at\n1,{t}\n"), "no column 'event_timestamp'"),
        ("null_time", "driver_id,event_timestamp\n1,\n".to_string(), "row 1, field 'event_timestamp'"),
        ("twice", format!("driver_id,event_timestamp,label\n1,{t},a\n2,{t},a\n1,{t},a\n"), "rows 1 and 3"),
        ("clash", format!("driver_id,event_timestamp,driver_stats:conv_rate\n1,{t},0.1\n"), "'driver_stats:conv_rate'"),
    ];
    for (name, spine, says) in refused {
        let (out, file) = history(spine, name);
        assert!(!out.success && out.stderr.contains(says), "{name}: {}", out.stderr);
        assert!(!file.exists(), "{name}: no file is written for a refused spine");
    }
    // No rows: an empty file with the answer's columns.
    let (out, file) = history("driver_id,event_timestamp,label\n".to_string(), "empty");
    assert!(out.success, "{}", out.stderr);
    let empty = quiver_offline::files::read_parquet(bytes::Bytes::from(std::fs::read(&file).unwrap()), None).unwrap();
    assert_eq!(empty.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let full = history(format!("driver_id,event_timestamp,label\n1,{t},x\n"), "one").1;
    let names = |f: &std::path::Path| {
        let bytes = bytes::Bytes::from(std::fs::read(f).unwrap());
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        builder.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&file), names(&full), "the empty file has the answer's columns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_streams_in_batches_that_make_the_whole_set() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let now = now_micros();
    exported_drivers(&client, 1_000, now - HOUR).await;
    // 200,000 spine rows with a long label: tens of MB, so several messages.
    let mut spine = String::from("driver_id,event_timestamp,label\n");
    for i in 0..200_000i64 {
        spine += &format!("{},{},{}\n", i % 1_000, now - i, "x".repeat(100));
    }
    let request = || {
        HistoricalRequest::new(
            "rides",
            FeatureSelection::Vector("driver_model_v1".into()),
            Spine::Csv(spine.clone().into_bytes()),
        )
    };
    let mut stream = client.historical_stream(request(), |_| {}).await.unwrap();
    assert_eq!(stream.rows(), 200_000);
    // The phases are named as `TrainingSetStream::phases` documents them, in order.
    let phases: Vec<&str> = stream.phases().iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(phases, ["spine", "read", "join", "features"]);
    let schema = stream.schema();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.unwrap());
    }
    assert!(batches.len() > 1, "the answer came in {} batches", batches.len());
    let streamed = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    assert_eq!(streamed, client.historical(request()).await.unwrap(), "streamed or whole, the same set");
    let first = streamed.column_by_name("driver_id").unwrap().as_primitive::<Int64Type>();
    assert_eq!(first.values()[..3], [0, 1, 2], "in spine order");
}

/// Writes drivers 0..`count`, each with conv_rate id / 1000 at `at`, and waits until the
/// rows are exported: answers then read the same files.
async fn exported_drivers(client: &Client, count: i64, at: i64) {
    let rows: Vec<_> = (0..count).map(|id| quiver_tests::driver_row(id, at, id as f64 / 1000.0, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.files("rides", "driver_stats").await.unwrap().iter().map(|f| f.rows).sum::<u64>() < count as u64 {
        assert!(std::time::Instant::now() < deadline, "the rows were never exported");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_larger_than_its_memory_spills_and_gives_the_same_answer() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[offline]\nretrieval_memory = \"256KiB\"\n").unwrap();
    let (_node, client) = node_with_rides_env(dir.path(), &["--config", config.to_str().unwrap()], &[]).await;
    let now = now_micros();
    exported_drivers(&client, 5_000, now - HOUR).await;
    // The spine's 20,000 rows take about 1.4 MB in the join, over five times the budget: it
    // is partitioned. Drivers from 5,000 have no rows.
    let spine: Vec<(i64, i64)> = (0..20_000i64).map(|i| (i % 6_000, now - i)).collect();
    let request = HistoricalRequest::new(
        "rides",
        FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
        spine_batches(&spine),
    );
    let mut stream = client.historical_stream(request, |_| {}).await.unwrap();
    let memory = stream.memory();
    assert!(memory.partitions > 1 && memory.spilled_bytes > 0 && memory.peak_bytes <= 256 << 10, "{memory:?}");
    let schema = stream.schema();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.unwrap());
    }
    let answer = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    let rates = answer.column_by_name("driver_stats:conv_rate").unwrap().as_primitive::<Float64Type>();
    let got: Vec<Option<f64>> = rates.iter().collect();
    let expected: Vec<Option<f64>> = spine.iter().map(|(id, _)| (*id < 5_000).then(|| *id as f64 / 1000.0)).collect();
    assert_eq!(got, expected, "every spine row, in order, with its driver's value or none");
    let spill = dir.path().join("node/spill");
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0, "no spill file is left behind");
}

/// A CSV of `rows` rows over 1,000 drivers, the hours before `now` in order, conv_rate
/// row / 10^6; `bad` names a row whose conv_rate is not a number.
fn big_csv(rows: usize, now: i64, bad: Option<usize>) -> String {
    let mut csv = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    for row in 1..=rows {
        let rate = if Some(row) == bad { "high".to_string() } else { format!("{}", row as f64 / 1e6) };
        let at = format_timestamp(now - HOUR + row as i64);
        csv += &format!("{},{at},{rate},0.5,{row},c\n", row % 1000);
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_larger_than_a_chunk_is_checked_whole_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides_env(dir.path(), &[], &[]).await;
    let now = now_micros();
    let sources = dir.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let rows = 100_000;
    std::fs::write(sources.join("a.csv"), csv_of(&events(now))).unwrap();
    // The bad row is in the second chunk of the second file.
    std::fs::write(sources.join("b.csv"), big_csv(rows, now, Some(70_001))).unwrap();
    let error = ingest(&client, sources.to_str().unwrap()).await.unwrap_err().to_string();
    assert!(error.contains("b.csv") && error.contains("row 70001, field 'conv_rate'"), "{error}");
    assert!(client.files("rides", "driver_stats").await.unwrap().is_empty(), "no file was committed");
    assert_eq!(online(&client, 1).await.0, Value::Null, "nothing reached the online store");
    let spill = dir.path().join("node/spill");
    let left = std::fs::read_dir(&spill).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no staged file is left behind");

    std::fs::write(sources.join("b.csv"), big_csv(rows, now, None)).unwrap();
    let report = ingest(&client, sources.to_str().unwrap()).await.unwrap();
    assert_eq!(report.rows, (rows + events(now).len()) as u64);
    // Driver 7's latest row of b.csv is its last one, in the last chunk.
    let last = (rows / 1000 - 1) * 1000 + 7;
    assert_eq!(online(&client, 7).await, (Value::Float64(last as f64 / 1e6), Value::Int64(last as i64)));
    let files = client.files("rides", "driver_stats").await.unwrap();
    assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), report.rows);
}
