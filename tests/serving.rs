//! Serving for every client: a client that is not Quiver's own (stubs generated from
//! `proto/` by Python's grpcio-tools, no routing) reads linearizably through any node of a
//! cluster, the node asking the leaders of the shards it does not lead (one hop).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use quiver_client::{Client, OpKind};
use quiver_tests::{LocalNode, driver_row, http_get, now_micros};

const DRIVERS: i64 = 40;

/// What `tests/probe/reader.py` saw through each endpoint.
fn python_reads(endpoints: &[String], rounds: u32) -> BTreeMap<String, serde_json::Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut reader = std::process::Command::new("python3");
    reader.arg(format!("{root}/probe/reader.py")).args(["--proto", &format!("{root}/../proto")]);
    for endpoint in endpoints {
        reader.args(["--endpoint", endpoint.trim_start_matches("http://")]);
    }
    let out = reader.args(["--drivers", &DRIVERS.to_string(), "--rounds", &rounds.to_string()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the reader failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("the reader printed {stdout}: {e}"))
}

/// Every read through every endpoint answered, with each driver's rate as written (its id
/// divided by `per`).
#[track_caller]
fn all_answered(seen: &BTreeMap<String, serde_json::Value>, endpoints: &[String], rounds: u64, per: f64, when: &str) {
    assert_eq!(seen.len(), endpoints.len(), "{when}: {seen:?}");
    for (endpoint, reads) in seen {
        assert_eq!(reads["errors"], serde_json::json!([]), "{when}: through {endpoint}");
        assert_eq!(reads["answered"].as_u64(), Some(rounds), "{when}: through {endpoint}");
        for id in 1..=DRIVERS {
            assert_eq!(reads["values"][id.to_string()].as_f64(), Some(id as f64 / per), "{when}: driver {id}");
        }
    }
}

/// The node's `quiver_reads_forwarded_total`.
fn forwarded(node: &LocalNode) -> u64 {
    let (_, body) = http_get(node.http_addr(), "/metrics");
    let line = body.lines().find(|l| l.starts_with("quiver_reads_forwarded_total ")).unwrap_or("x 0");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_routing_reads_linearizably_through_every_node_during_leader_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = LocalNode::start_cluster(dir.path(), 3, &[], &[], Duration::from_secs(60)).await.unwrap();
    let endpoints: Vec<String> = nodes.iter().map(LocalNode::endpoint).collect();
    let client = Client::connect(endpoints[0].clone()).await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
    let ts = now_micros();
    let rows = (1..=DRIVERS).map(|id| driver_row(id, ts, id as f64 / 100.0, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();

    // Shards' leaders are spread over the nodes: each node leads some and not others.
    all_answered(&python_reads(&endpoints, 1), &endpoints, 1, 100.0, "at rest");
    let hops: u64 = nodes.iter().map(forwarded).sum();
    assert!(hops > 0, "some parts were read at their leader, one hop away");

    // Leadership moves around meanwhile; every read still answers, through every node.
    let moving = Arc::new(AtomicBool::new(true));
    let transfers = Arc::new(AtomicU64::new(0));
    let mover = tokio::spawn({
        let (moving, transfers, client) = (moving.clone(), transfers.clone(), client.clone());
        async move {
            let mut n = 0u64;
            while moving.load(Ordering::Relaxed) {
                n += 1;
                let map = client.shard_map().await.unwrap();
                let shard = &map.shard_map.shards[n as usize % map.shard_map.shards.len()];
                let Some(&to) = shard.voters.iter().find(|v| Some(**v) != shard.leader) else { continue };
                let op = client.start_shard_operation(OpKind::TransferLeader { shard: shard.id, to }).await;
                if let Ok(op) = op {
                    client.wait_for_operation(op.id, Duration::from_secs(30), |_| {}).await.unwrap();
                    transfers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let rounds = 40;
    let endpoints_moving = endpoints.clone();
    let seen = tokio::task::spawn_blocking(move || python_reads(&endpoints_moving, rounds)).await.unwrap();
    moving.store(false, Ordering::Relaxed);
    mover.await.unwrap();
    assert!(transfers.load(Ordering::Relaxed) > 0, "leadership moved while the reader read");
    all_answered(&seen, &endpoints, rounds.into(), 100.0, "during leader transfers");

    // Overwritten through another node, every value reads new through every node at once.
    let other = Client::connect(endpoints[1].clone()).await.unwrap();
    let rows = (1..=DRIVERS).map(|id| driver_row(id, ts + 1, id as f64 / 10.0, id)).collect();
    other.write("rides", "driver_stats", rows).await.unwrap();
    all_answered(&python_reads(&endpoints, 1), &endpoints, 1, 10.0, "after an overwrite");
}

/// A node with `--auth` under `dir` and the rides definitions; its cluster admin's client
/// and token.
async fn rides_with_auth(dir: &std::path::Path) -> (LocalNode, Client, String) {
    let node = LocalNode::start(&dir.join("node"), &["--auth"]).await.unwrap();
    let admin = quiver_tests::admin_token(&dir.join("node"));
    let root = Client::builder(node.endpoint()).token(&admin).connect().await.unwrap();
    root.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
    (node, root, admin)
}

/// What `tests/probe/health.py` saw at `endpoint`.
fn probed(endpoint: &str, token: Option<&str>) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut probe = std::process::Command::new("python3");
    probe.arg(format!("{root}/probe/health.py")).args(["--endpoint", endpoint.trim_start_matches("http://")]);
    if let Some(token) = token {
        probe.args(["--token", token]);
    }
    let out = probe.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the probe failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("the probe printed {stdout}: {e}"))
}

/// Load balancers and probes check health without a token; reflection (what `grpcurl`
/// lists) answers callers the node admits, and no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_need_no_token_and_reflection_answers_admitted_callers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root, _) = rides_with_auth(dir.path()).await;
    let viewer = quiver_tests::issue_token(&root, "viewer", "rides", quiver_client::Role::Viewer, false).await;
    let anonymous = probed(&node.endpoint(), None);
    assert_eq!(anonymous["health"], "SERVING", "{anonymous}");
    assert_eq!(anonymous["services"], "UNAUTHENTICATED", "{anonymous}");
    let wrong = probed(&node.endpoint(), Some("not-a-token"));
    assert_eq!(wrong["services"], "UNAUTHENTICATED", "{wrong}");
    let listed = probed(&node.endpoint(), Some(&viewer));
    let services: Vec<&str> = listed["services"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    for service in ["quiver.v1.FeatureService", "quiver.v1.RegistryService", "grpc.health.v1.Health"] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }
}

/// A JSON `POST` to the node's HTTP port with `token` (none: no header): the status and the
/// parsed body.
fn post(node: &LocalNode, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (code, text) = quiver_tests::http_post(node.http_addr(), path, &headers, body);
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered {code} {text:?}: {e}")))
}

/// The error an answer carries: its gRPC status name and message.
#[track_caller]
fn refused(answer: &(u16, serde_json::Value), code: u16, status: &str, names: &str) {
    assert_eq!(answer.0, code, "{answer:?}");
    assert_eq!(answer.1["error"]["status"], status, "{answer:?}");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(names), "{names:?} in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_servers_read_and_sources_push_json_over_http_with_the_checks_of_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root, admin) = rides_with_auth(dir.path()).await;
    let writer = quiver_tests::issue_token(&root, "writer", "rides", quiver_client::Role::Writer, false).await;
    let viewer = quiver_tests::issue_token(&root, "viewer", "rides", quiver_client::Role::Viewer, false).await;
    let pii = quiver_tests::issue_token(&root, "pii", "rides", quiver_client::Role::Viewer, true).await;

    // Push: rows typed by the feature set's schema, all or none.
    // Event times as RFC 3339 or integer microseconds.
    let (now, earlier) = (now_micros(), quiver_core::time::format_timestamp(now_micros() - 60_000_000));
    let rows = format!(
        r#"{{"project": "rides", "feature_set": "driver_stats", "rows": [
        {{"driver_id": 1001, "event_timestamp": "{earlier}", "conv_rate": 0.5, "city": "Oslo"}},
        {{"driver_id": 1002, "event_timestamp": {now}, "conv_rate": 0.25, "avg_daily_trips": 7}}]}}"#
    );
    let rows = rows.as_str();
    assert_eq!(post(&node, "/v1/push", Some(&writer), rows), (200, serde_json::json!({"rows_written": 2})));
    let bad_row = rows.replace("\"conv_rate\": 0.25", "\"conv_rate\": \"high\"").replace("0.5", "0.9");
    refused(&post(&node, "/v1/push", Some(&writer), &bad_row), 400, "INVALID_ARGUMENT", "row 2");
    refused(&post(&node, "/v1/push", Some(&viewer), rows), 403, "PERMISSION_DENIED", "rides");

    // Read: values, statuses and event times, as gRPC answers them; nothing of the bad push.
    let read = r#"{"project": "rides", "features": ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"],
                   "entities": [{"driver_id": 1001}, {"driver_id": 1002}, {"driver_id": 9}]}"#;
    let (code, answer) = post(&node, "/v1/features", Some(&viewer), read);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["features"], serde_json::json!(["driver_stats:conv_rate", "driver_stats:avg_daily_trips"]));
    assert_eq!(answer["results"][0]["values"], serde_json::json!([0.5, null]), "the bad push changed nothing");
    assert_eq!(answer["results"][1]["values"], serde_json::json!([0.25, 7]));
    assert_eq!(answer["results"][0]["event_timestamps"][0], earlier.as_str());
    assert_eq!(answer["results"][2]["statuses"], serde_json::json!(["NOT_FOUND", "NOT_FOUND"]));
    let vector = r#"{"project": "rides", "vector": "driver_model_v1", "entities": [{"driver_id": 1002}],
                     "consistency": "stale"}"#;
    let (code, stale) = post(&node, "/v1/features", Some(&viewer), vector);
    assert!(code == 200 && stale["staleness_bound_ms"].is_u64(), "a stale read states its bound: {stale}");

    // Personal data only with the grant, and its read on record.
    let city = r#"{"project": "rides", "features": ["driver_stats:city"], "entities": [{"driver_id": 1001}]}"#;
    refused(&post(&node, "/v1/features", Some(&viewer), city), 403, "PERMISSION_DENIED", "city");
    let (code, answer) = post(&node, "/v1/features", Some(&pii), city);
    assert_eq!((code, &answer["results"][0]["values"][0]), (200, &serde_json::json!("Oslo")), "{answer}");
    let audit = root.audit(&quiver_client::AuditQuery::default()).await.unwrap();
    assert!(audit.iter().any(|e| e.actor == "pii" && e.detail.contains("city")), "{audit:?}");

    // Each mistake answered with its status and a body that names it.
    refused(&post(&node, "/v1/features", None, read), 401, "UNAUTHENTICATED", "token");
    refused(&post(&node, "/v1/features", Some("qvt_wrong"), read), 401, "UNAUTHENTICATED", "");
    refused(
        &post(&node, "/v1/features", Some(&viewer), "{not json"),
        400,
        "INVALID_ARGUMENT",
        "not a features request",
    );
    let missing = r#"{"project": "rides", "features": ["driver_stats:conv_rate"]}"#;
    refused(&post(&node, "/v1/features", Some(&viewer), missing), 400, "INVALID_ARGUMENT", "entities");
    let extra = read.replace("\"project\"", "\"projekt\": 1, \"project\"");
    refused(&post(&node, "/v1/features", Some(&viewer), &extra), 400, "INVALID_ARGUMENT", "projekt");
    let unknown = read.replace("avg_daily_trips", "avg_daily_tips");
    refused(&post(&node, "/v1/features", Some(&viewer), &unknown), 404, "NOT_FOUND", "avg_daily_tips");
    let wrong_type = read.replace("{\"driver_id\": 9}", "{\"driver_id\": \"nine\"}");
    refused(&post(&node, "/v1/features", Some(&viewer), &wrong_type), 400, "INVALID_ARGUMENT", "driver_id");
    let other = read.replace("\"rides\"", "\"items\"");
    refused(&post(&node, "/v1/features", Some(&viewer), &other), 403, "PERMISSION_DENIED", "items");

    // A browser's dashboard cookie opens no door to the JSON API.
    let cookie = format!("cookie: quiver_token={admin}");
    let (code, _) = quiver_tests::http_post(node.http_addr(), "/v1/features", &[&cookie], read);
    assert_eq!(code, 401, "a cookie is the dashboard's only");
}

/// `/metrics`' `quiver_row_cache_hits` of each node, summed.
fn cache_hits(nodes: &[LocalNode]) -> u64 {
    let hits = |node: &LocalNode| {
        let (_, body) = http_get(node.http_addr(), "/metrics");
        body.lines().find_map(|l| l.strip_prefix("quiver_row_cache_hits ")?.parse::<u64>().ok()).unwrap_or(0)
    };
    nodes.iter().map(hits).sum()
}

/// Every driver's `conv_rate` read through `node`'s HTTP port, and the answer's staleness bound.
fn rates_through(node: &LocalNode, consistency: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let entities: Vec<_> = (1..=DRIVERS).map(|id| serde_json::json!({"driver_id": id})).collect();
    let read = serde_json::json!({"project": "rides", "features": ["driver_stats:conv_rate"],
                                  "entities": entities, "consistency": consistency});
    let (code, answer) = post(node, "/v1/features", None, &read.to_string());
    assert_eq!(code, 200, "{answer}");
    let rates = answer["results"].as_array().unwrap().iter().map(|r| r["values"][0].clone()).collect();
    (rates, answer["staleness_bound_ms"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_again_come_from_memory_and_an_overwrite_through_another_node_reads_new_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = LocalNode::start_cluster(dir.path(), 3, &[], &[], Duration::from_secs(60)).await.unwrap();
    let client = Client::connect(nodes[0].endpoint()).await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
    let ts = now_micros();
    let rate = |id: i64, per: f64| serde_json::json!(id as f64 / per);
    let written = |per: f64| (1..=DRIVERS).map(|id| rate(id, per)).collect::<Vec<_>>();
    client
        .write("rides", "driver_stats", (1..=DRIVERS).map(|id| driver_row(id, ts, id as f64 / 100.0, id)).collect())
        .await
        .unwrap();

    // Read twice through every node, linearizably (at the leaders) and stale (each node's own
    // replica): the second reads come from the caches.
    for _ in 0..2 {
        for node in &nodes {
            assert_eq!(rates_through(node, "linearizable"), (written(100.0), serde_json::json!(0)));
        }
    }
    let before = cache_hits(&nodes);
    assert!(before >= DRIVERS as u64, "reads of the same rows again were served from memory: {before} hits");
    for node in &nodes {
        let (rates, bound) = rates_through(node, "stale");
        assert!(bound.is_u64(), "a stale read states how far behind it may be: {bound}");
        assert!(rates.iter().zip(written(100.0)).all(|(r, w)| *r == w || r.is_null()), "{rates:?}");
    }

    // Overwritten with a push through another node: a linearizable read through any node
    // returns the new values at once, none a cached old one.
    let rows: Vec<_> = (1..=DRIVERS)
        .map(|id| serde_json::json!({"driver_id": id, "event_timestamp": ts + 1, "conv_rate": id as f64 / 10.0}))
        .collect();
    let push = serde_json::json!({"project": "rides", "feature_set": "driver_stats", "rows": rows});
    assert_eq!(post(&nodes[2], "/v1/push", None, &push.to_string()).0, 200);
    for node in &nodes {
        assert_eq!(rates_through(node, "linearizable").0, written(10.0), "through {}", node.endpoint());
    }
    assert!(cache_hits(&nodes) > before, "the cache still serves after the overwrite");

    // Each replica catches up; its stale reads then give the new values too, never older ones
    // once it has them.
    for node in &nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (rates, _) = rates_through(node, "stale");
            if rates == written(10.0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{} still answers {rates:?}", node.endpoint());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(rates_through(node, "stale").0, written(10.0));
    }
}
