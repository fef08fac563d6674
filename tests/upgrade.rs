//! Upgrades keep the data: a data dir written by an earlier release opens with this one and
//! answers as that release did. The fixtures, and how they are made, are in tests/fixtures.

use std::path::Path;
use std::time::Duration;

use quiver_admin::local_node::free_addrs;
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

    // The upgraded node reports the version it runs now, where the old one reported none.
    let client = quiver_client::Client::builder(&endpoint).token(&admin).connect().await.unwrap();
    let deadline = std::time::Instant::now() + READY;
    loop {
        let status = client.status().await.unwrap();
        if status.cluster_version() == Some(env!("CARGO_PKG_VERSION")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the node reports its version: {:?}", status.nodes);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
}
