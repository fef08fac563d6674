//! Three real `quiver-node` processes on loopback: they form one cluster from the same
//! `--initial-cluster` list, replicate every group three ways, and keep every acknowledged
//! write when the leader is killed with SIGKILL.

use std::time::{Duration, Instant};

use quiver_admin::local_node::free_addrs;
use quiver_client::{Client, Consistency, FeatureSelection, Freshness, GroupKind, OnlineRequest, Value};
use quiver_tests::recipe::{Recipe, readme_block};
use quiver_tests::{LocalNode, RIDES, crashed, driver_history, driver_key, driver_row, now_micros, read_drivers};

const READY: Duration = Duration::from_secs(60);

async fn form_cluster(dir: &std::path::Path) -> Vec<LocalNode> {
    form_cluster_env(dir, &[]).await
}

/// `form_cluster` with extra environment variables for every node.
async fn form_cluster_env(dir: &std::path::Path, env: &[(String, String)]) -> Vec<LocalNode> {
    LocalNode::start_cluster(dir, 3, &["--shards", "4"], env, READY).await.unwrap()
}

/// One driver's conv_rate as `node` answers it.
async fn conv_rate(client: &Client, driver: i64, consistency: Consistency) -> Option<Value> {
    let request = OnlineRequest {
        project: "rides".into(),
        features: FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
        entities: vec![driver_key(driver)],
        consistency,
    };
    let answer = client.get_online(request).await.ok()?;
    let value = &answer.rows[0][0];
    (value.status == Freshness::Present).then(|| value.value.clone())
}

/// Waits until `client` answers every driver of `ids` with `rate(id)` from its own replica.
async fn replica_has(client: &Client, ids: impl Iterator<Item = i64> + Clone, rate: impl Fn(i64) -> f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut missing = 0;
        for id in ids.clone() {
            if conv_rate(client, id, Consistency::Stale).await != Some(Value::Float64(rate(id))) {
                missing += 1;
            }
        }
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{} still misses {missing} rows", client.endpoint());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn write_one_by_one(client: &Client, ids: std::ops::Range<i64>, rate: impl Fn(i64) -> f64) {
    let ts = now_micros();
    for id in ids {
        client.write("rides", "driver_stats", vec![driver_row(id, ts, rate(id), id)]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_and_replicate_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = form_cluster(dir.path()).await;
    let status = nodes[1].client().await.unwrap().status().await.unwrap();
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(status.groups.len(), 5, "meta group and four shards on every node");
    for g in &status.groups {
        assert_eq!(g.voters, vec![1, 2, 3], "group {}", g.group_id);
        assert!(g.leader.is_some(), "group {}", g.group_id);
    }
    // The meta group's leader reports how far each replica is behind it.
    let meta_leader = status.groups[0].leader.unwrap() as usize;
    let from_leader = nodes[meta_leader - 1].client().await.unwrap().status().await.unwrap();
    let replicas: Vec<u64> = from_leader.groups[0].replicas.iter().map(|r| r.node_id).collect();
    assert_eq!(replicas, vec![1, 2, 3], "{from_leader:?}");
    // Every node, leader or not, says which nodes are up as the metadata leader sees them.
    for node in &nodes {
        let status = node.client().await.unwrap().status().await.unwrap();
        assert_eq!(status.liveness_from, Some(meta_leader as u64), "through node {}", status.node_id);
        let up: Vec<Option<bool>> = status.nodes.iter().map(|n| status.up(n)).collect();
        assert_eq!(up, vec![Some(true); 3], "through node {}", status.node_id);
    }
    // Any node takes requests: followers redirect to the leader.
    let defs = quiver_client::Definitions::from_yaml(RIDES).unwrap();
    nodes[2].client().await.unwrap().apply(&defs).await.unwrap();
    let writer = nodes[1].client().await.unwrap();
    write_one_by_one(&writer, 0..30, |id| id as f64 / 10.0).await;
    for node in &nodes {
        replica_has(&node.client().await.unwrap(), 0..30, |id| id as f64 / 10.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_keeps_every_acknowledged_write_and_the_node_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = form_cluster(dir.path()).await;
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();

    // Four writers keep writing new drivers, one row per request, through the kill; each
    // remembers which writes were acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4i64 {
        let (client, stop) = (client.clone(), stop.clone());
        writers.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut id = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let row = driver_row(id, now_micros(), id as f64, id);
                if client.write("rides", "driver_stats", vec![row]).await.is_ok() {
                    acknowledged.push(id);
                }
                id += 4;
            }
            acknowledged
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = client.status().await.unwrap();
    let leader = status.groups.iter().find(|g| g.group_id == 1).and_then(|g| g.leader).unwrap();
    let victim = (leader - 1) as usize;
    nodes[victim].kill_9().unwrap();
    let survivor = (victim + 1) % 3;
    nodes[survivor].wait_ready(READY).await.unwrap();
    let client = nodes[survivor].client().await.unwrap();
    // Writes resume: new drivers are acknowledged after the kill.
    write_one_by_one(&client, 100_000..100_020, |id| id as f64).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    while let Some(ids) = writers.join_next().await {
        acknowledged.extend(ids.unwrap());
    }
    assert!(acknowledged.len() > 20, "the writers made progress: {}", acknowledged.len());

    // Every acknowledged write is there, read linearizably through the new leaders.
    for id in acknowledged.iter().copied().chain(100_000..100_020) {
        assert_eq!(
            conv_rate(&client, id, Consistency::Linearizable).await,
            Some(Value::Float64(id as f64)),
            "driver {id}"
        );
    }
    // The killed node catches up when it returns.
    nodes[victim].restart().await.unwrap();
    let all = acknowledged.into_iter().chain(100_000..100_020).collect::<Vec<_>>();
    replica_has(&nodes[victim].client().await.unwrap(), all.into_iter(), |id| id as f64).await;
}

/// Waits until `client`'s node sees a leader other than `not` for every group.
async fn leaders_move_away_from(client: &Client, not: u64) {
    let deadline = Instant::now() + READY;
    loop {
        if let Ok(status) = client.status().await
            && status.groups.iter().all(|g| g.leader.is_some_and(|l| l != not))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no new leaders without node {not}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_never_serves_a_stale_linearizable_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = form_cluster(dir.path()).await;
    let first = nodes[0].client().await.unwrap();
    first.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    write_one_by_one(&first, 0..8, |_| 1.0).await;
    let leader = first.status().await.unwrap().groups[0].leader.unwrap();
    let paused = (leader - 1) as usize;
    // A linearizable read just before the pause leaves the leader holding a read lease.
    assert_eq!(conv_rate(&first, 0, Consistency::Linearizable).await, Some(Value::Float64(1.0)));
    nodes[paused].signal("STOP").unwrap();

    // The majority elects new leaders and takes a newer value for every driver.
    let survivor = nodes[(paused + 1) % 3].client().await.unwrap();
    leaders_move_away_from(&survivor, leader).await;
    write_one_by_one(&survivor, 0..8, |_| 2.0).await;
    for id in 0..8 {
        assert_eq!(conv_rate(&survivor, id, Consistency::Linearizable).await, Some(Value::Float64(2.0)));
    }

    // Resumed, the old leader still believes in its old term for a moment: a linearizable
    // read through it must not answer from its stale state.
    nodes[paused].signal("CONT").unwrap();
    let resumed = nodes[paused].client().await.unwrap();
    for id in 0..8 {
        let value = conv_rate(&resumed, id, Consistency::Linearizable).await;
        assert_eq!(value, Some(Value::Float64(2.0)), "driver {id} through the resumed node");
    }
    replica_has(&resumed, 0..8, |_| 2.0).await;
    nodes[paused].wait_ready(READY).await.unwrap();
}

/// Waits until the cluster, as `client`'s node sees it, has placed every shard on three
/// of `nodes`, balanced, with no move under way; returns the replica count per node.
async fn placement_settles(client: &Client, nodes: &[u64]) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let map = client.shard_map().await.unwrap();
        let status = client.status().await.unwrap();
        let shards = &map.shard_map.shards;
        let settled = shards.iter().all(|s| s.replicas.len() == 3 && s.replicas.iter().all(|r| nodes.contains(r)))
            && status.groups.iter().filter(|g| g.kind == GroupKind::Shard).all(|g| {
                let mut voters = g.voters.clone();
                voters.sort_unstable();
                let mut replicas = shards.iter().find(|s| s.id == g.group_id).unwrap().replicas.clone();
                replicas.sort_unstable();
                voters == replicas
            })
            && status.nodes.iter().map(|n| n.id).collect::<Vec<_>>() == nodes;
        let loads: Vec<usize> =
            nodes.iter().map(|n| shards.iter().filter(|s| s.replicas.contains(n)).count()).collect();
        if settled && loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1 {
            return loads;
        }
        assert!(Instant::now() < deadline, "placement did not settle on {nodes:?}: {map:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_receives_replicas_and_a_removed_node_is_drained_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = form_cluster(dir.path()).await;
    let first = nodes[0].client().await.unwrap();
    first.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    write_one_by_one(&first, 0..40, |id| id as f64).await;

    // Node 4 joins through node 2 and, once placement is balanced, holds a third of the
    // twelve replicas (four shards, three each) with the data in them.
    let [listen, http] = <[String; 2]>::try_from(free_addrs(2).unwrap()).unwrap();
    let args = LocalNode::join_args(dir.path(), &nodes[1].endpoint());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut joined = LocalNode::spawn_at(&dir.path().join("node4"), &listen, &http, &args, &[]).unwrap();
    joined.wait_ready(READY).await.unwrap();
    let loads = placement_settles(&first, &[1, 2, 3, 4]).await;
    assert_eq!(loads.iter().sum::<usize>(), 12);
    assert_eq!(loads[3], 3, "the new node's share: {loads:?}");
    let newcomer = joined.client().await.unwrap();
    for id in 0..40 {
        assert_eq!(conv_rate(&newcomer, id, Consistency::Linearizable).await, Some(Value::Float64(id as f64)));
    }

    // Removing node 1 (it formed the cluster) drains it: its replicas move away before it
    // leaves, so nothing is lost when its process is then killed.
    let endpoint = nodes[1].endpoint();
    let out = tokio::task::spawn_blocking(move || quiver_tests::quiverctl(&endpoint, &["node", "remove", "1"], None))
        .await
        .unwrap();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("drained and removed"), "{}", out.stdout);
    let second = nodes[1].client().await.unwrap();
    let loads = placement_settles(&second, &[2, 3, 4]).await;
    assert_eq!(loads, vec![4, 4, 4]);
    let meta = second.status().await.unwrap();
    let mut meta_voters = meta.groups[0].voters.clone();
    meta_voters.sort_unstable();
    assert_eq!(meta_voters, vec![2, 3, 4], "the meta group's voters left node 1 too");
    // Node 1 learns from its peers that it was removed, and stops by itself, saying why:
    // it serves no stale view and fails no worker every second.
    let ended = nodes[0].wait_for_exit(READY).await;
    let log = std::fs::read_to_string(dir.path().join("node1.log")).unwrap();
    let tail = &log[log.len().saturating_sub(4000)..];
    let ended = ended.unwrap_or_else(|e| panic!("{e}; node 1's log ends:\n{tail}"));
    assert!(!ended.success(), "{ended}");
    assert!(log.contains("removed from its cluster"), "{tail}");
    for id in 0..40 {
        assert_eq!(conv_rate(&second, id, Consistency::Linearizable).await, Some(Value::Float64(id as f64)));
    }
    write_one_by_one(&newcomer, 40..50, |id| id as f64).await;
    replica_has(&newcomer, 0..50, |id| id as f64).await;
}

/// Offline rows of `driver_stats` in the manifest, as `client`'s node sees it.
async fn offline_rows(client: &Client) -> u64 {
    client.files("rides", "driver_stats").await.unwrap().iter().map(|f| f.rows).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_metadata_leader_during_an_ingest_or_an_export_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Whichever node commits files to the manifest as metadata leader dies right after
    // the commit, before answering; the marker file makes it happen once.
    let marker = dir.path().join("crashed-once");
    let env = [
        ("QUIVER_FAILPOINT".to_string(), "meta-after-commit".to_string()),
        ("QUIVER_FAILPOINT_ONCE".to_string(), marker.display().to_string()),
    ];
    let mut nodes = form_cluster_env(dir.path(), &env).await;
    let first = nodes[0].client().await.unwrap();
    first.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();

    // An ingest through a node that is not the metadata leader: its commit is forwarded,
    // the leader dies after applying it, the forwarder retries through the new leader and
    // learns the files are already there.
    let meta_leader = first.status().await.unwrap().groups[0].leader.unwrap() as usize;
    let via = meta_leader % 3;
    let ts = now_micros() - 3_600_000_000;
    let mut csv = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    for id in 0..1000 {
        csv += &format!("{id},{ts},{},0.5,{id},c\n", id as f64);
    }
    let input = dir.path().join("drivers.csv");
    std::fs::write(&input, csv).unwrap();
    let client = nodes[via].client().await.unwrap();
    let report = client.ingest("rides", "driver_stats", input.to_str().unwrap(), |_| {}).await.unwrap();
    assert_eq!(report.rows, 1000);
    let dead = crashed(&mut nodes, &marker, READY).await;
    assert_eq!(dead + 1, meta_leader, "the metadata leader was the one to die");
    assert_eq!(offline_rows(&client).await, 1000, "every ingested row committed once");
    // And the committed files are there to read.
    let history = driver_history(&client, "avg_daily_trips", &[0, 499, 999], ts + 1).await;
    let trips = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(&history);
    assert_eq!(trips.values().to_vec(), vec![0, 499, 999]);
    for id in [0, 499, 999] {
        assert_eq!(conv_rate(&client, id, Consistency::Linearizable).await, Some(Value::Float64(id as f64)));
    }
    nodes[dead].restart().await.unwrap();

    // An export: rows pushed online are committed to the manifest by shard leaders; the
    // metadata leader dies after one such commit. Exports carry on and nothing doubles.
    std::fs::remove_file(&marker).unwrap();
    let rows = (1000..1300).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let dead = crashed(&mut nodes, &marker, READY).await;
    let survivor = nodes[(dead + 1) % 3].client().await.unwrap();
    let deadline = Instant::now() + READY;
    while offline_rows(&survivor).await < 1300 {
        assert!(Instant::now() < deadline, "export stalled at {} rows", offline_rows(&survivor).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes[dead].restart().await.unwrap();
    // A few more export rounds, with the dead node back: still exactly once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(offline_rows(&survivor).await, 1300, "no exported row committed twice");
}

/// A node whose meta group applies slowly (`QUIVER_DELAY`) still answers with every change
/// committed before the request, through whichever node: the file list, training sets,
/// materialization and the dataset list read the meta state once caught up with the
/// metadata leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_answers_offline_requests_with_every_committed_change() {
    let dir = tempfile::tempdir().unwrap();
    // One offline store for the cluster, as in any deployment (each node's own by default).
    let shared = dir.path().join("offline").display().to_string();
    // Leaders stay put: the meta entries of their transfers would only lengthen the lag.
    let extra = ["--shards", "4", "--offline-store", shared.as_str(), "--balance-leaders", "false"];
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &extra, &[], READY).await.unwrap();
    let first = nodes[0].client().await.unwrap();
    first.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let meta_leader = first.status().await.unwrap().groups[0].leader.unwrap() as usize;
    let lagging = meta_leader % 3;
    // Each apply waits 400 ms, so the few entries of an ingest reach this node seconds
    // after the leader acknowledged them, yet within the 10 s a node waits to catch up
    // (longer delays queue up past it: an ingest is several meta entries).
    nodes[lagging].set_env(vec![("QUIVER_DELAY".into(), "meta-apply:400".into())]);
    nodes[lagging].restart().await.unwrap();
    let leader = nodes[meta_leader - 1].client().await.unwrap();
    let follower = nodes[lagging].client().await.unwrap();

    let ts = now_micros() - 3_600_000_000;
    let mut csv = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    for id in 0..100 {
        csv += &format!("{id},{ts},{},0.5,{id},c\n", id as f64);
    }
    let input = dir.path().join("drivers.csv");
    std::fs::write(&input, csv).unwrap();
    leader.ingest("rides", "driver_stats", input.to_str().unwrap(), |_| {}).await.unwrap();
    assert_eq!(offline_rows(&follower).await, 100, "the file list holds the ingest just acknowledged");

    let spine = format!("driver_id,event_timestamp\n0,{t}\n42,{t}\n99,{t}\n", t = ts + 1);
    let request = |save_as: Option<&str>| quiver_client::HistoricalRequest {
        save_as: save_as.map(str::to_string),
        ..quiver_client::HistoricalRequest::new(
            "rides",
            FeatureSelection::Refs(vec!["driver_stats:avg_daily_trips".into()]),
            quiver_client::Spine::Csv(spine.clone().into_bytes()),
        )
    };
    let history = follower.historical(request(None)).await.unwrap();
    let trips = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(history.column(2));
    assert_eq!(trips.iter().collect::<Vec<_>>(), vec![Some(0), Some(42), Some(99)], "the training set sees it");

    let materialized = follower.materialize("rides", "driver_stats", (None, None), |_| {}).await.unwrap();
    assert_eq!(materialized.rows_read, 100, "materialization reads the committed files");

    leader.historical(request(Some("lagging_train"))).await.unwrap();
    let datasets = follower.datasets("rides").await.unwrap();
    assert!(datasets.iter().any(|d| d.name == "lagging_train"), "{datasets:?}");
}

/// Histories of drivers 0..300 over the last 20 days for the two feature sets of the
/// `driver_model_v2` vector, each in two sources (so every day gets two files, which
/// compaction merges); and a spine of 4,000 rows over drivers 0..330 (some with no rows)
/// with a label. Deterministic, so two stores get the same rows.
fn split_inputs(dir: &std::path::Path, now: i64) -> (Vec<(std::path::PathBuf, &'static str)>, Vec<u8>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let hour = 3_600_000_000i64;
    let stats_header = "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n";
    let mut stats = [stats_header.to_string(), stats_header.to_string()];
    let mut ratings = ["driver_id,rated_at,rating,num_ratings\n".to_string(), String::new()];
    ratings[1] = ratings[0].clone();
    for row in 0..6_000 {
        let (id, at) = (next(300), now - next(480) as i64 * hour);
        stats[row % 2] += &format!("{id},{at},{},0.5,{row},c{}\n", next(1000) as f64 / 1000.0, next(5));
        let (id, at) = (next(300), now - next(480) as i64 * hour);
        ratings[row % 2] += &format!("{id},{at},{},{row}\n", next(50) as f64 / 10.0);
    }
    let mut spine = String::from("driver_id,event_timestamp,label\n");
    for row in 0..4_000 {
        spine += &format!("{},{},{row}\n", next(330), now - next(500) as i64 * hour / 2);
    }
    let sources = [stats, ratings].into_iter().zip(["driver_stats", "driver_ratings"]).flat_map(|(csvs, set)| {
        csvs.into_iter().enumerate().map(move |(n, csv)| {
            let path = dir.join(format!("{set}-{n}.csv"));
            std::fs::write(&path, csv).unwrap();
            (path, set)
        })
    });
    (sources.collect(), spine.into_bytes())
}

/// Whether every day of `set` is in one file.
async fn compacted(client: &Client, set: &str) -> bool {
    let files = client.files("rides", set).await.unwrap();
    let days: std::collections::BTreeSet<i64> = files.iter().map(|f| f.day).collect();
    days.len() == files.len()
}

/// The training set `client` answers for `spine`, and how many nodes joined a part of it.
async fn split_answer(client: &Client, spine: &[u8]) -> (arrow_array::RecordBatch, u32) {
    use futures::StreamExt;
    let request = quiver_client::HistoricalRequest::new(
        "rides",
        FeatureSelection::Vector("driver_model_v2".into()),
        quiver_client::Spine::Csv(spine.to_vec()),
    );
    let mut stream = client.historical_stream(request, |_| {}).await.unwrap();
    let (schema, nodes) = (stream.schema(), stream.nodes());
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.unwrap());
    }
    (arrow_select::concat::concat_batches(&schema, &batches).unwrap(), nodes)
}

/// Joins of `kind` (`training_set`, `part`) running on `node`, from its metrics.
fn joins_running(node: &LocalNode, kind: &str) -> u64 {
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let line = format!("quiver_joins_running{{kind=\"{kind}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).map_or(0, |v| v.trim().parse().unwrap())
}

/// A training set split over three nodes (each joining its part within a budget so small
/// it spills, from files compaction sorted by key hash) is the one a single node answers
/// alone from the files as ingested, row for row; one whose caller goes away stops on every
/// node and leaves no spill file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_set_split_over_three_nodes_is_the_single_node_answer() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("offline").display().to_string();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[workers]\ncompaction_interval_ms = 100\ncompaction_min_files = 2\n").unwrap();
    let extra = [
        ["--shards", "2", "--offline-store", shared.as_str(), "--config", config.to_str().unwrap()].as_slice(),
        &["--split-min-rows", "1", "--retrieval-memory", "64KiB"],
    ]
    .concat();
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &extra, &[], READY).await.unwrap();
    let first = nodes[0].client().await.unwrap();
    first.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    std::fs::create_dir(dir.path().join("alone")).unwrap();
    let (alone, alone_client) = quiver_tests::node_with_rides(&dir.path().join("alone"), &[]).await;
    let (inputs, spine) = split_inputs(dir.path(), now_micros());
    for (path, set) in &inputs {
        first.ingest("rides", set, path.to_str().unwrap(), |_| {}).await.unwrap();
        alone_client.ingest("rides", set, path.to_str().unwrap(), |_| {}).await.unwrap();
    }
    let deadline = Instant::now() + READY;
    while !(compacted(&first, "driver_stats").await && compacted(&first, "driver_ratings").await) {
        assert!(Instant::now() < deadline, "the cluster never compacted its files");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!compacted(&alone_client, "driver_stats").await, "the single node keeps its files as ingested");
    let (single, one) = split_answer(&alone_client, &spine).await;
    assert_eq!((single.num_rows(), one), (4_000, 1));
    let rating = single.column_by_name("driver_ratings:rating").unwrap();
    assert!(rating.null_count() > 0 && rating.null_count() < 4_000, "some rows match, some do not");
    let second = nodes[1].client().await.unwrap();
    let (split, three) = split_answer(&second, &spine).await;
    assert_eq!(three, 3, "every node joined a part");
    for node in &nodes {
        let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
        let parts = metrics.lines().any(|l| l.starts_with("quiver_requests_total{code=\"ok\",method=\"JoinPart\"}"));
        assert_eq!(parts, node.http_addr() != nodes[1].http_addr(), "the other two nodes joined their parts");
    }
    assert_eq!(split, single, "the split answer is the single node's");
    drop(alone);

    // Parts stall on the two other nodes; the caller goes away meanwhile.
    for node in &mut nodes[1..] {
        node.set_env(vec![("QUIVER_DELAY".into(), "join-part:600000".into())]);
        node.restart().await.unwrap();
    }
    let request = {
        let (first, spine) = (first.clone(), spine.clone());
        tokio::spawn(async move { split_answer(&first, &spine).await })
    };
    let deadline = Instant::now() + READY;
    while nodes[1..].iter().any(|n| joins_running(n, "part") == 0) {
        assert!(Instant::now() < deadline, "the parts never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    request.abort();
    let deadline = Instant::now() + READY;
    while nodes.iter().any(|n| joins_running(n, "part") + joins_running(n, "training_set") > 0) {
        assert!(Instant::now() < deadline, "a node went on joining after its caller went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..=3 {
        let spill = dir.path().join(format!("node{n}/spill"));
        let left = std::fs::read_dir(&spill).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "node{n} left spill files");
    }
}

/// The README's 3-node recipe, run as written (on free ports, in a directory of its own):
/// rows pushed through one node reach a training set through every node, which holds only
/// when the nodes share one offline store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cluster_recipe_serves_training_sets_through_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let free = free_addrs(6).unwrap();
    let written = ["7071", "7072", "7073", "7081", "7082", "7083"].map(|p| format!("127.0.0.1:{p}"));
    let replace: Vec<(&str, &str)> = written.iter().map(String::as_str).zip(free.iter().map(String::as_str)).collect();
    let script = readme_block("### A 3-node cluster", &replace);
    let _nodes = Recipe::run(dir.path(), &script);
    let mut clients = Vec::new();
    for (addr, http) in free[..3].iter().zip(&free[3..]) {
        let deadline = Instant::now() + READY;
        while !quiver_admin::local_node::healthy(http, None).await {
            assert!(Instant::now() < deadline, "the node at {addr} of the recipe serves");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        clients.push(Client::connect(format!("http://{addr}")).await.unwrap());
    }
    clients[0].apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let ts = now_micros() - 60_000_000;
    clients[1]
        .write("rides", "driver_stats", (0..50).map(|id| driver_row(id, ts, id as f64, id)).collect())
        .await
        .unwrap();
    let deadline = Instant::now() + READY;
    while offline_rows(&clients[2]).await < 50 {
        assert!(Instant::now() < deadline, "the pushed rows reach the offline store");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spine = format!("driver_id,event_timestamp\n3,{t}\n49,{t}\n", t = ts + 1);
    for (i, client) in clients.iter().enumerate() {
        let request = quiver_client::HistoricalRequest::new(
            "rides",
            FeatureSelection::Refs(vec!["driver_stats:avg_daily_trips".into()]),
            quiver_client::Spine::Csv(spine.clone().into_bytes()),
        );
        let history =
            client.historical(request).await.unwrap_or_else(|e| panic!("a training set through node {}: {e}", i + 1));
        let trips = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(history.column(2));
        assert_eq!(trips.iter().collect::<Vec<_>>(), vec![Some(3), Some(49)], "through node {}", i + 1);
    }
}

/// Waits until the node whose HTTP address is `http` answers its health check.
async fn serving(http: &str, dir: &std::path::Path) {
    let deadline = Instant::now() + READY;
    while !quiver_admin::local_node::healthy(http, None).await {
        let log = std::fs::read_to_string(dir.join("recipe.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the recipe's node at {http} never served:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rest of the README's cluster section (a fourth node joins, the map and status) and
/// its shard operations, each command as written on the cluster its first block made, then
/// the removal of node 1: every row written before is still read through the survivors.
/// Node and shard numbers that depend on where placement put replicas are taken from the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cluster_and_shard_recipes_run_as_written() {
    use quiver_tests::recipe::{commands, readme_blocks, replaced, run, run_to_end};
    let dir = tempfile::tempdir().unwrap();
    let free = free_addrs(8).unwrap();
    let written = ["7071", "7072", "7073", "7074", "7081", "7082", "7083", "7084"].map(|p| format!("127.0.0.1:{p}"));
    let replace: Vec<(&str, &str)> = written.iter().map(String::as_str).zip(free.iter().map(String::as_str)).collect();
    let cluster = readme_blocks("### A 3-node cluster");
    let mentioned =
        |block: &str| -> Vec<(&str, &str)> { replace.iter().copied().filter(|(old, _)| block.contains(old)).collect() };
    let first = replaced(&cluster[0], &mentioned(&cluster[0]));
    let _nodes = Recipe::run(dir.path(), &first);
    for http in &free[4..7] {
        serving(http, dir.path()).await;
    }
    let client = Client::connect(format!("http://{}", free[1])).await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let ts = now_micros();
    client
        .write("rides", "driver_stats", (0..200).map(|id| driver_row(id, ts, id as f64, id)).collect())
        .await
        .unwrap();

    // The cluster section's second block: node 4 joins; the map and status list it.
    let vars = first.lines().next().unwrap();
    let second = commands(&replaced(&cluster[1], &mentioned(&cluster[1])));
    let [join, shards, status, remove] = <[String; 4]>::try_from(second).expect("join, shards, status, remove");
    assert!(join.contains("--join") && remove.contains("node remove 1"), "{join}\n{remove}");
    let _node4 = Recipe::run(dir.path(), &format!("{vars}\n{join}"));
    serving(&free[7], dir.path()).await;
    let out = run_to_end(dir.path(), &format!("{shards}\n{status}"));
    assert!(out.contains(&free[3]), "status lists node 4:\n{out}");
    placement_settles(&client, &[1, 2, 3, 4]).await;

    // The shard operations, through node 2.
    let map = client.shard_map().await.unwrap();
    let three = map.shard_map.shard(3).unwrap();
    let voter = *three.replicas.iter().find(|r| Some(**r) != three.leader).unwrap();
    let away = *three.replicas.iter().find(|r| **r != voter).unwrap();
    let spare = *[1, 2, 3, 4].iter().find(|n| !three.replicas.contains(n)).unwrap();
    let (transfer, mv) = (format!("3 --to {voter}"), format!("3 --from {away} --to {spare}"));
    let block = replaced(
        &readme_blocks("### Shard operations")[0],
        &[
            ("split 3 [--at 0x5000000000000000]", "split 3 --at 0x5000000000000000"),
            ("3 --to 2", &transfer),
            ("3 --from 1 --to 4", &mv),
        ],
    );
    let prelude = format!("export QUIVER_ENDPOINT=http://{}", free[1]);
    for command in commands(&block) {
        let (ok, out) = run(dir.path(), &format!("{prelude}\n{command}"));
        if command.contains("shard cancel") {
            // Operation 12 may have ended (or never been): then the refusal says so.
            assert!(ok || out.contains("no shard operation 12 is under way"), "{command}:\n{out}");
        } else {
            assert!(ok, "{command}:\n{out}");
        }
    }
    let map = client.shard_map().await.unwrap();
    assert!(map.shard_map.shard(9).is_err(), "shard 9 split off and merged back: {map:?}");
    assert!(map.shard_map.shard(3).unwrap().replicas.contains(&spare), "shard 3 moved to node {spare}: {map:?}");

    // The removal ends the section: node 1's replicas move to the others, then it leaves.
    let out = run_to_end(dir.path(), &remove);
    assert!(out.contains("drained and removed"), "{out}");
    let answer = read_drivers(&client, 0..200).await;
    let column = answer.features.iter().position(|f| f.ends_with("conv_rate")).unwrap();
    for (id, row) in answer.rows.iter().enumerate() {
        assert_eq!(row[column].value, Value::Float64(id as f64), "driver {id}");
    }
    let status = client.status().await.unwrap();
    assert!(status.nodes.iter().all(|n| n.id != 1), "node 1 is gone: {:?}", status.nodes);
}

/// Members that each keep their own offline store (the default, `<data-dir>/offline`): all
/// but the metadata leader, whose store holds the cluster's mark, stop and say what to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_without_one_offline_store_stop_and_say_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addrs(6).unwrap();
    let initial = listen[..3].join(",");
    let secret = LocalNode::cluster_secret(dir.path());
    let args = ["--initial-cluster", initial.as_str(), "--cluster-secret", secret.to_str().unwrap()];
    let mut nodes: Vec<LocalNode> = (0..3)
        .map(|i| {
            let data = dir.path().join(format!("node{}", i + 1));
            LocalNode::spawn_at(&data, &listen[i], &listen[3 + i], &args, &[]).unwrap()
        })
        .collect();
    let deadline = Instant::now() + READY;
    let stopped = loop {
        let stopped: Vec<usize> = (0..3).filter(|i| nodes[*i].has_exited()).collect();
        if stopped.len() == 2 {
            break stopped;
        }
        assert!(Instant::now() < deadline, "two members stop; stopped: {stopped:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for i in stopped {
        let log = std::fs::read_to_string(dir.path().join(format!("node{}.log", i + 1))).unwrap();
        assert!(log.contains("is not its cluster's") && log.contains("--offline-store"), "node {}: {log}", i + 1);
    }
}

/// A node that lost its quorum says it is not ready, and what for: `/health` answers 503
/// naming the groups without a leader (`grpc.health.v1` follows the same readiness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_quorum_says_what_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &[], &[], READY).await.unwrap();
    let (_, body) = quiver_tests::http_get(nodes[2].http_addr(), "/health");
    assert!(body.contains("\"waiting_for\":[]"), "{body}");
    nodes[0].kill_9().unwrap();
    nodes[1].kill_9().unwrap();
    let deadline = Instant::now() + READY;
    loop {
        let (status, body) = quiver_tests::http_get(nodes[2].http_addr(), "/health");
        if status.contains("503") {
            assert!(body.contains("\"waiting_for\":[\"a leader of"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the survivor still says it is ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two leaders of one shard export at once for a while: a deposed leader, slow between
/// reading the queue and writing its files, finishes after its successor committed a longer
/// range from the same start. Its files replace none of the successor's, its refused commit
/// trims nothing, and every acknowledged row reaches a training set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_shard_leader_exporting_late_loses_none_of_its_successors_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[workers]\nexport_interval_ms = 100\n").unwrap();
    let extra = ["--shards", "1", "--config", config.to_str().unwrap()];
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &extra, &[], READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let endpoint = nodes[0].endpoint();
    let lead = |to: u64| {
        let out = quiver_tests::quiverctl(&endpoint, &["shard", "transfer-leader", "1", "--to", &to.to_string()], None);
        assert!(out.success && out.stdout.contains("done"), "{}{}", out.stdout, out.stderr);
    };
    // Node `slow` waits 5 s between reading shard 1's queue and writing its files.
    let (slow, successor) = (2u64, 3u64);
    nodes[1].set_env(vec![("QUIVER_DELAY".into(), "export:5000".into())]);
    nodes[1].restart().await.unwrap();
    lead(slow);
    let ts = now_micros();
    let write = |ids: std::ops::Range<i64>| {
        client.write("rides", "driver_stats", ids.map(|id| driver_row(id, ts, id as f64, id)).collect())
    };
    write(0..300).await.unwrap();
    let deadline = Instant::now() + READY;
    while !nodes[1].log_tail(50).contains("waiting at a delay point") {
        assert!(Instant::now() < deadline, "node {slow} never read its queue: {}", nodes[1].log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // More rows, then a new leader: it exports the first rows and the next ones as one
    // range, from the same start as the rows the slow node holds.
    let written = write(300..600).await.unwrap();
    lead(successor);
    client.wait_for_export(&written, READY).await.unwrap();
    while !nodes[1].log_tail(50).contains("export range committed before") {
        assert!(Instant::now() < deadline, "node {slow} never ended its export: {}", nodes[1].log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let history = driver_history(&client, "conv_rate", &(0..600).collect::<Vec<_>>(), ts + 1).await;
    let rates = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(&history);
    for (id, rate) in rates.iter().enumerate() {
        assert_eq!(rate, Some(id as f64), "driver {id} in a training set");
    }
    assert_eq!(offline_rows(&client).await, 600, "every row committed once");
}
