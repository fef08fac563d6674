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

/// Every read through every endpoint answered, with each driver's rate as written.
#[track_caller]
fn all_answered(seen: &BTreeMap<String, serde_json::Value>, endpoints: &[String], rounds: u64, when: &str) {
    assert_eq!(seen.len(), endpoints.len(), "{when}: {seen:?}");
    for (endpoint, reads) in seen {
        assert_eq!(reads["errors"], serde_json::json!([]), "{when}: through {endpoint}");
        assert_eq!(reads["answered"].as_u64(), Some(rounds), "{when}: through {endpoint}");
        for id in 1..=DRIVERS {
            assert_eq!(reads["values"][id.to_string()].as_f64(), Some(id as f64 / 100.0), "{when}: driver {id}");
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
    all_answered(&python_reads(&endpoints, 1), &endpoints, 1, "at rest");
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
    all_answered(&seen, &endpoints, rounds.into(), "during leader transfers");
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
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let admin = quiver_tests::admin_token(&dir.path().join("node"));
    let root = Client::builder(node.endpoint()).token(&admin).connect().await.unwrap();
    root.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
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
