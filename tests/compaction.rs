//! Compaction merges a day's small files into one, answers stay identical, replaced files
//! are deleted after their grace period, and a crash at either step loses or doubles nothing.

use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use quiver_client::{Client, FeatureSelection, HistoricalRequest, Spine};
use quiver_core::time::{MICROS_PER_SEC, format_timestamp};
use quiver_tests::{LocalNode, node_with_rides_env, now_micros};

const HOUR: i64 = 3600 * MICROS_PER_SEC;

/// (driver, ts, rate) rows of source `n`: all on the same day, interleaving with other sources.
fn rows(n: i64, day_start: i64) -> Vec<(i64, i64, f64)> {
    (1..=5).map(|d| (d, day_start + (d + n * 3) * HOUR, n as f64 + d as f64 / 10.0)).collect()
}

fn csv(rows: &[(i64, i64, f64)]) -> String {
    let mut out = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    for (d, ts, rate) in rows {
        out += &format!("{d},{},{rate},0.5,{d},x\n", format_timestamp(*ts));
    }
    out
}

fn spine(day_start: i64) -> Vec<(i64, i64)> {
    (0..=6).flat_map(|d| (0..24).step_by(2).map(move |h| (d, day_start + h * HOUR))).collect()
}

fn expected(all: &[(i64, i64, f64)], spine: &[(i64, i64)]) -> Vec<Option<f64>> {
    spine.iter().map(|(d, t)| all.iter().filter(|r| r.0 == *d && r.1 <= *t).max_by_key(|r| r.1).map(|r| r.2)).collect()
}

async fn history(client: &Client, spine: &[(i64, i64)]) -> Vec<Option<f64>> {
    let mut text = String::from("driver_id,event_timestamp\n");
    for (d, t) in spine {
        text += &format!("{d},{}\n", format_timestamp(*t));
    }
    let batch = client
        .historical(HistoricalRequest {
            short_names: true,
            ..HistoricalRequest::new(
                "rides",
                FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
                Spine::Csv(text.into_bytes()),
            )
        })
        .await
        .unwrap();
    let rate = batch.column(2).as_primitive::<Float64Type>();
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().len(), spine.len());
    (0..rate.len()).map(|i| (!rate.is_null(i)).then(|| rate.value(i))).collect()
}

async fn file_count(client: &Client) -> (usize, u64) {
    let files = client.files("rides", "driver_stats").await.unwrap();
    (files.len(), files.iter().map(|f| f.rows).sum())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path.display().to_string());
        }
    }
    out
}

async fn start(dir: &std::path::Path, env: &[(String, String)]) -> (LocalNode, Client) {
    let config = dir.join("quiver.toml");
    let settings = "[workers]\ncompaction_interval_ms = 100\ncompaction_min_files = 3\ncompaction_grace_ms = 300\n";
    std::fs::write(&config, settings).unwrap();
    node_with_rides_env(dir, &["--config", config.to_str().unwrap()], env).await
}

/// Ingests source `n`; returns its rows and whether the call succeeded.
async fn try_ingest(client: &Client, dir: &std::path::Path, n: i64, day: i64) -> (Vec<(i64, i64, f64)>, bool) {
    let source = rows(n, day);
    let path = dir.join(format!("source-{n}.csv"));
    std::fs::write(&path, csv(&source)).unwrap();
    let ok = client.ingest("rides", "driver_stats", path.to_str().unwrap(), |_| {}).await.is_ok();
    (source, ok)
}

async fn ingest_source(client: &Client, dir: &std::path::Path, n: i64, day: i64) -> Vec<(i64, i64, f64)> {
    let (source, ok) = try_ingest(client, dir, n, day).await;
    assert!(ok, "ingest of source {n} failed");
    source
}

fn yesterday() -> i64 {
    let day = 24 * HOUR;
    (now_micros() / day - 1) * day
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_of_a_day_are_merged_and_answers_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = start(dir.path(), &[]).await;
    let day = yesterday();
    let spine = spine(day);
    let mut all = ingest_source(&client, dir.path(), 0, day).await;
    all.extend(ingest_source(&client, dir.path(), 1, day).await);
    assert_eq!(file_count(&client).await, (2, 10), "below the threshold: left alone");
    assert_eq!(history(&client, &spine).await, expected(&all, &spine));

    all.extend(ingest_source(&client, dir.path(), 2, day).await);
    wait_for("compaction", async || file_count(&client).await.0 == 1).await;
    assert_eq!(file_count(&client).await, (1, 15), "every row kept, once");
    assert_eq!(history(&client, &spine).await, expected(&all, &spine));
    let offline = dir.path().join("node/offline");
    wait_for("garbage collection", async || parquet_files(&offline).len() == 1).await;
    assert!(parquet_files(&offline)[0].contains("compact-"));
}

async fn crash_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("QUIVER_FAILPOINT".to_string(), point.to_string())];
    let (mut node, client) = start(dir.path(), &env).await;
    let day = yesterday();
    let mut all = ingest_source(&client, dir.path(), 0, day).await;
    all.extend(ingest_source(&client, dir.path(), 1, day).await);
    // The third file triggers the compaction that dies: the node may go down before this
    // ingest's answer arrives, but only after its files were committed.
    all.extend(try_ingest(&client, dir.path(), 2, day).await.0);
    assert!(!node.wait_for_exit(Duration::from_secs(30)).await.unwrap().success(), "died at {point}");
    node.set_env(Vec::new());
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    wait_for("compaction", async || file_count(&client).await.0 == 1).await;
    assert_eq!(file_count(&client).await, (1, 15));
    let spine = spine(day);
    assert_eq!(history(&client, &spine).await, expected(&all, &spine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_writing_the_merged_file_loses_and_doubles_nothing() {
    crash_at("compaction-after-write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_swap_loses_and_doubles_nothing() {
    crash_at("compaction-after-commit").await;
}
