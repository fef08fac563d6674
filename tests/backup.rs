//! Backups of real `quiver-node` processes, made and restored with `quiverctl backup` as an
//! operator would: under writes, to a directory and to an S3-compatible server, from three
//! nodes into three and into one, incremental chains, damaged backups, and a node killed
//! while it makes one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use quiver_admin::local_node::free_addrs;
use quiver_client::{Client, FeatureSelection, Freshness, HistoricalRequest, OnlineRequest, Spine, Value};
use quiver_tests::s3::S3Server;
use quiver_tests::{LocalNode, RIDES, binary, driver_row, now_micros, quiverctl, read_drivers};

const READY: Duration = Duration::from_secs(60);
const FAST_WORKERS: &str = "[workers]\nexport_interval_ms = 100\nstatistics_interval_ms = 200\n";

/// Runs `quiverctl` without a node (backup commands that read the location) and with
/// `env` (S3 settings); fails the test when it fails.
fn ctl(args: &[&str], env: &[(String, String)]) -> String {
    let out = ctl_result(args, env);
    assert!(out.status.success(), "quiverctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ctl_result(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    std::process::Command::new(binary("quiverctl").unwrap())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("quiverctl runs")
}

/// `backup create`, through the node at `endpoint`; answers the new backup's id.
fn create(endpoint: &str, to: &str, extra: &[&str]) -> String {
    let out = quiverctl(endpoint, &[&["backup", "create", "--to", to], extra].concat(), None);
    assert!(out.success, "backup create: {}", out.stderr);
    let id = out.stdout.split_whitespace().nth(1).expect("the backup's id is printed").to_string();
    // What it holds apart from what it wrote (an incremental one writes only changes).
    assert!(out.stdout.contains("complete") && out.stdout.contains("online rows; "), "{}", out.stdout);
    id
}

/// The backups listed in `from`, as `(id, complete)`.
fn listed(from: &str, env: &[(String, String)]) -> Vec<(String, bool)> {
    let json: serde_json::Value =
        serde_json::from_str(&ctl(&["backup", "list", "--from", from, "--format", "json"], env)).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_str().unwrap().to_string(), b["complete"].as_bool().unwrap()))
        .collect()
}

async fn with_rides(node: &LocalNode) -> Client {
    let client = node.client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    client
}

fn config(dir: &Path) -> String {
    let path = dir.join("quiver.toml");
    std::fs::write(&path, FAST_WORKERS).unwrap();
    path.display().to_string()
}

/// conv_rate of each driver as the node serves it (`None`: no row).
async fn conv_rates(client: &Client, ids: &[i64]) -> Vec<Option<f64>> {
    let answer = read_drivers(client, ids.iter().copied()).await;
    let column = answer.features.iter().position(|f| f == "driver_stats:conv_rate").unwrap();
    answer
        .rows
        .iter()
        .map(|row| match (&row[column].status, &row[column].value) {
            (Freshness::NotFound, _) => None,
            (_, Value::Float64(v)) => Some(*v),
            (status, other) => panic!("conv_rate {other:?} ({status:?})"),
        })
        .collect()
}

/// Ratings of drivers 0..40 ingested from a CSV file: offline files and statistics that
/// only this ingest touches.
async fn ingest_ratings(client: &Client, dir: &Path) {
    let now = now_micros();
    let mut csv = String::from("driver_id,rated_at,rating,num_ratings\n");
    for id in 0..40 {
        csv += &format!("{id},{},{},{}\n", now - 3_600_000_000 + id * 1000, 3.0 + (id % 20) as f64 / 10.0, id * 3);
    }
    let path = dir.join("ratings.csv");
    std::fs::write(&path, csv).unwrap();
    client.ingest("rides", "driver_ratings", path.to_str().unwrap(), |_| {}).await.unwrap();
}

/// A training set of drivers `ids` at time `at`.
async fn history(client: &Client, ids: impl Iterator<Item = i64>, at: i64) -> RecordBatch {
    let mut spine = String::from("driver_id,event_timestamp\n");
    for id in ids {
        spine += &format!("{id},{at}\n");
    }
    let request = HistoricalRequest::new(
        "rides",
        FeatureSelection::Vector("driver_model_v2".into()),
        Spine::Csv(spine.into_bytes()),
    );
    client.historical(request).await.unwrap()
}

/// Waits until `read` answers the same twice in a row and `ready` holds for it.
async fn settled<T: PartialEq, F: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> F,
    ready: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = read().await;
        if now == last && ready(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "no settled answer within a minute");
        last = now;
    }
}

/// Waits until `read` answers `expected`; fails after a minute with the last answer.
async fn eventually<T: PartialEq + std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> F,
    expected: &T,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = read().await;
        if &now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "expected {expected:?}, still {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn stats(endpoint: &str) -> String {
    let out = quiverctl(
        endpoint,
        &["--project", "rides", "stats", "--feature-set", "driver_ratings", "--format", "json"],
        None,
    );
    assert!(out.success, "{}", out.stderr);
    out.stdout
}

/// What a source looked like just before its backup, and what was written around it.
struct Source {
    /// Drivers 0..100 at their values before the backup (some are overwritten after it).
    before: Vec<Option<f64>>,
    history: RecordBatch,
    /// The spine time of `history`.
    at: i64,
    stats: String,
    /// Drivers written during the backup, with the value and whether the write was
    /// acknowledged before the backup started.
    during: Vec<(i64, f64, bool)>,
    /// Drivers first written after the backup ended.
    after: Vec<i64>,
}

/// Loads a cluster through `client`, backs it up to `to` while three writers go on, then
/// writes more: returns the backup's id and what to compare a restore with.
async fn backup_under_writes(
    client: &Client,
    endpoint: &str,
    dir: &Path,
    to: &str,
    extra: &[&str],
) -> (String, Source) {
    let rows = (0..100).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    ingest_ratings(client, dir).await;
    let ids: Vec<i64> = (0..100).collect();
    let before = conv_rates(client, &ids).await;
    // Exported rows and summarized files are in the offline store before the backup.
    let at = now_micros() + 60_000_000;
    let history = settled(|| history(client, 0..100, at), |h| h.num_rows() == 100).await;
    let stats = settled(|| async { stats(endpoint) }, |s| s.contains("\"rows\":40")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, stop, started) = (client.clone(), stop.clone(), started.clone());
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let id = 10_000 + w * 100_000 + i;
                let value = id as f64 + 0.5;
                let before_start = !started.load(Ordering::Acquire);
                if client.write("rides", "driver_stats", vec![driver_row(id, now_micros(), value, 1)]).await.is_ok() {
                    written.push((id, value, before_start && !started.load(Ordering::Acquire)));
                }
            }
            written
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    started.store(true, Ordering::Release);
    let (endpoint_owned, to_owned, extra): (String, String, Vec<String>) =
        (endpoint.into(), to.into(), extra.iter().map(|s| s.to_string()).collect());
    let id = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        create(&endpoint_owned, &to_owned, &extra)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Release);
    let mut during = Vec::new();
    for w in writers {
        during.extend(w.await.unwrap());
    }
    assert!(during.iter().any(|(_, _, early)| *early), "some writes were acknowledged before the backup began");
    // After the backup: new drivers, and drivers 0..50 overwritten.
    let after: Vec<i64> = (900_000..900_050).collect();
    let rows = after
        .iter()
        .map(|id| driver_row(*id, now_micros(), 1.0, 1))
        .chain((0..50).map(|id| driver_row(id, now_micros(), -1.0, 1)));
    client.write("rides", "driver_stats", rows.collect()).await.unwrap();
    (id, Source { before, history, at, stats, during, after })
}

/// The restored cluster answers what the source held at the cut.
async fn check_restored(client: &Client, endpoint: &str, source: &Source) {
    let ids: Vec<i64> = (0..100).collect();
    assert_eq!(conv_rates(client, &ids).await, source.before, "the rows written before the backup, as they were");
    let during: Vec<i64> = source.during.iter().map(|(id, _, _)| *id).collect();
    let found = conv_rates(client, &during).await;
    for ((id, value, early), found) in source.during.iter().zip(&found) {
        match found {
            Some(v) => assert_eq!(v, value, "driver {id}"),
            None => assert!(!early, "driver {id}, acknowledged before the backup began, is missing"),
        }
    }
    assert!(conv_rates(client, &source.after).await.iter().all(Option::is_none), "nothing written after the backup");
    eventually(|| history(client, 0..100, source.at), &source.history).await;
    eventually(|| async { stats(endpoint) }, &source.stats).await;
}

/// Restores backup `id` into a new single node under `dir` and starts it there.
/// `store` is the new offline store, if not the default.
async fn restore_single(id: &str, from: &str, data: &Path, store: Option<&str>, env: &[(String, String)]) -> LocalNode {
    let [addr, http] = <[String; 2]>::try_from(free_addrs(2).unwrap()).unwrap();
    let mut restore =
        vec!["backup", "restore", id, "--from", from, "--data-dir", data.to_str().unwrap(), "--advertise", &addr];
    let config = config(data.parent().unwrap());
    let mut node_args = vec!["--config", config.as_str()];
    if let Some(store) = store {
        restore.extend(["--offline-store", store]);
        node_args.extend(["--offline-store", store]);
    }
    let out = ctl(&restore, env);
    assert!(out.contains("restored backup") && out.contains(&format!("--listen {addr}")), "{out}");
    let mut node = LocalNode::spawn_at(data, &addr, &http, &node_args, env).unwrap();
    node.wait_ready(READY).await.unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_restores_the_cut_into_a_new_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = LocalNode::start(&dir.path().join("source"), &["--config", &config]).await.unwrap();
    let client = with_rides(&node).await;
    let to = dir.path().join("backups").display().to_string();
    let (id, source) = backup_under_writes(&client, &node.endpoint(), dir.path(), &to, &[]).await;

    assert_eq!(listed(&to, &[]), vec![(id.clone(), true)]);
    let described = ctl(&["backup", "describe", &id, "--from", &to], &[]);
    assert!(described.contains("CUT INDEX") && described.contains("full backup"), "{described}");
    assert!(ctl(&["backup", "verify", &id, "--from", &to], &[]).contains("verified"));
    let status = quiverctl(&node.endpoint(), &["status"], None).stdout;
    assert!(status.contains(&format!("last backup: {id}")), "{status}");

    drop(node);
    let restored = restore_single(&id, &to, &dir.path().join("restored"), None, &[]).await;
    check_restored(&restored.client().await.unwrap(), &restored.endpoint(), &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_backed_up_to_s3_restore_into_three_nodes_and_into_one() {
    let s3 = S3Server::start(&["quiver", "backups"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let args = ["--config", config.as_str(), "--offline-store", "s3://quiver/offline", "--shards", "4"];
    std::fs::create_dir_all(dir.path().join("source")).unwrap();
    let nodes = LocalNode::start_cluster(&dir.path().join("source"), 3, &args, &s3.env(), READY).await.unwrap();
    let client = with_rides(&nodes[0]).await;
    let to = "s3://backups/nightly";
    let (id, source) = backup_under_writes(&client, &nodes[0].endpoint(), dir.path(), to, &[]).await;
    assert!(ctl(&["backup", "verify", &id, "--from", to], &s3.env()).contains("verified"));
    // A bucket that does not exist is named in the error, and nothing is held meanwhile.
    let missing = quiverctl(&nodes[0].endpoint(), &["backup", "create", "--to", "s3://no-such-bucket/x"], None);
    assert!(!missing.success && missing.stderr.contains("s3://no-such-bucket/x"), "{}", missing.stderr);
    drop(nodes);

    // Three new members, each restored with the same list, then started together.
    let mut listen = free_addrs(6).unwrap();
    let http = listen.split_off(3);
    let initial = listen.join(",");
    let secret = dir.path().join("restored.secret");
    let mut restored = Vec::new();
    for (i, addr) in listen.iter().enumerate() {
        let data = dir.path().join(format!("restored{}", i + 1));
        let restore = ["backup", "restore", &id, "--from", to, "--data-dir", data.to_str().unwrap()];
        let place = ["--initial-cluster", &initial, "--advertise", addr, "--offline-store", "s3://quiver/restored"];
        ctl(&[&restore[..], &place[..]].concat(), &s3.env());
        let args = [
            "--initial-cluster",
            initial.as_str(),
            "--cluster-secret",
            secret.to_str().unwrap(),
            "--config",
            config.as_str(),
            "--offline-store",
            "s3://quiver/restored",
        ];
        restored.push(LocalNode::spawn_at(&data, addr, &http[i], &args, &s3.env()).unwrap());
    }
    for node in &mut restored {
        node.wait_ready(READY).await.unwrap();
    }
    check_restored(&restored[1].client().await.unwrap(), &restored[1].endpoint(), &source).await;
    drop(restored);

    let node = restore_single(&id, to, &dir.path().join("single"), Some("s3://quiver/single"), &s3.env()).await;
    check_restored(&node.client().await.unwrap(), &node.endpoint(), &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_chain_stores_the_changes_restores_the_last_state_and_deletion_keeps_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = LocalNode::start(&dir.path().join("source"), &["--config", &config, "--shards", "4"]).await.unwrap();
    let client = with_rides(&node).await;
    let to = dir.path().join("backups").display().to_string();
    let mut expected: BTreeMap<i64, f64> = (1000..3000).map(|id| (id, id as f64 + 0.25)).collect();
    let rows = expected.iter().map(|(id, v)| driver_row(*id, now_micros(), *v, 1)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    // Exported before the full backup, so the next ones differ from it by the rounds' writes.
    let at = now_micros() + 60_000_000;
    let exported = |h: &RecordBatch| {
        let conv_rate = h.schema().fields().iter().position(|f| f.name().ends_with("conv_rate")).unwrap();
        h.column(conv_rate).null_count() == 0
    };
    settled(|| history(&client, 1000..3000, at), exported).await;
    let mut ids = vec![create(&node.endpoint(), &to, &[])];
    for round in 1..3i64 {
        // A few drivers each round, and one driver of the full backup changed again.
        let mut rows: Vec<(i64, f64)> = (0..3).map(|k| (round * 10 + k, (round * 10 + k) as f64 + 0.25)).collect();
        rows.push((1500, round as f64));
        expected.extend(rows.iter().copied());
        let rows = rows.iter().map(|(id, v)| driver_row(*id, now_micros(), *v, 1)).collect();
        client.write("rides", "driver_stats", rows).await.unwrap();
        ids.push(create(&node.endpoint(), &to, &["--incremental"]));
    }
    let described = ctl(&["backup", "describe", &ids[2], "--from", &to], &[]);
    assert!(described.contains(&format!("builds on {}", ids[1])) && described.contains("changes on 2"), "{described}");
    // An incremental backup stores the keys that changed, not the shards they are in.
    let shard_bytes = |id: &str| -> u64 {
        let dir = Path::new(&to).join(id);
        let cuts = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("shard-"));
        cuts.map(|e| e.metadata().unwrap().len()).sum()
    };
    let full = shard_bytes(&ids[0]);
    for id in &ids[1..] {
        assert!(shard_bytes(id) * 10 < full, "{id} stores {} bytes of shards, the full backup {full}", shard_bytes(id));
    }
    // The last backup needs the earlier ones: deleting one is refused, --keep 1 keeps all.
    let refused = ctl_result(&["backup", "delete", &ids[0], "--from", &to], &[]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("needed by"));
    ctl(&["backup", "delete", "--keep", "1", "--from", &to], &[]);
    assert_eq!(listed(&to, &[]).len(), 3);
    let verified = ctl(&["backup", "verify", &ids[2], "--from", &to], &[]);
    assert!(verified.contains("verified"), "{verified}");

    drop(node);
    let restored = restore_single(&ids[2], &to, &dir.path().join("restored"), None, &[]).await;
    let client = restored.client().await.unwrap();
    let ids_written: Vec<i64> = expected.keys().copied().collect();
    let values: Vec<Option<f64>> = expected.values().map(|v| Some(*v)).collect();
    assert_eq!(conv_rates(&client, &ids_written).await, values);
}

/// Flips one byte of `path`.
fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn find_file(dir: &Path, suffix: &str) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                return path;
            }
        }
    }
    panic!("no {suffix} under {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_damage_and_restore_refuses_a_damaged_backup() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = LocalNode::start(&dir.path().join("source"), &["--config", &config]).await.unwrap();
    let client = with_rides(&node).await;
    let rows = (0..50).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    ingest_ratings(&client, dir.path()).await;
    let backups = dir.path().join("backups");
    let to = backups.display().to_string();

    // A location that cannot be written is an error, and leaves no backup.
    let refused = quiverctl(&node.endpoint(), &["backup", "create", "--to", "/proc/no-backups-here"], None);
    assert!(!refused.success && refused.stderr.contains("/proc/no-backups-here"), "{}", refused.stderr);

    let flipped = create(&node.endpoint(), &to, &[]);
    let cut = find_file(&backups.join(&flipped), ".cut");
    flip_byte(&cut);
    let missing = create(&node.endpoint(), &to, &[]);
    let offline = find_file(&backups.join(&missing).join("offline"), ".parquet");
    std::fs::remove_file(&offline).unwrap();

    // An edited catalog: a row count one higher, everything else as written.
    let edited = create(&node.endpoint(), &to, &[]);
    let catalog = backups.join(&edited).join("catalog.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&catalog).unwrap()).unwrap();
    let rows = json["shards"][0]["rows"].as_u64().unwrap();
    json["shards"][0]["rows"] = (rows + 1).into();
    std::fs::write(&catalog, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

    for (id, object) in [(&flipped, &cut), (&missing, &offline), (&edited, &catalog)] {
        let name = object.strip_prefix(&backups).unwrap().display().to_string();
        let verify = ctl_result(&["backup", "verify", id, "--from", &to], &[]);
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(!verify.status.success() && stderr.contains(&name), "verify of {id} names {name}: {stderr}");
        let target = dir.path().join(format!("restore-{id}"));
        let restore =
            ctl_result(&["backup", "restore", id, "--from", &to, "--data-dir", target.to_str().unwrap()], &[]);
        assert!(!restore.status.success(), "a damaged backup is not restored");
        assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(), "nothing left behind");
    }
    // A restore into the source's own offline store is refused (both would write there),
    // unless forced.
    let good = create(&node.endpoint(), &to, &[]);
    let source_store = dir.path().join("source/offline").display().to_string();
    let shared = dir.path().join("shared");
    let into_source = ["backup", "restore", &good, "--from", &to, "--data-dir", shared.to_str().unwrap()];
    let refused = ctl_result(&[&into_source[..], &["--offline-store", &source_store]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("is the offline store of the cluster"), "{stderr}");
    assert!(!shared.exists() || std::fs::read_dir(&shared).unwrap().next().is_none(), "nothing left behind");
    ctl(&[&into_source[..], &["--offline-store", &source_store, "--force"]].concat(), &[]);

    // A restore into a data dir that holds something is refused and changes nothing.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let refused = ctl_result(&["backup", "restore", &good, "--from", &to, "--data-dir", busy.to_str().unwrap()], &[]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    assert_eq!(std::fs::read_to_string(busy.join("keep.txt")).unwrap(), "mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_backing_up_leaves_no_complete_backup_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let slow = [("QUIVER_DELAY".to_string(), "backup-object:400".to_string())];
    let mut node = LocalNode::start_with_env(&dir.path().join("source"), &["--config", &config], &slow).await.unwrap();
    let client = with_rides(&node).await;
    let rows = (0..50).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let backups = dir.path().join("backups");
    let to = backups.display().to_string();
    let endpoint = node.endpoint();
    let running = {
        let to = to.clone();
        std::thread::spawn(move || quiverctl(&endpoint, &["backup", "create", "--to", &to], None))
    };
    // Kill the node once the backup has written its first objects.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !backups.exists() || walk_count(&backups) == 0 {
        assert!(Instant::now() < deadline, "the backup wrote nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill_9().unwrap();
    assert!(!running.join().unwrap().success, "the interrupted backup is reported failed");
    let partial = listed(&to, &[]);
    assert_eq!(partial.len(), 1);
    assert!(!partial[0].1, "the partial backup is not complete");
    let out = ctl_result(
        &["backup", "restore", &partial[0].0, "--from", &to, "--data-dir", dir.path().join("r").to_str().unwrap()],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not complete"));

    node.set_env(Vec::new());
    node.restart().await.unwrap();
    let id = create(&node.endpoint(), &to, &[]);
    let now = listed(&to, &[]);
    assert_eq!(
        now.iter().filter(|(_, complete)| *complete).map(|(i, _)| i.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    // Exports were held only while the groups were cut: they go on after the kill.
    assert!(ctl(&["backup", "verify", &id, "--from", &to], &[]).contains("verified"));
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { walk_count(&e.path()) } else { 1 }).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_go_on_after_the_metadata_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("nightly");
    let config = dir.path().join("quiver.toml");
    let schedule = format!("[backup]\nto = {:?}\nevery = \"2s\"\nkeep = 2\nfull_every = 2\n", to.display().to_string());
    std::fs::write(&config, schedule).unwrap();
    // One offline store for the cluster, as `deploy/` runs it: exports written by one node's
    // shard leader are then there for whichever node makes the next backup.
    let store = dir.path().join("offline").display().to_string();
    let args = ["--config", config.to_str().unwrap(), "--shards", "2", "--offline-store", &store];
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &args, &[], READY).await.unwrap();
    let client = with_rides(&nodes[0]).await;
    client.write("rides", "driver_stats", vec![driver_row(1, now_micros(), 1.0, 1)]).await.unwrap();
    let complete = |to: &str| listed(to, &[]).into_iter().filter(|(_, c)| *c).map(|(id, _)| id).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete(&to.display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "no scheduled backup was made");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An operator's backup in the same location is the schedule's retention's to leave alone
    // (made when no scheduled one holds the cluster's cut).
    let deadline = Instant::now() + Duration::from_secs(60);
    let manual = loop {
        let args = ["backup", "create", "--to", &to.display().to_string()];
        let out = quiverctl(&nodes[0].endpoint(), &args, None);
        if out.success {
            break out.stdout.split_whitespace().nth(1).unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no manual backup: {}", out.stderr);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let leader = client.status().await.unwrap().groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader).unwrap();
    let before: Vec<String> = complete(&to.display().to_string());
    nodes[leader as usize - 1].kill_9().unwrap();
    let to = to.display().to_string();
    let survivor = &nodes[leader as usize % 3];
    let client = survivor.client().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = client.status().await;
        let newest = status.ok().and_then(|s| s.backups.last().cloned());
        if let Some(newest) = newest.filter(|b| b.scheduled && !before.contains(&b.id) && complete(&to).contains(&b.id))
        {
            // Every other backup is incremental (full_every = 2), at most `keep` of the
            // schedule's remain, and the manual one stays.
            let remaining = complete(&to);
            assert!(remaining.contains(&manual), "retention deleted a manual backup: {remaining:?}");
            assert!(remaining.len() <= 3, "{remaining:?}");
            let (_, page) = quiver_tests::http_get(survivor.http_addr(), "/ui/cluster");
            assert!(page.contains("<h2>Backups</h2>") && page.contains(&newest.id), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled backup after the metadata leader died");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Three scheduled backups after the manual one: a retention of 2 that counted it would
    // have deleted it by now.
    let deadline = Instant::now() + Duration::from_secs(90);
    while complete(&to).iter().filter(|id| **id > manual).count() < 3 {
        assert!(Instant::now() < deadline, "no three scheduled backups after the manual one");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(complete(&to).contains(&manual), "retention deleted a manual backup: {:?}", complete(&to));
    let described: Vec<String> =
        complete(&to).iter().map(|id| ctl(&["backup", "describe", id, "--from", &to], &[])).collect();
    assert!(described.iter().any(|d| d.contains("builds on")), "incremental backups among them: {described:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_a_backup_lists_in_place_outlive_compaction_until_the_backup_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    let workers = "[workers]\nstatistics_interval_ms = 200\ncompaction_interval_ms = 200\ncompaction_min_files = 2\ncompaction_grace_ms = 0\n";
    std::fs::write(&config, workers).unwrap();
    let node = LocalNode::start(&dir.path().join("source"), &["--config", config.to_str().unwrap()]).await.unwrap();
    let client = with_rides(&node).await;
    ingest_ratings(&client, dir.path()).await;
    let first = client.files("rides", "driver_ratings").await.unwrap();
    let to = dir.path().join("backups").display().to_string();
    let id = create(&node.endpoint(), &to, &["--no-copy-offline"]);
    let described = ctl(&["backup", "describe", &id, "--from", &to], &[]);
    assert!(described.contains(&format!("0 copied into the backup, {} left in", first.len())), "{described}");

    // A second file of the same day: compaction replaces both, and their grace is 0.
    let path = dir.path().join("more.csv");
    let day_start = first[0].min_ts;
    std::fs::write(&path, format!("driver_id,rated_at,rating,num_ratings\n99,{day_start},4.5,7\n")).unwrap();
    client.ingest("rides", "driver_ratings", path.to_str().unwrap(), |_| {}).await.unwrap();
    let compacted = || async {
        let files = client.files("rides", "driver_ratings").await.unwrap();
        files.iter().all(|f| f.path.contains("compact-"))
    };
    eventually(compacted, &true).await;
    let offline = dir.path().join("source/offline");
    let on_disk = |p: &str| offline.join(p).exists();
    // Collection ran many times since: what the backup lists is still there, and whole.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(first.iter().all(|f| on_disk(&f.path)), "files the backup lists are kept");
    assert!(ctl(&["backup", "verify", &id, "--from", &to], &[]).contains("verified"));

    // A backup into the offline store itself lists its files in place, and is the only
    // backup found there among the store's own files.
    let in_store = offline.display().to_string();
    let beside = create(&node.endpoint(), &in_store, &[]);
    assert_eq!(listed(&in_store, &[]), vec![(beside.clone(), true)]);
    let described = ctl(&["backup", "describe", &beside, "--from", &in_store], &[]);
    assert!(described.contains("0 copied into the backup"), "{described}");
    ctl(&["backup", "delete", &beside, "--from", &in_store], &[]);

    ctl(&["backup", "delete", &id, "--from", &to], &[]);
    eventually(|| async { first.iter().any(|f| on_disk(&f.path)) }, &false).await;
}

/// Files compacted away while a backup is being written, after its cut listed them, are
/// kept until it is done: the backup completes and verifies, its copies whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_compacted_away_during_a_backup_are_kept_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    let workers = "[workers]\ncompaction_interval_ms = 200\ncompaction_min_files = 2\ncompaction_grace_ms = 0\n";
    std::fs::write(&config, workers).unwrap();
    let slow = [("QUIVER_DELAY".to_string(), "backup-object:3000".to_string())];
    let args = ["--config", config.to_str().unwrap(), "--shards", "1"];
    let node = LocalNode::start_with_env(&dir.path().join("source"), &args, &slow).await.unwrap();
    let client = with_rides(&node).await;
    ingest_ratings(&client, dir.path()).await;
    let first = client.files("rides", "driver_ratings").await.unwrap();

    let to = dir.path().join("backups").display().to_string();
    let running = {
        let (endpoint, to) = (node.endpoint(), to.clone());
        std::thread::spawn(move || quiverctl(&endpoint, &["backup", "create", "--to", &to], None))
    };
    // The backup has cut the groups (at once) and writes its objects slowly; meanwhile a
    // second file of the same day makes compaction replace the first, whose grace is 0.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let path = dir.path().join("more.csv");
    std::fs::write(&path, format!("driver_id,rated_at,rating,num_ratings\n99,{},4.5,7\n", first[0].min_ts)).unwrap();
    client.ingest("rides", "driver_ratings", path.to_str().unwrap(), |_| {}).await.unwrap();
    let compacted =
        || async { client.files("rides", "driver_ratings").await.unwrap().iter().all(|f| f.path.contains("compact-")) };
    eventually(compacted, &true).await;

    let out = running.join().unwrap();
    assert!(out.success, "the backup completes: {}", out.stderr);
    let id = out.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert!(ctl(&["backup", "verify", &id, "--from", &to], &[]).contains("verified"));
    let described = ctl(&["backup", "describe", &id, "--from", &to], &[]);
    assert!(described.contains(&format!("{} copied into the backup", first.len())), "{described}");
}

/// A backup made while an ingest publishes (its files committed, its online rows not yet
/// upserted) holds the ingest whole or not at all, online and offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_an_ingest_holds_it_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let slow = [("QUIVER_DELAY".to_string(), "ingest-publish:3000".to_string())];
    let args = ["--config", config.as_str(), "--shards", "1"];
    let node = LocalNode::start_with_env(&dir.path().join("source"), &args, &slow).await.unwrap();
    let client = with_rides(&node).await;
    let ingest = {
        let (client, dir) = (client.clone(), dir.path().to_path_buf());
        tokio::spawn(async move { ingest_ratings(&client, &dir).await })
    };
    // The ingest has committed its files by now, and waits before its online rows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let to = dir.path().join("backups").display().to_string();
    let id = {
        let (endpoint, to) = (node.endpoint(), to.clone());
        tokio::task::spawn_blocking(move || create(&endpoint, &to, &[])).await.unwrap()
    };
    ingest.await.unwrap();

    let restored = restore_single(&id, &to, &dir.path().join("restored"), None, &[]).await;
    let client = restored.client().await.unwrap();
    let offline = !client.files("rides", "driver_ratings").await.unwrap().is_empty();
    let read = OnlineRequest {
        project: "rides".into(),
        features: FeatureSelection::Refs(vec!["driver_ratings:rating".into()]),
        entities: (0..40).map(quiver_tests::driver_key).collect(),
        consistency: quiver_client::Consistency::Linearizable,
    };
    let answer = client.get_online(read).await.unwrap();
    let present = answer.rows.iter().filter(|row| row[0].status == Freshness::Present).count();
    assert!(present == 0 || present == 40, "{present} of the ingest's 40 rows online");
    assert_eq!(offline, present == 40, "offline files {offline}, online rows {present}: whole or not at all");
}

/// A cluster restored from a backup is a cluster of its own: a new id in its catalogs, so an
/// incremental backup of it never builds on its source's backups in the same location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_cluster_is_a_cluster_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = LocalNode::start(&dir.path().join("source"), &["--config", &config]).await.unwrap();
    let client = with_rides(&node).await;
    client.write("rides", "driver_stats", vec![driver_row(1, now_micros(), 1.0, 1)]).await.unwrap();
    let backups = dir.path().join("backups");
    let to = backups.display().to_string();
    let source_backup = create(&node.endpoint(), &to, &[]);

    let restored = restore_single(&source_backup, &to, &dir.path().join("restored"), None, &[]).await;
    let refused = quiverctl(&restored.endpoint(), &["backup", "create", "--to", &to, "--incremental"], None);
    assert!(!refused.success && refused.stderr.contains("no complete backup of this cluster"), "{}", refused.stderr);
    let own = create(&restored.endpoint(), &to, &[]);
    let cluster = |id: &str| {
        let catalog: serde_json::Value =
            serde_json::from_slice(&std::fs::read(backups.join(id).join("catalog.json")).unwrap()).unwrap();
        catalog["cluster"].as_str().expect("a catalog names its cluster").to_string()
    };
    assert_ne!(cluster(&source_backup), cluster(&own));
    let next = create(&restored.endpoint(), &to, &["--incremental"]);
    let described = ctl(&["backup", "describe", &next, "--from", &to], &[]);
    assert!(described.contains(&format!("builds on {own}")), "{described}");
}

/// A backup whose groups took longer to cut than the hold on exports lasted (a slow cut,
/// here a delay past the 30 s hold) fails and leaves no complete backup: an export may have
/// committed between two of its cuts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_that_outlasts_its_hold_does_not_stand() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let slow = [("QUIVER_DELAY".to_string(), "backup-cut:31000".to_string())];
    let node = LocalNode::start_with_env(&dir.path().join("source"), &["--config", &config], &slow).await.unwrap();
    let client = with_rides(&node).await.with_silence_timeout(Duration::from_secs(120));
    let to = dir.path().join("backups").display().to_string();
    let failed = client.create_backup(&to, &Default::default(), |_| {}).await.unwrap_err().to_string();
    assert!(failed.contains("longer to cut the groups than its hold"), "{failed}");
    assert!(listed(&to, &[]).iter().all(|(_, complete)| !complete), "no complete backup");
}

/// Every stored object of the backups under `dir` but their catalogs.
fn stored_objects(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(stored_objects(&path));
        } else if path.file_name().is_some_and(|n| n != "catalog.json") {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_is_unreadable_without_its_key_and_restores_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = LocalNode::start(&dir.path().join("source"), &["--config", &config]).await.unwrap();
    let client = with_rides(&node).await;
    let ids: Vec<i64> = (0..50).collect();
    let rows = ids.iter().map(|id| quiver_tests::driver_row(*id, quiver_tests::now_micros(), *id as f64 / 100.0, 1));
    client.write("rides", "driver_stats", rows.collect()).await.unwrap();
    let before = conv_rates(&client, &ids).await;
    let key = dir.path().join("backup.key");
    let other = dir.path().join("other.key");
    let key_s = key.to_str().unwrap();
    for file in [&key, &other] {
        ctl(&["backup", "new-key", file.to_str().unwrap()], &[]);
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let (plain_to, sealed_to) = (dir.path().join("plain"), dir.path().join("sealed"));
    let (plain_s, sealed_s) = (plain_to.to_str().unwrap(), sealed_to.to_str().unwrap());
    create(&node.endpoint(), plain_s, &[]);
    let id = create(&node.endpoint(), sealed_s, &["--encrypt-key", key_s]);
    let holds = |path: &Path| std::fs::read(path).unwrap().windows(12).any(|w| w == b"driver_stats");
    assert!(stored_objects(&plain_to).iter().any(|p| holds(p)), "the plain backup holds the names in the clear");
    let sealed = stored_objects(&sealed_to);
    assert!(!sealed.is_empty() && !sealed.iter().any(|p| holds(p)), "nothing of the data readable: {sealed:?}");

    let fails = |args: &[&str]| {
        let out = ctl_result(args, &[]);
        assert!(!out.status.success(), "quiverctl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let verify = ["backup", "verify", &id, "--from", sealed_s];
    assert!(fails(&verify).contains("is encrypted"));
    let wrong = fails(&[&verify[..], &["--encrypt-key", other.to_str().unwrap()]].concat());
    assert!(wrong.contains("not the one"), "{wrong}");
    assert!(ctl(&[&verify[..], &["--encrypt-key", key_s]].concat(), &[]).contains("verified"));
    // An incremental backup is sealed as what it builds on.
    let refused = quiverctl(&node.endpoint(), &["backup", "create", "--to", sealed_s, "--incremental"], None);
    assert!(!refused.success && refused.stderr.contains("is encrypted"), "{}", refused.stderr);
    create(&node.endpoint(), sealed_s, &["--incremental", "--encrypt-key", key_s]);

    let data = dir.path().join("restored");
    let [addr, http] = <[String; 2]>::try_from(free_addrs(2).unwrap()).unwrap();
    let restore =
        ["backup", "restore", &id, "--from", sealed_s, "--data-dir", data.to_str().unwrap(), "--advertise", &addr];
    assert!(fails(&restore).contains("is encrypted"));
    assert!(!data.exists(), "a refused restore leaves no data dir");
    ctl(&[&restore[..], &["--encrypt-key", key_s]].concat(), &[]);
    drop(node);
    let mut restored = LocalNode::spawn_at(&data, &addr, &http, &["--config", &config], &[]).unwrap();
    restored.wait_ready(READY).await.unwrap();
    assert_eq!(conv_rates(&restored.client().await.unwrap(), &ids).await, before);
}

/// The README's backup recipe, each command as written against one node and an S3-compatible
/// server, the backup id taken from the last `create`'s output as an operator would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_backup_recipe_runs_as_written() {
    use quiver_tests::recipe::{commands, readme_blocks, replaced, run_to_end};
    let s3 = S3Server::start(&["backups", "quiver-restored"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start_with_env(&dir.path().join("node"), &[], &s3.env()).await.unwrap();
    let client = with_rides(&node).await;
    let ts = now_micros();
    client
        .write("rides", "driver_stats", (0..100).map(|id| driver_row(id, ts, id as f64, id)).collect())
        .await
        .unwrap();
    let members = free_addrs(3).unwrap();
    let replace = [
        ("/var/lib/quiver", "restored"),
        ("10.0.0.1:7070", members[0].as_str()),
        ("10.0.0.2:7070", members[1].as_str()),
        ("10.0.0.3:7070", members[2].as_str()),
    ];
    let block = replaced(&readme_blocks("### Backups")[0], &replace);
    let env: String = s3.env().iter().map(|(k, v)| format!("export {k}={v}\n")).collect();
    let prelude = format!("{env}export QUIVER_ENDPOINT={}\n", node.endpoint());
    let placeholder = "20261130T221503Z-120";
    let mut created: Vec<String> = Vec::new();
    let mut outputs = String::new();
    for command in commands(&block) {
        let command = command.replace(placeholder, created.last().map_or(placeholder, String::as_str));
        let out = run_to_end(dir.path(), &format!("{prelude}{command}"));
        if command.contains("backup create") {
            let id = out.split_whitespace().nth(1).expect("create prints the backup's id");
            assert!(out.contains("holds 100 online rows"), "{command}:\n{out}");
            created.push(id.to_string());
        }
        outputs += &format!("$ {command}\n{out}");
    }
    assert_eq!(created.len(), 3, "{outputs}");
    assert!(outputs.contains(&format!("backup {} verified", created[2])), "the encrypted one verifies:\n{outputs}");
    assert!(outputs.contains(&format!("restored backup {}", created[1])), "the incremental one restores:\n{outputs}");
    assert!(outputs.contains("start it with: quiver-node --data-dir restored"), "{outputs}");
    let listed: Vec<String> = listed("s3://backups/quiver", &s3.env()).into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, created, "delete --keep 7 kept all three");
}
