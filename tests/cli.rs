//! `quiverctl` as a user types it, against a real node.

use quiver_tests::{LocalNode, quiverctl};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_versions_incompatible_changes() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &[]).await.unwrap();
    let ep = node.endpoint();
    let rides = format!("{EXAMPLES}/rides.yaml");
    let first = quiverctl(&ep, &["apply", "-f", &rides], None);
    assert!(first.success, "{}", first.stderr);
    assert!(first.stdout.contains("feature set driver_stats: created"), "{}", first.stdout);
    let again = quiverctl(&ep, &["apply", "-f", &rides], None);
    assert!(again.success && again.stdout.contains("no changes"), "{}", again.stdout);

    let text = std::fs::read_to_string(&rides).unwrap();
    let compatible = dir.path().join("compatible.yaml");
    std::fs::write(
        &compatible,
        text.replace(
            "      - {name: city, type: string, tags: [pii]}",
            "      - {name: city, type: string, tags: [pii]}\n      - {name: rating, type: float32}",
        ),
    )
    .unwrap();
    let out = quiverctl(&ep, &["apply", "-f", compatible.to_str().unwrap()], None);
    assert!(out.stdout.contains("feature set driver_stats: updated in place"), "{}", out.stdout);
    let incompatible = dir.path().join("incompatible.yaml");
    std::fs::write(&incompatible, text.replace("{name: conv_rate, type: float64", "{name: conv_rate, type: float32"))
        .unwrap();
    let out = quiverctl(&ep, &["apply", "-f", incompatible.to_str().unwrap()], None);
    assert!(out.stdout.contains("created driver_stats@2"), "{}", out.stdout);

    let describe = quiverctl(&ep, &["describe", "feature-set", "driver_stats"], None);
    assert!(describe.stdout.contains("versions: 1, 2") && describe.stdout.contains("float32"), "{}", describe.stdout);
    let v1 = quiverctl(&ep, &["describe", "feature-set", "driver_stats@1"], None);
    assert!(v1.stdout.contains("rating") && v1.stdout.contains("pii"), "{}", v1.stdout);
    let entity = quiverctl(&ep, &["describe", "entity", "driver"], None);
    assert!(entity.stdout.contains("driver_id") && entity.stdout.contains("int64"));
    let vector = quiverctl(&ep, &["describe", "vector", "driver_model_v2"], None);
    assert!(vector.stdout.contains("driver_ratings:num_ratings"), "{}", vector.stdout);
    let list = quiverctl(&ep, &["list"], None);
    assert!(list.stdout.contains("driver_model_v1") && list.stdout.contains("ml-platform@example.com"));
    let missing = quiverctl(&ep, &["describe", "vector", "nope"], None);
    assert!(!missing.success && missing.stderr.contains("unknown feature vector 'nope'"), "{}", missing.stderr);

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace("entity: driver\n    timestamp: rated_at", "entity: rider\n    timestamp: rated_at"),
    )
    .unwrap();
    let out = quiverctl(&ep, &["apply", "-f", broken.to_str().unwrap()], None);
    assert!(!out.success && out.stderr.contains("unknown entity 'rider'"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_get_from_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &[]).await.unwrap();
    let ep = node.endpoint();
    assert!(quiverctl(&ep, &["apply", "-f", &format!("{EXAMPLES}/rides.yaml")], None).success);

    let now = quiver_core::time::format_timestamp(quiver_tests::now_micros());
    let csv = format!(
        "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n1001,{now},0.5,0.25,12,Lisbon\n1002,{now},0.75,,3,Porto\n"
    );
    let file = dir.path().join("rows.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = quiverctl(&ep, &["push", "--feature-set", "driver_stats", file.to_str().unwrap()], None);
    assert!(out.success && out.stdout.contains("pushed 2 rows"), "{} {}", out.stdout, out.stderr);

    let jsonl =
        format!("{{\"driver_id\": 1003, \"event_timestamp\": \"{now}\", \"conv_rate\": 0.1, \"city\": \"Faro\"}}\n");
    let out = quiverctl(&ep, &["push", "--feature-set", "driver_stats", "-"], Some(&jsonl));
    assert!(out.success, "{}", out.stderr);

    let out = quiverctl(
        &ep,
        &[
            "get",
            "--features",
            "driver_stats:conv_rate,driver_stats:acc_rate",
            "--entity",
            "driver_id=1002",
            "--entity",
            "driver_id=1003",
            "--entity",
            "driver_id=5",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.success, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"{"driver_id":1002,"driver_stats:conv_rate":0.75,"driver_stats:acc_rate":null}"#,
            r#"{"driver_id":1003,"driver_stats:conv_rate":0.1,"driver_stats:acc_rate":null}"#,
            r#"{"driver_id":5,"driver_stats:conv_rate":null,"driver_stats:acc_rate":null}"#,
        ]
    );
    let table = quiverctl(&ep, &["get", "--vector", "driver_model_v1", "--entity", "driver_id=1001"], None);
    assert!(table.success, "{}", table.stderr);
    let row: Vec<&str> = table.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, vec!["1001", "0.5", "0.25", "12"]);
    assert!(!table.stdout.contains("stale"), "a linearizable read has no bound to show: {}", table.stdout);

    // A stale read says how far behind its answer may be, in either format.
    let stale = ["get", "--vector", "driver_model_v1", "--entity", "driver_id=1001", "--consistency", "stale"];
    let table = quiverctl(&ep, &stale, None);
    assert!(table.success, "{}", table.stderr);
    let bound = table.stdout.lines().last().unwrap();
    assert!(bound.starts_with("stale read: at most ") && bound.ends_with(" ms behind the shards' leaders"), "{bound}");
    let json = quiverctl(&ep, &[&stale[..], &["--format", "json"]].concat(), None);
    let line: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert!(line["staleness_bound_ms"].is_u64(), "{line}");
    assert_eq!(line["driver_stats:conv_rate"], 0.5);

    // One unparseable value anywhere rejects the file, naming row and field; nothing is written.
    let bad = format!("{csv}1004,{now},abc,0.1,1,Braga\n");
    std::fs::write(&file, bad).unwrap();
    let out = quiverctl(&ep, &["push", "--feature-set", "driver_stats", file.to_str().unwrap()], None);
    assert!(!out.success && out.stderr.contains("row 3") && out.stderr.contains("conv_rate"), "{}", out.stderr);
    let ragged = format!("{csv}1004,{now}\n");
    std::fs::write(&file, ragged).unwrap();
    let out = quiverctl(&ep, &["push", "--feature-set", "driver_stats", file.to_str().unwrap()], None);
    assert!(!out.success && out.stderr.contains("row 3"), "{}", out.stderr);
    let missing_ts = "{\"driver_id\": 1004, \"conv_rate\": 0.1}\n";
    let out = quiverctl(&ep, &["push", "--feature-set", "driver_stats", "-"], Some(missing_ts));
    assert!(!out.success && out.stderr.contains("event_timestamp"), "{}", out.stderr);
    let after = quiverctl(
        &ep,
        &["get", "--features", "driver_stats:conv_rate", "--entity", "driver_id=1004", "--format", "json"],
        None,
    );
    assert_eq!(after.stdout.trim(), r#"{"driver_id":1004,"driver_stats:conv_rate":null}"#);

    let bad_key = quiverctl(&ep, &["get", "--vector", "driver_model_v1", "--entity", "driver_id=abc"], None);
    assert!(!bad_key.success && bad_key.stderr.contains("driver_id"), "{}", bad_key.stderr);

    // The node's log, written to a file, is plain text: no terminal colours.
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(log.contains("starting") && !log.contains('\x1b'), "{}", &log[..log.len().min(400)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_group_with_its_leader_and_project_defaults_follow_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--shards", "4"]).await.unwrap();
    let ep = node.endpoint();
    let out = quiverctl(&ep, &["status", "--format", "json"], None);
    assert!(out.success, "{}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let groups = status["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5, "meta group plus 4 shards");
    assert!(groups.iter().all(|g| g["leader"] == 1 && g["applied_index"].as_u64().unwrap() >= 1));
    assert_eq!(status["nodes"][0]["up"], true);
    let table = quiverctl(&ep, &["status"], None);
    assert!(table.stdout.contains("LEADER") && table.stdout.contains("meta"));

    let none = quiverctl(&ep, &["list"], None);
    assert!(none.stdout.contains("no projects yet"));
    assert!(quiverctl(&ep, &["apply", "-f", &format!("{EXAMPLES}/rides.yaml")], None).success);
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "project: fraud\nentities:\n  - name: card\n    join_keys: [{name: card_id, type: string}]\n",
    )
    .unwrap();
    assert!(quiverctl(&ep, &["apply", "-f", other.to_str().unwrap()], None).success);
    let ambiguous = quiverctl(&ep, &["describe", "entity", "driver"], None);
    assert!(!ambiguous.success && ambiguous.stderr.contains("--project"), "{}", ambiguous.stderr);
    let chosen = quiverctl(&ep, &["--project", "fraud", "describe", "entity", "card"], None);
    assert!(chosen.success && chosen.stdout.contains("card_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = quiver_tests::node_with_rides(dir.path(), &[]).await;
    client
        .write("rides", "driver_stats", vec![quiver_tests::driver_row(1, quiver_tests::now_micros(), 0.5, 1)])
        .await
        .unwrap();
    let (status, body) = quiver_tests::http_get(node.http_addr(), "/health");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    assert!(status.contains("200"));
    assert!(metrics.contains("quiver_rows_written_total 1"), "{metrics}");
    assert!(metrics.contains("quiver_requests_total{code=\"ok\",method=\"WriteFeatures\"} 1"), "{metrics}");
    assert!(metrics.contains("quiver_raft_current_leader{group=\"0\"} 1"));
}

#[test]
fn the_demo_runs_the_main_job_end_to_end() {
    let out = std::process::Command::new(quiver_tests::binary("quiverctl").unwrap()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("feature set driver_stats: created"), "{stdout}");
    assert!(stdout.contains("pushed 15 rows"), "{stdout}");
    let vector_rows = stdout.lines().filter(|l| l.starts_with("100") && !l.contains("2026-11")).count();
    assert_eq!(vector_rows, 5, "one line per driver:\n{stdout}");
    assert!(stdout.contains(r#""driver_stats:city":"Lisbon""#), "{stdout}");
    assert!(stdout.contains("ingested 160 rows"), "{stdout}");
    assert!(stdout.contains("wrote 6 rows x 7 columns"), "{stdout}");
    assert!(stdout.contains("saved as dataset demo_train"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_linearizable_reads_share_read_index_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = quiver_tests::node_with_rides(dir.path(), &["--shards", "1"]).await;
    let now = quiver_tests::now_micros();
    client.write("rides", "driver_stats", vec![quiver_tests::driver_row(7, now, 0.5, 1)]).await.unwrap();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = client.clone();
        reads.spawn(async move { quiver_tests::read_drivers(&client, [7]).await });
    }
    while let Some(answer) = reads.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.rows[0][0].value, quiver_client::Value::Float64(0.5), "every read sees the write");
    }
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let served = quiver_tests::group_gauge(&metrics, "quiver_raft_linearizable_reads", 1);
    let rounds = quiver_tests::group_gauge(&metrics, "quiver_raft_read_index_rounds", 1);
    assert!(served >= 200, "{metrics}");
    assert!(rounds > 0 && rounds < served, "{rounds} rounds for {served} reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_linearizable_reads_ride_the_leader_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = quiver_tests::node_with_rides(dir.path(), &["--shards", "1"]).await;
    let now = quiver_tests::now_micros();
    client.write("rides", "driver_stats", vec![quiver_tests::driver_row(7, now, 0.5, 1)]).await.unwrap();
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let rounds_before = quiver_tests::group_gauge(&metrics, "quiver_raft_read_index_rounds", 1);
    // One after another, so without the lease every read would need a round of its own.
    for i in 0..100u32 {
        let value = quiver_client::Value::Float64(0.5 + f64::from(i));
        let row = quiver_tests::driver_row(7, now + i64::from(i), 0.5 + f64::from(i), 1);
        client.write("rides", "driver_stats", vec![row]).await.unwrap();
        let answer = quiver_tests::read_drivers(&client, [7]).await;
        assert_eq!(answer.rows[0][0].value, value, "read {i} sees the write before it");
    }
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let rounds = quiver_tests::group_gauge(&metrics, "quiver_raft_read_index_rounds", 1) - rounds_before;
    assert!(rounds < 50, "{rounds} read-index rounds for 100 sequential reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_printed_once_with_its_code_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &[]).await.unwrap();
    let ep = node.endpoint();
    let twice = dir.path().join("twice.yaml");
    std::fs::write(
        &twice,
        "project: p\nentities:\n  - name: e\n    join_keys: [{name: id, type: int64}]\nfeature_sets:\n  - name: s\n    \
         entity: e\n    timestamp: ts\n    features:\n      - {name: a, type: int64}\n      - {name: a, type: int64}\n",
    )
    .unwrap();
    let out = quiverctl(&ep, &["apply", "-f", twice.to_str().unwrap()], None);
    assert!(!out.success);
    let message = "invalid definition: feature of s 'a' is declared twice";
    assert_eq!(out.stderr.trim_end(), format!("error: {message} [Q1101]"), "{}", out.stderr);
    assert_eq!((out.stderr.matches(message).count(), out.stderr.matches("Q1101").count()), (1, 1), "{}", out.stderr);

    // An invalid argument the node refuses: a spine without the time column.
    assert!(quiverctl(&ep, &["apply", "-f", &format!("{EXAMPLES}/rides.yaml")], None).success);
    let spine = dir.path().join("spine.csv");
    std::fs::write(&spine, "driver_id,at\n1,2026-11-18T03:00:00Z\n").unwrap();
    let out_file = dir.path().join("train.parquet");
    let args = ["--project", "rides", "history", "--vector", "driver_model_v1", "--spine", spine.to_str().unwrap()];
    let out = quiverctl(&ep, &[&args[..], &["--out", out_file.to_str().unwrap()]].concat(), None);
    assert!(!out.success);
    let message = "invalid argument: the spine has no column 'event_timestamp'";
    assert_eq!((out.stderr.matches(message).count(), out.stderr.matches("Q1203").count()), (1, 1), "{}", out.stderr);

    // One that quiverctl finds itself, before sending anything, shows its code the same way.
    let rows = "{\"driver_id\": 1, \"event_timestamp\": 5, \"conv_rate\": \"high\"}\n";
    let out = quiverctl(&ep, &["--project", "rides", "push", "--feature-set", "driver_stats", "-"], Some(rows));
    assert!(!out.success);
    assert!(out.stderr.contains("row 1, field 'conv_rate'"), "{}", out.stderr);
    assert!(out.stderr.trim_end().ends_with("[Q1201]") && out.stderr.matches("Q1201").count() == 1, "{}", out.stderr);
}
