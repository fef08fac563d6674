//! Upgrades keep the data: a data dir written by an earlier release opens with this one and
//! answers as that release did. The fixtures, and how they are made, are in tests/fixtures.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use quiver_admin::local_node::free_addrs;
use quiver_store::release::CLUSTER_VERSION;
use quiver_tests::{CliOutput, LocalNode, quiverctl};

const READY: Duration = Duration::from_secs(60);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// `quiverctl` through `endpoint` with `token`, in `project`; fails the test when it fails.
fn ctl(endpoint: &str, token: &str, project: &str, args: &[&str]) -> String {
    let out = ctl_result(endpoint, token, project, args);
    assert!(out.success, "quiverctl {args:?}: {}", out.stderr);
    out.stdout
}

fn ctl_result(endpoint: &str, token: &str, project: &str, args: &[&str]) -> CliOutput {
    quiverctl(endpoint, &[&["--token", token, "--project", project], args].concat(), None)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn answer(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("answers").join(name)).unwrap()
}

fn parquet_batches(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    reader.map(Result::unwrap).collect()
}

/// The release at 8630d32 (the last before stored formats were versioned) left a node's data
/// dir with two projects, pushed and ingested rows, a saved dataset, a viewer token, the
/// audit log and a split shard. Today's node opens it and answers as that release did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_8630d32_opens_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = format!("{FIXTURES}/8630d32.tar.gz");
    let untar = std::process::Command::new("tar").args(["-xzf", &fixture, "-C"]).arg(dir.path()).status().unwrap();
    assert!(untar.success(), "the fixture unpacks");
    let [listen, http] = <[String; 2]>::try_from(free_addrs(2).unwrap()).unwrap();
    let mut node = LocalNode::spawn_at(&dir.path().join("node"), &listen, &http, &["--auth"], &[]).unwrap();
    node.wait_ready(READY).await.unwrap();
    let endpoint = node.endpoint();
    let admin = std::fs::read_to_string(dir.path().join("node/admin.token")).unwrap().trim().to_string();
    let reader = std::fs::read_to_string(dir.path().join("reader.token")).unwrap().trim().to_string();

    // The registry, the saved dataset and the tokens, as they were listed.
    let listed =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&ctl(&endpoint, &admin, "rides", args)).unwrap() };
    let before = |name: &str| -> serde_json::Value { serde_json::from_str(&answer(dir.path(), name)).unwrap() };
    assert_eq!(ctl(&endpoint, &admin, "rides", &["list"]), answer(dir.path(), "list.txt"));
    assert_eq!(ctl(&endpoint, &admin, "rides", &["list", "datasets"]), answer(dir.path(), "datasets.txt"));
    assert_eq!(listed(&["token", "list", "--format", "json"]), before("tokens.json"));

    // Online values (without a TTL, so time does not change them), and the expired ones.
    let items = ["get", "--features", "item_stats:*", "--format", "json"];
    let entities = ["--entity", "item_id=1", "--entity", "item_id=5", "--entity", "item_id=8", "--entity", "item_id=9"];
    let now = json_lines(&ctl(&endpoint, &admin, "items", &[&items[..], &entities[..]].concat()));
    assert_eq!(now, json_lines(&answer(dir.path(), "items.json")));
    let drivers = ["get", "--vector", "driver_model_v1", "--format", "json"];
    let ids = ["--entity", "driver_id=1001", "--entity", "driver_id=1002", "--entity", "driver_id=1003"];
    let now = json_lines(&ctl(&endpoint, &admin, "rides", &[&drivers[..], &ids[..]].concat()));
    assert_eq!(now, json_lines(&answer(dir.path(), "get.json")));

    // The offline manifest: the same training set, row for row.
    let spine = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/driver_spine.csv");
    let out = dir.path().join("history.parquet");
    let out_arg = out.to_str().unwrap();
    ctl(&endpoint, &admin, "rides", &["history", "--vector", "driver_model_v1", "--spine", spine, "--out", out_arg]);
    assert_eq!(parquet_batches(&out), parquet_batches(&dir.path().join("answers/history.parquet")));

    // The shard map with its split.
    let shards = |map: serde_json::Value| -> Vec<(u64, u64, u64)> {
        map["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_u64().unwrap(), s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap()))
            .collect()
    };
    let map = shards(listed(&["shards", "--format", "json"]));
    assert_eq!(map, shards(before("shards.json")));
    assert_eq!(map.len(), 5, "four shards, one of them split");

    // The old viewer token keeps its role: it reads, and may not write.
    let read = ctl_result(&endpoint, &reader, "items", &[&items[..], &entities[..]].concat());
    assert!(
        !read.success && read.stderr.contains("ermission"),
        "a viewer of rides does not read items: {}",
        read.stderr
    );
    ctl(&endpoint, &reader, "rides", &[&drivers[..], &ids[..]].concat());
    let push =
        ["--token", &reader, "--project", "rides", "push", "--feature-set", "driver_stats", "--format", "csv", "-"];
    let row = format!("driver_id,event_timestamp,conv_rate\n1001,{},0.5\n", quiver_tests::now_micros());
    let write = quiverctl(&endpoint, &push, Some(&row));
    assert!(!write.success && write.stderr.contains("ermission"), "{}", write.stderr);

    // The upgraded node reports the release it runs now, where the old one reported none;
    // the cluster stays at the previous releases' version until an admin finalizes.
    let client = quiver_client::Client::builder(&endpoint).token(&admin).connect().await.unwrap();
    let status = reports(&client, 1, env!("CARGO_PKG_VERSION")).await;
    assert_eq!(status.cluster_version, Some(1), "an upgraded cluster is not finalized by itself");
    let refused = ctl_result(&endpoint, &reader, "rides", &["cluster", "finalize-upgrade"]);
    assert!(!refused.success && refused.stderr.contains("ermission"), "a viewer may not: {}", refused.stderr);
    let push =
        ["--token", &admin, "--project", "rides", "push", "--feature-set", "driver_stats", "--format", "csv", "-"];
    let pushed = |id: u64, rate: f64| {
        let row = format!("driver_id,event_timestamp,conv_rate\n{id},{},{rate}\n", quiver_tests::now_micros());
        let out = quiverctl(&endpoint, &push, Some(&row));
        assert!(out.success, "{}", out.stderr);
    };
    pushed(2001, 0.123456);
    let in_force = format!("cluster version {CLUSTER_VERSION} in force");
    assert!(ctl(&endpoint, &admin, "rides", &["cluster", "finalize-upgrade"]).contains(&in_force));
    assert_eq!(client.status().await.unwrap().cluster_version, Some(CLUSTER_VERSION));
    pushed(2002, 0.654321);

    // Every audit entry of before is still there, in the same order.
    let audit = |text: &str| -> Vec<(i64, String, String)> {
        let entries: serde_json::Value = serde_json::from_str(text).unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["at"].as_i64().unwrap(), e["actor"].to_string(), e["action"].to_string()))
            .collect()
    };
    let old = audit(&answer(dir.path(), "audit.json"));
    let new = audit(&ctl(&endpoint, &admin, "rides", &["audit", "--format", "json"]));
    assert!(!old.is_empty());
    assert_eq!(new[..old.len()], old[..], "the audit log before the upgrade, unchanged");

    // Rows written before the finalize are stored bare, as the previous release reads them;
    // after it, in their envelope; both read back.
    let rates = ["get", "--features", "driver_stats:conv_rate", "--format", "json"];
    let read = json_lines(&ctl(&endpoint, &admin, "rides", &[&rates[..], &["--entity", "driver_id=2001"]].concat()));
    assert!(read[0].to_string().contains("0.123456"), "{read:?}");
    assert!(node.terminate().unwrap(), "the node stops cleanly");
    let forms = row_forms(&dir.path().join("node"));
    assert_eq!(forms.get(&0.123456f64.to_bits()), Some(&0), "a row written before the finalize is bare: {forms:?}");
    assert_eq!(forms.get(&0.654321f64.to_bits()), Some(&1), "after it, in format 1: {forms:?}");
}

/// The stored format of each row of the (stopped) node's data dir, by its first float value.
fn row_forms(data_dir: &Path) -> std::collections::BTreeMap<u64, u8> {
    use quiver_store::storage::{KvEngine, SledEngine};
    let engine = SledEngine::open(&data_dir.join("online")).unwrap();
    let mut forms = std::collections::BTreeMap::new();
    for name in engine.tree_names().unwrap().iter().filter(|n| n.ends_with("-state")) {
        for kv in engine.tree(name).unwrap().scan_prefix(&[quiver_store::keyspace::ROW]) {
            let (_, value) = kv.unwrap();
            let row: quiver_core::row::StoredRow = quiver_store::codec::load(&value).unwrap();
            let float = row.values.iter().find_map(|v| match v {
                quiver_core::value::Value::Float64(f) => Some(f.to_bits()),
                _ => None,
            });
            if let Some(bits) = float {
                forms.insert(bits, quiver_store::codec::format_of(&value).unwrap().0);
            }
        }
    }
    forms
}

/// The release before cluster versions, which the rolling upgrade starts from.
const PREVIOUS: &str = "e44dc15";

/// `quiver-node` of `PREVIOUS`: `$QUIVER_PREVIOUS_NODE` when set (`.ci/run` builds it
/// first), else built now from this clone's history (`tests/fixtures/build-node-of.sh`, a
/// few minutes the first time).
fn previous_node() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("QUIVER_PREVIOUS_NODE") {
        return bin.into();
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/node-of-{PREVIOUS}"));
    let built = std::process::Command::new("bash")
        .arg(format!("{FIXTURES}/build-node-of.sh"))
        .arg(PREVIOUS)
        .arg(&out)
        .status()
        .unwrap();
    assert!(built.success(), "building quiver-node of {PREVIOUS}");
    out.join("quiver-node")
}

/// Writes rows of new drivers, one per request, through whichever node answers, until
/// told to stop; answers the drivers whose writes were acknowledged.
async fn write_until(
    clients: Vec<quiver_client::Client>,
    first: i64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Vec<i64> {
    let mut acknowledged = Vec::new();
    let (mut id, mut at) = (first, 0);
    while !stop.load(Ordering::Relaxed) {
        let row = quiver_tests::driver_row(id, quiver_tests::now_micros(), id as f64, id);
        match clients[at].write("rides", "driver_stats", vec![row]).await {
            Ok(_) => {
                acknowledged.push(id);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                at = (at + 1) % clients.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        id += 4;
    }
    acknowledged
}

/// Waits until `count` more writes than `from` are acknowledged.
async fn writes_go_on(acked: &AtomicU64, from: u64, count: u64, while_: &str) {
    let deadline = std::time::Instant::now() + READY;
    while acked.load(Ordering::Relaxed) < from + count {
        assert!(std::time::Instant::now() < deadline, "writes stopped {while_}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `client`'s node sees node `id` report running `release`.
async fn reports(client: &quiver_client::Client, id: u64, release: &str) -> quiver_client::ClusterStatus {
    let deadline = std::time::Instant::now() + READY;
    loop {
        if let Ok(status) = client.status().await
            && status.nodes.iter().any(|n| n.id == id && n.version.as_deref() == Some(release))
        {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "node {id} reports {release}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 3-node cluster of the previous release is upgraded to this one a node at a time while
/// four writers write: every node keeps serving, finalizing is refused while a node runs
/// the previous release, and once all run this one it puts the new cluster version in
/// force. No acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_upgraded_one_node_at_a_time_under_writes_loses_no_acknowledged_write() {
    let previous = previous_node();
    let current = quiver_tests::binary("quiver-node").unwrap();
    let release = env!("CARGO_PKG_VERSION");
    let dir = tempfile::tempdir().unwrap();
    // Only nodes of this release export and compact: in the previous one, a deposed shard
    // leader's late export could write over its successor's files and trim rows it had not
    // exported, and a compaction could name its output as an earlier one's (fixed in 0.3.0);
    // leaders change at every restart here. A node reads its config once, at start.
    let config = dir.path().join("quiver.toml");
    let workers_every = |ms: u64| {
        let workers = format!("[workers]\nexport_interval_ms = {ms}\ncompaction_interval_ms = {ms}\n");
        std::fs::write(&config, workers).unwrap()
    };
    workers_every(3_600_000);
    let extra = ["--shards", "4", "--config", config.to_str().unwrap()];
    let mut nodes = LocalNode::start_cluster_of(&previous, dir.path(), 3, &extra, &[], READY).await.unwrap();
    workers_every(500);
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.client().await.unwrap());
    }
    clients[0].apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
    let before = reports(&clients[0], 3, "0.1.0").await;
    assert_eq!(before.cluster_version, None, "the previous release knows no cluster versions");

    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        writers.spawn(write_until(clients.clone(), w, stop.clone(), acked.clone()));
    }
    writes_go_on(&acked, 0, 20, "before the upgrade").await;

    for (i, id) in [(0usize, 1u64), (1, 2), (2, 3)] {
        // A graceful stop for the first two, kill -9 for the last: the writes go on.
        match i {
            2 => nodes[i].kill_9().unwrap(),
            _ => assert!(nodes[i].terminate().unwrap(), "node {id} stops cleanly"),
        }
        writes_go_on(&acked, acked.load(Ordering::Relaxed), 20, &format!("while node {id} was down")).await;
        nodes[i].set_binary(current.clone());
        nodes[i].restart().await.unwrap();
        let upgraded = nodes[i].client().await.unwrap();
        let status = reports(&upgraded, id, release).await;
        writes_go_on(&acked, acked.load(Ordering::Relaxed), 20, &format!("once node {id} was upgraded")).await;
        if i < 2 {
            // Mixed: status says so, and finalizing is refused, naming the nodes behind.
            assert_eq!(status.cluster_version, Some(1), "not finalized, at the previous release's version");
            let table = quiverctl(&nodes[i].endpoint(), &["status"], None).stdout;
            assert!(table.contains(&format!("nodes run 0.1.0 to {release}: an upgrade under way")), "{table}");
            let refused = quiverctl(&nodes[i].endpoint(), &["cluster", "finalize-upgrade"], None);
            assert!(!refused.success, "finalizing while node 3 runs 0.1.0");
            assert!(
                refused.stderr.contains("Q2007") && refused.stderr.contains("node 3 runs 0.1.0"),
                "{}",
                refused.stderr
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    while let Some(ids) = writers.join_next().await {
        acknowledged.extend(ids.unwrap());
    }

    // Finalized: the new cluster version is in force, once; the cluster goes on serving.
    let client = nodes[1].client().await.unwrap();
    assert_eq!(client.status().await.unwrap().cluster_version, Some(1));
    let finalized = quiverctl(&nodes[1].endpoint(), &["cluster", "finalize-upgrade"], None);
    assert!(finalized.success, "{}", finalized.stderr);
    let in_force = format!("cluster version {CLUSTER_VERSION} in force");
    assert!(finalized.stdout.contains(&in_force), "{}", finalized.stdout);
    // Each node applies the finalize in its own time (status answers from its own state).
    for node in &nodes {
        let client = node.client().await.unwrap();
        let deadline = std::time::Instant::now() + READY;
        while client.status().await.unwrap().cluster_version != Some(CLUSTER_VERSION) {
            assert!(std::time::Instant::now() < deadline, "node at {} applies the finalize", node.endpoint());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let again = quiverctl(&nodes[0].endpoint(), &["cluster", "finalize-upgrade"], None);
    assert!(again.success && again.stdout.contains("already in force"), "{}", again.stdout);

    // Every acknowledged write is there, read linearizably through each node.
    assert!(acknowledged.len() > 100, "the writers made progress: {}", acknowledged.len());
    for (n, node) in nodes.iter().enumerate() {
        let client = node.client().await.unwrap();
        for chunk in acknowledged.chunks(200) {
            let answer = quiver_tests::read_drivers(&client, chunk.iter().copied()).await;
            for (id, row) in chunk.iter().zip(&answer.rows) {
                assert_eq!(
                    row[0].value,
                    quiver_client::Value::Float64(*id as f64),
                    "driver {id} through node {}",
                    n + 1
                );
            }
        }
    }

    // Rows written before the finalize (queued a record per row) and after it (a record per
    // write) all reach the offline store.
    let after: Vec<i64> = (0..200).map(|i| 1_000_000 + i).collect();
    let rows = after.iter().map(|id| quiver_tests::driver_row(*id, quiver_tests::now_micros(), *id as f64, *id));
    let written = client.write("rides", "driver_stats", rows.collect()).await.unwrap();
    client.wait_for_export(&written, READY).await.unwrap();
    let every: Vec<i64> = acknowledged.iter().chain(&after).copied().collect();
    let offline =
        quiver_tests::driver_history(&client, "conv_rate", &every, quiver_tests::now_micros() + 1_000_000).await;
    let offline = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(&offline);
    for (id, rate) in every.iter().zip(offline) {
        assert_eq!(rate, Some(*id as f64), "driver {id} in a training set");
    }
}

/// Sets the cluster version recorded in the meta group of the (stopped) node's data dir.
fn record_cluster_version(data_dir: &Path, version: u32) {
    use quiver_store::keyspace::{CLUSTER_VERSION, TreePart, tree_name};
    use quiver_store::storage::{KvEngine, SledEngine, WriteBatch};
    let engine = SledEngine::open(&data_dir.join("online")).unwrap();
    let tree = engine.tree(&tree_name(0, TreePart::State)).unwrap();
    let mut batch = WriteBatch::default();
    batch.put(CLUSTER_VERSION, quiver_store::codec::encode(&version).unwrap());
    tree.write(batch).unwrap();
    engine.flush().unwrap();
}

/// A data dir whose cluster a later release finalized is refused at start, naming both
/// versions; nothing in it changes, and the release that knows the version opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_data_dir_at_a_cluster_version_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let (mut node, client) = quiver_tests::node_with_rides(dir.path(), &[]).await;
    client
        .write("rides", "driver_stats", vec![quiver_tests::driver_row(7, quiver_tests::now_micros(), 0.7, 7)])
        .await
        .unwrap();
    assert!(node.terminate().unwrap(), "the node stops cleanly");

    record_cluster_version(&data, 99);
    node.respawn().unwrap();
    assert!(!node.wait_for_exit(READY).await.unwrap().success(), "this release refuses cluster version 99");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let knows = format!("knows versions up to {CLUSTER_VERSION}");
    assert!(log.contains("cluster version 99") && log.contains(&knows), "{log}");

    // Back at a version it knows, the node opens the data dir with the row it held.
    record_cluster_version(&data, CLUSTER_VERSION);
    node.restart().await.unwrap();
    let client = node.client().await.unwrap();
    let answer = quiver_tests::read_drivers(&client, [7]).await;
    assert_eq!(answer.rows[0][0].value, quiver_client::Value::Float64(0.7));
}
