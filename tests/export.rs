//! Rows pushed online reach the offline store exactly once, even when the node dies at
//! each step of an export (write files → commit to the manifest → trim the queue).

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use quiver_client::{Client, Value};
use quiver_tests::{LocalNode, driver_history, driver_row, node_with_rides_env, now_micros, quiverctl, read_drivers};

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
    let trips = history(client, ts, "avg_daily_trips").await;
    let trips = trips.as_primitive::<arrow_array::types::Int64Type>();
    for id in 0..ROWS {
        assert_eq!(trips.value(id as usize), id, "driver {id}");
    }
}

/// Feature `feature` of drivers 0..ROWS as of just after `ts`, from a training set.
async fn history(client: &Client, ts: i64, feature: &str) -> arrow_array::ArrayRef {
    driver_history(client, feature, &(0..ROWS).collect::<Vec<_>>(), ts + 1).await
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
    assert_eq!(online.rows[0][2].value, Value::Int64(7));
}

/// A writer that waits for its rows' export sees them in the next training set, even when
/// export batches are smaller than a shard's part of one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_until_its_rows_are_in_training_sets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiver.toml");
    std::fs::write(&path, "[workers]\nexport_interval_ms = 1000\nexport_batch_rows = 7\n").unwrap();
    let config = path.display().to_string();
    let (_node, client) = node_with_rides_env(dir.path(), &["--config", &config], &[]).await;
    let ts = now_micros();
    for trips in [1, 2] {
        let rows = (0..ROWS).map(|id| driver_row(id, ts + trips, id as f64, id * trips)).collect();
        let written = client.write("rides", "driver_stats", rows).await.unwrap();
        assert!(written.shard_log_index.len() > 1, "the write spans shards: {written:?}");
        client.wait_for_export(&written, Duration::from_secs(30)).await.unwrap();
        let offline = history(&client, ts + trips, "avg_daily_trips").await;
        let offline = offline.as_primitive::<arrow_array::types::Int64Type>();
        assert!((0..ROWS).all(|id| offline.value(id as usize) == id * trips), "write {trips}: {offline:?}");
    }
    // A shard the write never touched is not waited for; one whose part is not exported is.
    let mut unwritten = client.write("rides", "driver_stats", vec![]).await.unwrap();
    client.wait_for_export(&unwritten, Duration::ZERO).await.unwrap();
    unwritten.shard_log_index.insert(1, u64::MAX);
    let err = client.wait_for_export(&unwritten, Duration::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("shard 1 exported"), "{err}");
}

/// Rows written again at the same event time after a split win over the earlier ones, in
/// both halves, online (also after a restart) and in a training set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_an_equal_event_time_wins_after_a_split() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 100);
    let (mut node, client) = node_with_rides_env(dir.path(), &["--config", &config, "--shards", "1"], &[]).await;
    let ts = now_micros();
    let write = |conv_rate: f64| {
        let rows = (0..ROWS).map(|id| driver_row(id, ts, conv_rate, id)).collect();
        client.write("rides", "driver_stats", rows)
    };
    for _ in 0..3 {
        write(2.0).await.unwrap();
    }
    let out = quiverctl(&node.endpoint(), &["shard", "split", "1"], None);
    assert!(out.success && out.stdout.contains("done"), "{}{}", out.stdout, out.stderr);
    write(3.0).await.unwrap();
    let every_one_is_3 = |answer: quiver_client::OnlineFeatures| {
        let column = answer.features.iter().position(|f| f.ends_with("conv_rate")).unwrap();
        let values: Vec<&Value> = answer.rows.iter().map(|row| &row[column].value).collect();
        assert!(values.iter().all(|v| **v == Value::Float64(3.0)), "{values:?}");
    };
    every_one_is_3(read_drivers(&client, 0..ROWS).await);
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    every_one_is_3(read_drivers(&client, 0..ROWS).await);
    settle(&client, 4 * ROWS as u64).await;
    let offline = history(&client, ts, "conv_rate").await;
    let offline = offline.as_primitive::<arrow_array::types::Float64Type>();
    assert!(offline.iter().all(|v| v == Some(3.0)), "{offline:?}");
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

/// A request sent again after a split, whole and as the part a client would send to the new
/// shard, adds no row online or offline: rows are de-duplicated by request id and position,
/// not by the shard they were sent to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_retried_after_a_split_applies_once() {
    use quiver_proto::v1::WriteFeaturesRequest;
    use quiver_proto::v1::feature_service_client::FeatureServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 100);
    let (node, client) = node_with_rides_env(dir.path(), &["--config", &config, "--shards", "1"], &[]).await;
    let ts = now_micros();
    let rows: Vec<_> = (0..ROWS).map(|id| quiver_proto::row_to_proto(driver_row(id, ts, id as f64, id))).collect();
    let request = |positions: Vec<u32>| WriteFeaturesRequest {
        project: "rides".into(),
        feature_set: "driver_stats".into(),
        rows: positions.iter().map(|p| rows[*p as usize].clone()).collect(),
        route: None,
        request_id: b"one-request".to_vec(),
        row_positions: positions,
    };
    let mut raw = FeatureServiceClient::connect(node.endpoint()).await.unwrap();
    let all: Vec<u32> = (0..ROWS as u32).collect();
    raw.write_features(request(all.clone())).await.unwrap();
    let out = quiverctl(&node.endpoint(), &["shard", "split", "1"], None);
    assert!(out.success && out.stdout.contains("done"), "{}{}", out.stdout, out.stderr);

    // The part for the new shard, then the whole request, again.
    let map = client.shard_map().await.unwrap();
    let child = map.shard_map.shards.iter().map(|s| s.id).max().unwrap();
    let moved: Vec<u32> = all
        .iter()
        .copied()
        .filter(|id| {
            let hash = quiver_core::key::key_hash(&quiver_core::key::encode_entity_key(&[Value::Int64(*id as i64)]));
            map.shard_map.shard_for(hash).unwrap().id == child
        })
        .collect();
    assert!(!moved.is_empty() && moved.len() < all.len(), "the split moved some drivers: {}", moved.len());
    raw.write_features(request(moved)).await.unwrap();
    raw.write_features(request(all)).await.unwrap();
    // A row not written before, under the same id, still applies.
    let mut late = request(vec![]);
    late.rows = vec![quiver_proto::row_to_proto(driver_row(ROWS, ts, 1.0, 1))];
    late.row_positions = vec![ROWS as u32];
    raw.write_features(late).await.unwrap();

    settle(&client, ROWS as u64 + 1).await;
    check_history(&client, ts).await;
    let online = read_drivers(&client, 0..=ROWS).await;
    assert!(online.rows.iter().all(|row| row.iter().all(|v| v.status == quiver_client::Freshness::Present)));
}
