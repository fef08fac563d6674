//! Rows pushed online reach the offline store exactly once, even when the node dies at
//! each step of an export (write files → commit to the manifest → trim the queue).

use std::time::{Duration, Instant};

use quiver_client::Client;
use quiver_tests::{LocalNode, driver_row, node_with_rides_env, now_micros, read_drivers};

const ROWS: i64 = 300;

async fn offline_rows(client: &Client) -> u64 {
    client.files("rides", "driver_stats").await.unwrap().iter().map(|f| f.rows).sum()
}

/// Waits until the manifest holds `expected` rows, then a few more export rounds, and
/// checks it still holds exactly that many.
async fn settle(client: &Client, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while offline_rows(client).await < expected {
        assert!(Instant::now() < deadline, "export did not finish: {} of {expected} rows", offline_rows(client).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(offline_rows(client).await, expected, "no row exported twice");
}

fn config(dir: &std::path::Path, export_interval_ms: u64) -> String {
    let path = dir.join("quiver.toml");
    std::fs::write(&path, format!("[workers]\nexport_interval_ms = {export_interval_ms}\n")).unwrap();
    path.display().to_string()
}

async fn push(client: &Client, ts: i64) {
    let rows = (0..ROWS).map(|id| driver_row(id, ts, id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
}

/// Every driver's offline row at `ts` equals what was pushed.
async fn check_history(client: &Client, ts: i64) {
    let mut csv = String::from("driver_id,event_timestamp\n");
    for id in 0..ROWS {
        csv += &format!("{id},{}\n", quiver_core::time::format_timestamp(ts + 1));
    }
    let batch = client
        .historical(quiver_client::HistoricalRequest::new(
            "rides",
            quiver_client::FeatureSelection::Refs(vec!["driver_stats:avg_daily_trips".into()]),
            quiver_client::Spine::Csv(csv.into_bytes()),
        ))
        .await
        .unwrap();
    use arrow_array::cast::AsArray;
    let trips = batch.column(2).as_primitive::<arrow_array::types::Int64Type>();
    for id in 0..ROWS {
        assert_eq!(trips.value(id as usize), id, "driver {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_rows_reach_the_offline_store_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 100);
    let (_node, client) = node_with_rides_env(dir.path(), &["--config", &config], &[]).await;
    let ts = now_micros();
    push(&client, ts).await;
    settle(&client, ROWS as u64).await;
    check_history(&client, ts).await;
    // Online and offline agree.
    let online = read_drivers(&client, [7]).await;
    assert_eq!(online.rows[0][2].value, quiver_client::Value::Int64(7));
}

async fn crash_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Rows are pushed and acknowledged while no export runs; then the node restarts with
    // the crash point armed and dies in its first export.
    let config = config(dir.path(), 3_600_000);
    let (mut node, client): (LocalNode, Client) = node_with_rides_env(dir.path(), &["--config", &config], &[]).await;
    let ts = now_micros();
    push(&client, ts).await;
    self::config(dir.path(), 100);
    node.set_env(vec![("QUIVER_FAILPOINT".to_string(), point.to_string())]);
    node.respawn().unwrap();
    let status = node.wait_for_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success(), "the node died at {point}");
    node.set_env(Vec::new());
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    settle(&client, ROWS as u64).await;
    check_history(&client, ts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_writing_files_loses_and_duplicates_nothing() {
    crash_at("export-after-write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_manifest_commit_loses_and_duplicates_nothing() {
    crash_at("export-after-commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_trimming_the_queue_loses_and_duplicates_nothing() {
    crash_at("export-after-ack").await;
}
