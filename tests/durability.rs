//! Acknowledged writes survive `kill -9` of the node, with and without log compaction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use quiver_client::{Freshness, Value};
use quiver_tests::{driver_row, node_with_rides, now_micros, read_drivers};

const BATCH: i64 = 50;

/// Pushes batches of fresh rows until stopped; records which batches were acknowledged.
async fn write_until_killed(
    client: quiver_client::Client,
    acked: Arc<Mutex<Vec<i64>>>,
    attempted: Arc<Mutex<Vec<i64>>>,
    ts: i64,
) {
    for batch in 0.. {
        let rows = (0..BATCH).map(|i| driver_row(batch * BATCH + i, ts, batch as f64, batch)).collect();
        attempted.lock().unwrap().push(batch);
        if client.write("rides", "driver_stats", rows).await.is_err() {
            return;
        }
        acked.lock().unwrap().push(batch);
    }
}

async fn kill_mid_push_and_check(extra: &[&str], batches_before_kill: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client) = node_with_rides(dir.path(), extra).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let attempted = Arc::new(Mutex::new(Vec::new()));
    let ts = now_micros();
    let writer = tokio::spawn(write_until_killed(client, acked.clone(), attempted.clone(), ts));
    while acked.lock().unwrap().len() < batches_before_kill {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.kill_9().unwrap();
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acked.len() >= batches_before_kill);

    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    let ids = 0..(attempted.len() as i64 * BATCH);
    let answer = read_drivers(&client, ids.clone()).await;
    let conv = answer.features.iter().position(|f| f == "driver_stats:conv_rate").unwrap();
    let trips = answer.features.iter().position(|f| f == "driver_stats:avg_daily_trips").unwrap();
    let mut present_by_batch: BTreeMap<i64, usize> = BTreeMap::new();
    for (id, row) in ids.zip(&answer.rows) {
        let batch = id / BATCH;
        match row[conv].status {
            Freshness::Present => {
                // A row that is there is whole: every value is the one written.
                assert_eq!(row[conv].value, Value::Float64(batch as f64), "driver {id}");
                assert_eq!(row[trips].value, Value::Int64(batch), "driver {id}");
                assert_eq!(row[conv].event_ts, Some(ts));
                *present_by_batch.entry(batch).or_default() += 1;
            }
            status => assert!(!acked.contains(&batch), "driver {id} of acknowledged batch {batch} is {status:?}"),
        }
    }
    for batch in &acked {
        assert_eq!(present_by_batch.get(batch), Some(&(BATCH as usize)), "acknowledged batch {batch} is incomplete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_push_loses_no_acknowledged_row() {
    kill_mid_push_and_check(&[], 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_snapshots_and_log_purges_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[raft]\nsnapshot_every = 5\nlogs_to_keep = 0\n").unwrap();
    kill_mid_push_and_check(&["--config", config.to_str().unwrap()], 80).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_the_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client) = node_with_rides(dir.path(), &[]).await;
    let ts = now_micros();
    let rows = (0..200).map(|id| driver_row(id, ts, 0.5, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    assert!(node.terminate().unwrap(), "quiver-node exits 0 on SIGTERM");
    node.restart().await.unwrap();
    let answer = read_drivers(&node.client().await.unwrap(), 0..200).await;
    assert!(answer.rows.iter().all(|r| r.iter().all(|v| v.status == Freshness::Present)));
    let projects = node.client().await.unwrap().projects().await.unwrap();
    assert_eq!(projects, vec!["rides".to_string()], "the registry survives too");
}

/// Writers of one row per request, many at once: the leader commits their writes together
/// (several per log entry, one fsync for them), and every write acknowledged before a
/// kill -9 is there after it, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_amid_64_single_row_writers_loses_no_acknowledged_row() {
    const WRITERS: i64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client) = node_with_rides(dir.path(), &["--shards", "1"]).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let ts = now_micros();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (client, acked) = (client.clone(), acked.clone());
        writers.spawn(async move {
            for id in (writer..).step_by(WRITERS as usize) {
                let row = driver_row(id, ts, id as f64, id);
                if client.write("rides", "driver_stats", vec![row]).await.is_err() {
                    return id;
                }
                acked.lock().unwrap().push(id);
            }
            unreachable!("writes go on until the node is killed")
        });
    }
    while acked.lock().unwrap().len() < 3_000 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let writes = quiver_tests::group_gauge(&metrics, "quiver_raft_committed_writes", 1);
    let entries = quiver_tests::group_gauge(&metrics, "quiver_raft_commit_entries", 1);
    // Counted once the new cluster is at its cluster version (a second after it starts), when
    // writes begin to share entries.
    assert!(writes > 0 && entries < writes, "{writes} writes in {entries} entries: none shared an entry");
    node.kill_9().unwrap();
    let mut first_unacked = Vec::new();
    while let Some(stopped_at) = writers.join_next().await {
        first_unacked.push(stopped_at.unwrap());
    }
    let acked = acked.lock().unwrap().clone();

    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    let answer = read_drivers(&client, acked.iter().chain(&first_unacked).copied()).await;
    let conv = answer.features.iter().position(|f| f == "driver_stats:conv_rate").unwrap();
    let trips = answer.features.iter().position(|f| f == "driver_stats:avg_daily_trips").unwrap();
    for (i, (id, row)) in acked.iter().chain(&first_unacked).zip(&answer.rows).enumerate() {
        // What was never acknowledged may or may not be there, but only whole.
        if i < acked.len() || row[conv].status == Freshness::Present {
            assert_eq!(row[conv].status, Freshness::Present, "acknowledged driver {id}");
            assert_eq!(row[conv].value, Value::Float64(*id as f64), "driver {id}");
            assert_eq!(row[trips].value, Value::Int64(*id), "driver {id}");
        }
    }
}
