//! Three real `quiver-node` processes on loopback: they form one cluster from the same
//! `--initial-cluster` list, replicate every group three ways, and keep every acknowledged
//! write when the leader is killed with SIGKILL.

use std::time::{Duration, Instant};

use quiver_admin::local_node::free_addr;
use quiver_client::{Client, Consistency, FeatureSelection, Freshness, OnlineRequest, Value};
use quiver_tests::{LocalNode, RIDES, driver_key, driver_row, now_micros};

const READY: Duration = Duration::from_secs(60);

async fn form_cluster(dir: &std::path::Path) -> Vec<LocalNode> {
    let listen: Vec<String> = (0..3).map(|_| free_addr().unwrap()).collect();
    let http: Vec<String> = (0..3).map(|_| free_addr().unwrap()).collect();
    let initial = listen.join(",");
    let mut nodes: Vec<LocalNode> = (0..3)
        .map(|i| {
            let args = ["--initial-cluster", initial.as_str(), "--shards", "4"];
            LocalNode::spawn_at(&dir.join(format!("node{}", i + 1)), &listen[i], &http[i], &args).unwrap()
        })
        .collect();
    for node in &mut nodes {
        node.wait_ready(READY).await.unwrap();
    }
    nodes
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
        assert!(g.has_leader, "group {}", g.group_id);
    }
    // The meta group's leader reports how far each replica is behind it.
    let meta_leader = status.groups[0].leader_id as usize;
    let from_leader = nodes[meta_leader - 1].client().await.unwrap().status().await.unwrap();
    let replicas: Vec<u64> = from_leader.groups[0].replicas.iter().map(|r| r.node_id).collect();
    assert_eq!(replicas, vec![1, 2, 3], "{from_leader:?}");
    // Any node takes requests: followers redirect to the leader.
    let defs = quiver_admin::input::parse_definitions(RIDES).unwrap();
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
    client.apply(&quiver_admin::input::parse_definitions(RIDES).unwrap()).await.unwrap();
    write_one_by_one(&client, 0..60, |id| id as f64).await;

    let status = client.status().await.unwrap();
    let leader = status.groups.iter().find(|g| g.group_id == 0).map(|g| g.leader_id).unwrap();
    let victim = (leader - 1) as usize;
    nodes[victim].kill_9().unwrap();
    let survivor = (victim + 1) % 3;
    nodes[survivor].wait_ready(READY).await.unwrap();
    let client = nodes[survivor].client().await.unwrap();

    // Every acknowledged write is there, read linearizably through the new leaders.
    for id in 0..60 {
        assert_eq!(
            conv_rate(&client, id, Consistency::Linearizable).await,
            Some(Value::Float64(id as f64)),
            "driver {id}"
        );
    }
    // Writes go on without the dead node, and it catches up when it returns.
    write_one_by_one(&client, 60..80, |id| id as f64).await;
    nodes[victim].restart().await.unwrap();
    replica_has(&nodes[victim].client().await.unwrap(), 0..80, |id| id as f64).await;
}

/// Waits until `client`'s node sees a leader other than `not` for every group.
async fn leaders_move_away_from(client: &Client, not: u64) {
    let deadline = Instant::now() + READY;
    loop {
        if let Ok(status) = client.status().await
            && status.groups.iter().all(|g| g.has_leader && g.leader_id != not)
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
    first.apply(&quiver_admin::input::parse_definitions(RIDES).unwrap()).await.unwrap();
    write_one_by_one(&first, 0..8, |_| 1.0).await;
    let leader = first.status().await.unwrap().groups[0].leader_id;
    let paused = (leader - 1) as usize;
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
