//! Shard operations on real `quiver-node` processes, started with `quiverctl shard ...` as
//! an operator would: leadership transfers under load, replica moves through kill -9,
//! rebalancing, and refusals of what cannot be done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use quiver_client::{
    Client, ClusterMap, Consistency, FeatureSelection, Freshness, OnlineRequest, OpKind, Outcome, Value,
};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_proto::v1::feature_service_client::FeatureServiceClient;
use quiver_tests::{LocalNode, RIDES, driver_key, driver_row, now_micros, quiverctl};

const READY: Duration = Duration::from_secs(60);

async fn cluster(dir: &std::path::Path, count: usize, shards: &str, env: &[(String, String)]) -> Vec<LocalNode> {
    let nodes = LocalNode::start_cluster(dir, count, &["--shards", shards], env, READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    nodes
}

/// Three nodes, two shards, drivers 0..300 written (conv_rate = id), every leader known;
/// the nodes, a client of the first and the shard map.
async fn loaded_cluster(dir: &std::path::Path, env: &[(String, String)]) -> (Vec<LocalNode>, Client, ClusterMap) {
    let nodes = cluster(dir, 3, "2", env).await;
    let client = nodes[0].client().await.unwrap();
    let rows = (0..300).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let map = leaders_known(&client).await;
    (nodes, client, map)
}

/// The shard map once every shard's leader is known.
async fn leaders_known(client: &Client) -> ClusterMap {
    map_until(client, "every leader known", |m| m.shard_map.shards.iter().all(|s| s.leader.is_some())).await
}

/// Shard `shard`'s leader once the map reports the one the group has now, as `client`'s node
/// (a replica) sees it: the map says who reported last, and an election since may not be
/// reported yet.
async fn reported_leader(client: &Client, shard: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = client.status().await.unwrap();
        let group = status.groups.iter().find(|g| g.group_id == shard).unwrap();
        let map = client.shard_map().await.unwrap();
        let reported = map.shard_map.shard(shard).unwrap();
        if let Some(leader) = group.leader.filter(|l| reported.leader == Some(*l)) {
            return leader;
        }
        assert!(Instant::now() < deadline, "shard {shard}'s leader reported: {group:?} / {reported:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shard driver `id` lives in.
fn shard_of(map: &ClusterMap, id: i64) -> u64 {
    let hash = key_hash(&encode_entity_key(&[Value::Int64(id)]));
    map.shard_map.shard_for(hash).unwrap().id
}

/// Shards led by each of `nodes`, as the map reports them.
fn leader_counts(map: &ClusterMap, nodes: &[u64]) -> Vec<usize> {
    nodes.iter().map(|n| map.shard_map.shards.iter().filter(|s| s.leader == Some(*n)).count()).collect()
}

/// Waits until `done` holds for the shard map as `client`'s node sees it.
async fn map_until(client: &Client, what: &str, done: impl Fn(&ClusterMap) -> bool) -> ClusterMap {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(map) = client.shard_map().await
            && done(&map)
        {
            return map;
        }
        assert!(Instant::now() < deadline, "{what}: {:#?}", client.shard_map().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs quiverctl off the async threads, so the writers keep going meanwhile.
async fn ctl(endpoint: String, args: Vec<String>) -> quiver_tests::CliOutput {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        quiverctl(&endpoint, &args, None)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `count` writers of new drivers (`first + w`, stepping by `count`), through `clients` in
/// turn, until `stop`; each returns the drivers whose write was acknowledged.
fn spawn_writers(clients: &[Client], count: i64, first: i64, stop: &Arc<AtomicBool>) -> JoinSet<Vec<i64>> {
    let mut writers = JoinSet::new();
    for w in 0..count {
        let (client, stop) = (clients[w as usize % clients.len()].clone(), stop.clone());
        writers.spawn(async move {
            let mut written = Vec::new();
            let mut id = first + w;
            while !stop.load(Ordering::Relaxed) {
                let row = driver_row(id, now_micros(), id as f64, id);
                if client.write("rides", "driver_stats", vec![row]).await.is_ok() {
                    written.push(id);
                }
                id += count;
            }
            written
        });
    }
    writers
}

async fn acknowledged(mut writers: JoinSet<Vec<i64>>) -> Vec<i64> {
    let mut written = Vec::new();
    while let Some(ids) = writers.join_next().await {
        written.extend(ids.unwrap());
    }
    written
}

/// A driver's conv_rate, read linearizably by whatever node the client routes to.
async fn conv_rate(client: &Client, id: i64) -> Option<Value> {
    let request = OnlineRequest {
        project: "rides".into(),
        features: FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
        entities: vec![driver_key(id)],
        consistency: Consistency::Linearizable,
    };
    let answer = client.get_online(request).await.unwrap();
    let value = &answer.rows[0][0];
    (value.status == Freshness::Present).then(|| value.value.clone())
}

/// A linearizable read of driver `id` sent to one node and no other (no routing, no
/// retries): what that node alone answers.
async fn pinned_read(endpoint: &str, id: i64) -> Option<f64> {
    let mut client = FeatureServiceClient::connect(endpoint.to_string()).await.ok()?;
    let request = quiver_proto::v1::GetOnlineFeaturesRequest {
        project: "rides".into(),
        features: Some(quiver_proto::online_selection_to_proto(FeatureSelection::Refs(vec![
            "driver_stats:conv_rate".into(),
        ]))),
        entities: vec![quiver_proto::entity_key_to_proto(driver_key(id))],
        consistency: quiver_proto::consistency_to_proto(Consistency::Linearizable) as i32,
        routes: Vec::new(),
    };
    let reply = client.get_online_features(request).await.ok()?.into_inner();
    let answer = quiver_proto::online_features_from_proto(reply);
    match &answer.rows[0][0].value {
        Value::Float64(v) => Some(*v),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_spread_by_themselves_and_move_under_load_without_a_lost_write_or_a_stale_read() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3, "4", &[]).await;
    let client = nodes[0].client().await.unwrap();
    // Every shard starts led by the first node; the placement rule spreads them.
    let map = map_until(&client, "leaders spread", |m| {
        m.shard_map.shards.iter().all(|s| s.leader.is_some()) && leader_counts(m, &[1, 2, 3]).iter().all(|c| *c <= 2)
    })
    .await;
    let shard = shard_of(&map, 1);
    let old = map.shard_map.shard(shard).unwrap().leader.unwrap();
    let new = if old == 3 { 1 } else { old + 1 };

    // One writer raises driver 1's value; others write new drivers. Each remembers what
    // was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let counter = {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let row = driver_row(1, now_micros(), n as f64, 1);
                if client.write("rides", "driver_stats", vec![row]).await.is_ok() {
                    acked.fetch_max(n, Ordering::SeqCst);
                }
            }
        })
    };
    let writers = spawn_writers(std::slice::from_ref(&client), 2, 1000, &stop);
    // A reader pinned on the old leader: whatever it answers must include every write
    // acknowledged before the read began.
    let reader = {
        let (endpoint, stop, acked) = (nodes[old as usize - 1].endpoint(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let (mut answered, mut refused) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let before = acked.load(Ordering::SeqCst);
                match pinned_read(&endpoint, 1).await {
                    Some(v) => {
                        assert!(v >= before as f64, "stale read on the old leader: {v} < acknowledged {before}");
                        answered += 1;
                    }
                    None => refused += 1,
                }
            }
            (answered, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = shard.to_string();
    let to = new.to_string();
    let out = ctl(nodes[2].endpoint(), args(&["shard", "transfer-leader", &id, "--to", &to])).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("shard {shard} is led by node {old}")), "{}", out.stdout);
    assert!(out.stdout.contains("done"), "{}", out.stdout);
    map_until(&client, "the new leader in the map", |m| m.shard_map.shard(shard).unwrap().leader == Some(new)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    counter.await.unwrap();
    let (answered, refused) = reader.await.unwrap();
    assert!(
        answered > 0 && refused > 0,
        "the pinned reader was answered before and refused after: {answered}/{refused}"
    );
    let written = acknowledged(writers).await;
    assert!(written.len() > 10, "the writers made progress: {}", written.len());
    // Nothing acknowledged is lost, through the new leader.
    let last = acked.load(Ordering::SeqCst);
    assert_eq!(conv_rate(&client, 1).await, Some(Value::Float64(last as f64)));
    for id in written {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_spreads_the_leaders_an_operator_left_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let no_balance = [("QUIVER_BALANCE_LEADERS".to_string(), "false".to_string())];
    let nodes = cluster(dir.path(), 3, "8", &no_balance).await;
    let client = nodes[0].client().await.unwrap();
    let map = leaders_known(&client).await;
    // With balancing off, leaders stay where the groups elected them: mostly on the first
    // node, which initialises every group; the others are brought there.
    for shard in map.shard_map.shards.iter().filter(|s| s.leader != Some(1)) {
        let op = client.start_shard_operation(OpKind::TransferLeader { shard: shard.id, to: 1 }).await.unwrap();
        let ended = client.wait_for_operation(op.id, READY, |_| {}).await.unwrap();
        assert_eq!(ended.outcome, Outcome::Done);
    }
    let map = map_until(&client, "every leader on node 1", |m| leader_counts(m, &[1]) == [8]).await;
    let before = leader_counts(&map, &[1, 2, 3]);

    let out = ctl(nodes[1].endpoint(), args(&["shard", "rebalance"])).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let plan = format!("leaders per node 1:{} 2:{} 3:{}", before[0], before[1], before[2]);
    assert!(out.stdout.contains(&plan), "{}", out.stdout);
    let map = client.shard_map().await.unwrap();
    let counts = leader_counts(&map, &[1, 2, 3]);
    assert!(counts.iter().all(|c| *c <= 3), "no node leads over ⌈8/3⌉ shards: {counts:?}\n{}\n{map:#?}", out.stdout);
    assert_eq!(counts.iter().sum::<usize>(), 8);
    // The transfers were recorded as the placement rule's, the rebalance as the operator's.
    let shards = quiverctl(&nodes[0].endpoint(), &["shards"], None).stdout;
    assert!(shards.contains("rebalance replicas and leaders") && shards.contains("operator"), "{shards}");
    assert!(shards.contains("transfer leadership") && shards.contains("placement"), "{shards}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_shard_operations_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let no_balance = [("QUIVER_BALANCE_LEADERS".to_string(), "false".to_string())];
    let nodes = cluster(dir.path(), 3, "2", &no_balance).await;
    let client = nodes[0].client().await.unwrap();
    let before = leaders_known(&client).await;
    let meta_leader = client.status().await.unwrap().groups[0].leader.unwrap();
    let endpoint = nodes[meta_leader as usize - 1].endpoint();
    let refused = |list: &[&str], why: &str| {
        let out = quiverctl(&endpoint, list, None);
        assert!(!out.success && out.stderr.contains(why), "{list:?}: {}{}", out.stdout, out.stderr);
    };
    refused(&["shard", "transfer-leader", "9", "--to", "2"], "no shard 9");
    refused(&["shard", "transfer-leader", "1", "--to", "7"], "node 7 is not an active node");
    refused(&["shard", "move", "1", "--from", "1", "--to", "2"], "node 2 already holds a replica");
    refused(&["shard", "move", "1", "--from", "5", "--to", "4"], "node 5 holds no replica of shard 1");
    refused(&["shard", "move", "1", "--from", "1", "--to", "4"], "node 4 is not an active node");
    // Leadership asked of the node that has it: nothing to do, nothing recorded.
    let led_by = before.shard_map.shard(1).unwrap().leader.unwrap().to_string();
    let same = quiverctl(&endpoint, &["shard", "transfer-leader", "1", "--to", &led_by], None);
    assert!(same.success && same.stdout.contains("nothing to do"), "{}{}", same.stdout, same.stderr);

    // A shard busy with one operation refuses a second: a transfer to a paused node stays
    // under way.
    let leader = before.shard_map.shard(2).unwrap().leader.unwrap();
    let target = (1..=3).find(|n| *n != leader && *n != meta_leader).unwrap();
    nodes[target as usize - 1].signal("STOP").unwrap();
    let to = target.to_string();
    let started = quiverctl(&endpoint, &["shard", "transfer-leader", "2", "--to", &to, "--no-wait"], None);
    assert!(started.success && started.stdout.contains("started"), "{}{}", started.stdout, started.stderr);
    refused(&["shard", "transfer-leader", "2", "--to", &leader.to_string()], "shard 2 is busy");
    nodes[target as usize - 1].signal("CONT").unwrap();
    let after = client.shard_map().await.unwrap();
    let layout =
        |m: &ClusterMap| m.shard_map.shards.iter().map(|s| (s.id, s.replicas.clone(), s.epoch)).collect::<Vec<_>>();
    assert_eq!(layout(&after), layout(&before), "refused operations changed nothing");
    assert_eq!(after.operations.len(), 1, "only the transfer is under way: {:?}", after.operations);
    assert_eq!(after.finished.len(), before.finished.len(), "nothing ended: {:?}", after.finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_node_that_is_down_fails_and_the_shard_keeps_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let no_balance = [("QUIVER_BALANCE_LEADERS".to_string(), "false".to_string())];
    let (mut nodes, client, _) = loaded_cluster(dir.path(), &no_balance).await;
    let meta_leader = client.status().await.unwrap().groups[0].leader.unwrap();
    let leader = reported_leader(&client, 2).await;
    let target = (1..=3).find(|n| *n != leader && *n != meta_leader).unwrap();
    // Killed with the log still: the target holds every entry, as a live one would.
    nodes[target as usize - 1].kill_9().unwrap();

    let op = client.start_shard_operation(OpKind::TransferLeader { shard: 2, to: target }).await.unwrap();
    let ended = client.wait_for_operation(op.id, READY, |_| {}).await.unwrap();
    match &ended.outcome {
        Outcome::Failed(why) => assert!(why.contains(&format!("node {target} has not answered")), "{why}"),
        other => panic!("a transfer to a dead node ended {other:?}"),
    }
    assert_eq!(client.shard_map().await.unwrap().shard_map.shard(2).unwrap().leader, Some(leader));
    for id in [0, 150, 299] {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
}

/// Waits until every shard has three replicas, none moves, no operation is under way and
/// replicas are balanced over `nodes`.
async fn placement_settles(client: &Client, nodes: &[u64]) -> ClusterMap {
    map_until(client, "placement settles", |m| {
        let loads: Vec<usize> =
            nodes.iter().map(|n| m.shard_map.shards.iter().filter(|s| s.replicas.contains(n)).count()).collect();
        m.operations.is_empty()
            && m.shard_map.shards.iter().all(|s| s.replicas.len() == 3 && !s.moving() && s.leader.is_some())
            && loads.iter().max() == loads.iter().min()
    })
    .await
}

/// Moves a replica of a shard to the node that lacks one (not the metadata leader), kills
/// `victim(map, shard, metadata leader)` with SIGKILL right after the move is recorded, and
/// waits until the move is done, asking a surviving node; the victim is restarted after.
/// (Done means the shard's voters are its new replicas, the target among them.)
async fn move_through_a_kill(nodes: &mut [LocalNode], victim: impl Fn(&ClusterMap, u64, u64) -> u64) {
    let all: Vec<u64> = (1..=nodes.len() as u64).collect();
    let map = placement_settles(&nodes[0].client().await.unwrap(), &all).await;
    let meta_leader = nodes[0].client().await.unwrap().status().await.unwrap().groups[0].leader.unwrap();
    let (shard, from, to) = map
        .shard_map
        .shards
        .iter()
        .find_map(|s| {
            let to = all.iter().copied().find(|n| !s.replicas.contains(n))?;
            (to != meta_leader).then(|| (s.id, s.replicas[0], to))
        })
        .unwrap();
    let kill = victim(&map, shard, meta_leader) as usize - 1;
    let (id, from_arg, to_arg) = (shard.to_string(), from.to_string(), to.to_string());
    let out = quiverctl(
        &nodes[kill].endpoint(),
        &["shard", "move", &id, "--from", &from_arg, "--to", &to_arg, "--no-wait"],
        None,
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    nodes[kill].kill_9().unwrap();
    let survivor = nodes[(kill + 1) % nodes.len()].client().await.unwrap();
    let op: u64 = out.stdout.split("operation ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    let ended = survivor.wait_for_operation(op, Duration::from_secs(120), |_| {}).await.unwrap();
    assert_eq!(ended.outcome, Outcome::Done, "{ended:?}");
    let now = survivor.shard_map().await.unwrap();
    assert!(now.finished.iter().any(|f| f.op.id == op && f.op.requested), "the operator's move: {now:?}");
    nodes[kill].restart().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_move_finishes_through_kill_9_of_the_shard_leader_and_of_the_metadata_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 4, "4", &[]).await;
    let clients = [nodes[0].client().await.unwrap(), nodes[1].client().await.unwrap()];
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&clients, 4, 0, &stop);
    move_through_a_kill(&mut nodes, |map, shard, _| map.shard_map.shard(shard).unwrap().leader.unwrap()).await;
    move_through_a_kill(&mut nodes, |_, _, meta_leader| meta_leader).await;
    stop.store(true, Ordering::Relaxed);
    let written = acknowledged(writers).await;
    assert!(written.len() > 20, "the writers made progress: {}", written.len());
    let client = nodes[2].client().await.unwrap();
    for id in written {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
}

/// Every shard's range in map order: adjacent, from 0 to the top of the hash space.
fn assert_covers_the_hash_space(map: &ClusterMap) {
    let shards = &map.shard_map.shards;
    assert_eq!(shards.first().map(|s| s.start), Some(0));
    assert_eq!(shards.last().map(|s| s.end), Some(u64::MAX));
    for pair in shards.windows(2) {
        assert_eq!(pair[0].end.checked_add(1), Some(pair[1].start), "{map:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_under_writes_and_linearizable_reads_loses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Drivers 0..300 are written once and must read the same throughout.
    let (nodes, client, before) = loaded_cluster(dir.path(), &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&[client.clone(), nodes[1].client().await.unwrap()], 3, 10_000, &stop);
    let mut readers = JoinSet::new();
    for r in 0..2i64 {
        let (client, stop) = (nodes[r as usize].client().await.unwrap(), stop.clone());
        readers.spawn(async move {
            let mut reads = 0;
            let mut id = r;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
                reads += 1;
                id = (id + 7) % 300;
            }
            reads
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = ctl(nodes[2].endpoint(), args(&["shard", "split", "1"])).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("shard 1 holds") && out.stdout.contains("done"), "{}", out.stdout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = acknowledged(writers).await;
    while let Some(reads) = readers.join_next().await {
        assert!(reads.unwrap() > 0, "every reader read");
    }
    assert!(written.len() > 10, "the writers made progress: {}", written.len());

    // One more shard: the parent kept the lower half, the child took the upper one, both at
    // a new epoch version, on the same replicas.
    let after = client.shard_map().await.unwrap();
    assert_eq!(after.shard_map.shards.len(), before.shard_map.shards.len() + 1);
    assert_covers_the_hash_space(&after);
    let (old, parent) = (before.shard_map.shard(1).unwrap(), after.shard_map.shard(1).unwrap());
    let child = after.shard_map.shards.iter().find(|s| s.start == parent.end + 1).unwrap();
    assert_eq!((parent.start, child.end), (old.start, old.end));
    // By default at the median key: about as many of the first drivers on each side.
    let in_old: Vec<i64> = (0..300).filter(|id| shard_of(&before, *id) == 1).collect();
    let above = in_old.iter().filter(|id| shard_of(&after, **id) == child.id).count();
    assert!(above * 4 >= in_old.len() && above * 4 <= in_old.len() * 3, "{above} of {}", in_old.len());
    let recorded = after.finished.iter().find_map(|f| match f.op.kind {
        OpKind::Split { at, .. } => Some(at),
        _ => None,
    });
    assert_eq!(recorded, Some(child.start), "the operation's record names the point chosen");
    assert_eq!((parent.epoch.version, child.epoch.version), (old.epoch.version + 1, old.epoch.version + 1));
    assert_eq!(child.replicas, old.replicas);
    for id in written.into_iter().chain(0..300) {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
    assert!((0..300).any(|id| shard_of(&after, id) == child.id), "the child holds some of the drivers read");
    // Every replica hosts the child.
    map_until(&client, "the child has a leader", |m| m.shard_map.shard(child.id).unwrap().leader.is_some()).await;
    for node in &nodes {
        let status = node.client().await.unwrap().status().await.unwrap();
        assert!(
            status.groups.iter().any(|g| g.group_id == child.id),
            "node {} hosts shard {}",
            status.node_id,
            child.id
        );
    }
}

/// A cluster under writes whose shard 1 is split while its leader dies (kill -9, at crash
/// point `point`): the next leader finishes the split at the point recorded, the dead node
/// is back. The nodes, a client of a survivor, and the writers with their stop flag.
async fn split_through_a_crash(
    dir: &std::path::Path,
    point: &str,
) -> (Vec<LocalNode>, Client, JoinSet<Vec<i64>>, Arc<AtomicBool>) {
    let marker = dir.join("crashed-once");
    let env = [
        ("QUIVER_FAILPOINT".to_string(), point.to_string()),
        ("QUIVER_FAILPOINT_ONCE".to_string(), marker.display().to_string()),
    ];
    let (mut nodes, client, _) = loaded_cluster(dir, &env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = [client.clone(), nodes[1].client().await.unwrap(), nodes[2].client().await.unwrap()];
    let writers = spawn_writers(&clients, 3, 10_000, &stop);

    let out = quiverctl(&nodes[0].endpoint(), &["shard", "split", "1", "--no-wait"], None);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let dead = quiver_tests::crashed(&mut nodes, &marker, READY).await;
    let survivor = nodes[(dead + 1) % 3].client().await.unwrap();
    let map = map_until(&survivor, "the split finished by the next leader", |m| {
        m.shard_map.shards.len() == 3 && m.operations.is_empty()
    })
    .await;
    assert_covers_the_hash_space(&map);
    // Done, at the point chosen before the crash: the child starts there.
    let done = map.finished.iter().find_map(|f| match f.op.kind {
        OpKind::Split { at, child, .. } if f.outcome == Outcome::Done => Some((at, child)),
        _ => None,
    });
    let (at, child) = done.unwrap_or_else(|| panic!("the split is done: {:?}", map.finished));
    assert_eq!(map.shard_map.shard(child).unwrap().start, at);
    nodes[dead].set_env(Vec::new());
    nodes[dead].restart().await.unwrap();
    (nodes, survivor, writers, stop)
}

/// Every acknowledged write and every loaded driver reads back.
async fn every_write_reads_back(client: &Client, writers: JoinSet<Vec<i64>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    let written = acknowledged(writers).await;
    assert!(written.len() > 10, "the writers made progress: {}", written.len());
    for id in written.into_iter().chain(0..300) {
        assert_eq!(conv_rate(client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_finishes_through_kill_9_of_the_shard_leader_and_of_the_metadata_leader() {
    let dir = tempfile::tempdir().unwrap();
    // The shard leader that applied the split dies before recording it in the shard map.
    let (mut nodes, survivor, writers, stop) = split_through_a_crash(dir.path(), "split-before-commit").await;

    // The metadata leader dies right after the second split is recorded as started.
    let meta_leader = survivor.status().await.unwrap().groups[0].leader.unwrap() as usize - 1;
    let other = (meta_leader + 1) % 3;
    let out = quiverctl(&nodes[other].endpoint(), &["shard", "split", "2", "--no-wait"], None);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    nodes[meta_leader].kill_9().unwrap();
    let survivor = nodes[other].client().await.unwrap();
    let map =
        map_until(&survivor, "the second split done", |m| m.shard_map.shards.len() == 4 && m.operations.is_empty())
            .await;
    assert_covers_the_hash_space(&map);
    assert!(map.finished.iter().filter(|f| f.outcome == Outcome::Done).count() >= 2, "{:?}", map.finished);
    nodes[meta_leader].restart().await.unwrap();
    every_write_reads_back(&survivor, writers, &stop).await;
}

/// The leader that chose the split point dies before proposing the split; the next one,
/// holding other rows by then, splits at the point chosen, and the operation is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_point_chosen_by_a_leader_that_dies_is_the_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, survivor, writers, stop) = split_through_a_crash(dir.path(), "split-after-choosing").await;
    every_write_reads_back(&survivor, writers, &stop).await;
}

/// The leader dies with the split's rows being copied ahead on every replica; the next one
/// finishes the split from its own copy, and the dead node, back without its copy, applies
/// the split by copying everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_whose_leader_dies_while_copying_ahead_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, survivor, writers, stop) = split_through_a_crash(dir.path(), "split-copying").await;
    every_write_reads_back(&survivor, writers, &stop).await;
    // The node that died applies the split too, and then hosts the child.
    let groups = survivor.shard_map().await.unwrap().shard_map.shards.len() + 1;
    for node in &nodes {
        let client = node.client().await.unwrap();
        let deadline = std::time::Instant::now() + READY;
        while client.status().await.unwrap().groups.len() != groups {
            assert!(std::time::Instant::now() < deadline, "node at {} hosts every group", node.endpoint());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A merge whose upper shard cannot finish exporting (the export is stalled) is abandoned at
/// its deadline, and the upper shard serves its range again: no range stays frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_cannot_finish_is_abandoned_and_its_shard_thaws() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[sharding]\nmerge_deadline_ms = 2000\n").unwrap();
    let env = [("QUIVER_DELAY".to_string(), "export:600000".to_string())];
    let extra = ["--shards", "2", "--config", config.to_str().unwrap()];
    let nodes = LocalNode::start_cluster(dir.path(), 1, &extra, &env, READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let rows = (0..300).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();

    let out = quiverctl(&nodes[0].endpoint(), &["shard", "merge", "2", "1", "--no-wait"], None);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let map = map_until(&client, "the merge abandoned", |m| m.operations.is_empty() && !m.finished.is_empty()).await;
    let ended = &map.finished.last().unwrap().outcome;
    assert!(matches!(ended, Outcome::Failed(why) if why.contains("abandoned")), "{ended:?}");
    assert_eq!(map.shard_map.shards.len(), 2);
    // Every driver reads again, the upper shard's too, and takes writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let upper: Vec<i64> = (0..300).filter(|id| shard_of(&map, *id) == 2).collect();
    while client.write("rides", "driver_stats", vec![driver_row(upper[0], now_micros(), -1.0, 0)]).await.is_err() {
        assert!(Instant::now() < deadline, "shard 2 never thawed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(conv_rate(&client, upper[0]).await, Some(Value::Float64(-1.0)));
    for id in upper.iter().skip(1).chain(&[0]) {
        assert!(conv_rate(&client, *id).await.is_some(), "driver {id}");
    }
}

/// A node killed for good has its replicas made again on the live nodes once it has been
/// silent for `--replace-dead-after`; back, it drops the copies it no longer hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_and_drops_its_stale_copies_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--shards", "4", "--replace-dead-after", "3s"];
    let mut nodes = LocalNode::start_cluster(dir.path(), 4, &extra, &[], READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let rows = (0..300).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    // Placement spreads the twelve replicas, three per node.
    let balanced = |m: &ClusterMap| {
        m.operations.is_empty()
            && m.shard_map.shards.iter().all(|s| !s.moving() && s.leader.is_some())
            && (1..=4).all(|n| m.shard_map.shards.iter().filter(|s| s.replicas.contains(&n)).count() == 3)
    };
    let map = map_until(&client, "replicas spread", balanced).await;
    let index = 1;
    let dead = nodes[index].client().await.unwrap().status().await.unwrap().node_id;
    assert_ne!(dead, client.status().await.unwrap().node_id);
    nodes[index].kill_9().unwrap();

    // A move to it, asked for now, ends either way: rolled back once the node is silent, or
    // done (a node that was a member a moment ago can look caught up), and then replaced.
    let from = |m: &ClusterMap| {
        let shard = m.shard_map.shards.iter().find(|s| !s.replicas.contains(&dead)).unwrap();
        (shard.id, shard.replicas[0])
    };
    let (shard, source) = from(&map);
    let op = client.start_shard_operation(OpKind::MoveReplica { shard, from: source, to: dead }).await.unwrap();
    client.wait_for_operation(op.id, Duration::from_secs(60), |_| {}).await.unwrap();
    let out = quiverctl(&nodes[0].endpoint(), &["shard", "cancel", &op.id.to_string()], None);
    assert!(!out.success && out.stderr.contains("under way"), "{}{}", out.stdout, out.stderr);

    // Every shard back on three live replicas, none on the dead node; every row there.
    let live: Vec<u64> = (1..=4).filter(|n| *n != dead).collect();
    let settled = |m: &ClusterMap| {
        m.operations.is_empty()
            && m.shard_map.shards.iter().all(|s| {
                !s.moving() && s.voters.len() == 3 && s.voters.iter().all(|v| live.contains(v)) && s.leader.is_some()
            })
    };
    map_until(&client, "the dead node's replicas made again", settled).await;
    // Its vote in the meta group went to a live node too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut voters = client.status().await.unwrap().groups[0].voters.clone();
        voters.sort_unstable();
        if voters.len() == 3 && !voters.contains(&dead) {
            break;
        }
        assert!(Instant::now() < deadline, "the meta group's voters are {voters:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in 0..300 {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }

    // Back, the node hosts what the map gives it, no stale copy.
    nodes[index].restart().await.unwrap();
    let back = nodes[index].client().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, map) = (back.status().await.unwrap(), client.shard_map().await.unwrap());
        let open: Vec<u64> = status.groups.iter().map(|g| g.group_id).filter(|g| *g != 0).collect();
        let assigned: Vec<u64> = map.shard_map.shards.iter().filter(|s| s.hosted_by(dead)).map(|s| s.id).collect();
        if open == assigned && !map.shard_map.shards.iter().any(|s| s.moving()) {
            break;
        }
        assert!(Instant::now() < deadline, "node {dead} hosts {open:?}, the map gives it {assigned:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A replica move to a node that went down is rolled back once the node is silent, and the
/// shard goes on on its voters: the move holds up nothing for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_a_node_that_is_down_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--shards", "2", "--replace-dead-after", "3s"];
    let nodes = LocalNode::start_cluster(dir.path(), 3, &extra, &[], READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    // A fourth node joins, and dies before it holds the shard moved to it.
    let [listen, http] = <[String; 2]>::try_from(quiver_admin::local_node::free_addrs(2).unwrap()).unwrap();
    let join = LocalNode::join_args(dir.path(), &nodes[0].endpoint());
    let args: Vec<&str> = join.iter().map(String::as_str).chain(extra).collect();
    let mut fourth = LocalNode::spawn_at(&dir.path().join("node4"), &listen, &http, &args, &[]).unwrap();
    fourth.wait_ready(READY).await.unwrap();
    let id = fourth.client().await.unwrap().status().await.unwrap().node_id;
    fourth.kill_9().unwrap();
    let map = map_until(&client, "a shard without node 4", |m| {
        m.shard_map.shards.iter().any(|s| !s.moving() && !s.hosted_by(id))
    })
    .await;
    let shard = map.shard_map.shards.iter().find(|s| !s.moving() && !s.hosted_by(id)).unwrap().clone();
    let kind = OpKind::MoveReplica { shard: shard.id, from: shard.replicas[0], to: id };
    let op = client.start_shard_operation(kind).await.unwrap();
    let ended = client.wait_for_operation(op.id, Duration::from_secs(60), |_| {}).await.unwrap();
    assert!(matches!(&ended.outcome, Outcome::Failed(_)), "{ended:?}");
    let after = client.shard_map().await.unwrap();
    let now = after.shard_map.shard(shard.id).unwrap();
    assert!(!now.moving() && !now.hosted_by(id), "{now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_restores_one_shard_with_every_row_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, client, before) = loaded_cluster(dir.path(), &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&[client.clone(), nodes[1].client().await.unwrap()], 3, 10_000, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let out = ctl(nodes[2].endpoint(), args(&["shard", "merge", "2", "1"])).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("merge shard 2 into shard 1") && out.stdout.contains("done"), "{}", out.stdout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = acknowledged(writers).await;
    assert!(written.len() > 10, "the writers made progress: {}", written.len());

    let after = client.shard_map().await.unwrap();
    assert_eq!(after.shard_map.shards.len(), 1);
    assert_covers_the_hash_space(&after);
    let merged = &after.shard_map.shards[0];
    let versions = before.shard_map.shards.iter().map(|s| s.epoch.version).max().unwrap();
    assert_eq!((merged.id, merged.epoch.version), (1, versions + 1));
    for id in written.into_iter().chain(0..300) {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
    // Every node let the merged-away shard go.
    for node in &nodes {
        let client = node.client().await.unwrap();
        let deadline = Instant::now() + READY;
        while client.status().await.unwrap().groups.iter().any(|g| g.group_id == 2) {
            assert!(Instant::now() < deadline, "shard 2 still open on {}", client.endpoint());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // What cannot be merged is refused.
    let out = quiverctl(&nodes[0].endpoint(), &["shard", "merge", "1", "2"], None);
    assert!(!out.success && out.stderr.contains("no shard 2"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_over_its_row_limit_splits_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[sharding]\nsplit_above_rows = 300\nsplit_check_interval_ms = 300\n").unwrap();
    let config = config.display().to_string();
    let extra = ["--shards", "1", "--config", config.as_str()];
    let nodes = LocalNode::start_cluster(dir.path(), 3, &extra, &[], READY).await.unwrap();
    let client = nodes[0].client().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let rows = (0..1000).map(|id| driver_row(id, now_micros(), id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();

    // 1,000 rows over a limit of 300: split at the median, then each half again.
    let map = map_until(&client, "the shards split down to the limit", |m| {
        m.shard_map.shards.len() >= 4 && m.operations.is_empty()
    })
    .await;
    assert_covers_the_hash_space(&map);
    let splits: Vec<_> = map.finished.iter().filter(|f| matches!(f.op.kind, OpKind::Split { .. })).collect();
    assert!(splits.len() >= 3 && splits.iter().all(|f| !f.op.requested && f.outcome == Outcome::Done), "{splits:?}");
    for id in 0..1000 {
        assert_eq!(conv_rate(&client, id).await, Some(Value::Float64(id as f64)), "driver {id}");
    }
}
