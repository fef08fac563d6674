//! `quiver-faults`: a cluster of real nodes in network namespaces, clients writing and reading
//! a few keys, faults injected meanwhile, a linearizability check of what the clients saw,
//! and a check that the offline store got every acknowledged write exactly once. Run through
//! `tests/faults/run.sh` (as root); docs/faults.md says how to read it.

mod checker;
mod history;
mod lab;
mod nemesis;
mod offline;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use quiver_admin::local_node::LocalNode;
use quiver_client::Client;
use tokio::sync::Mutex;

use crate::checker::{Op, Report};
use crate::lab::Lab;
use crate::nemesis::{Cluster, FaultKind, Nemesis};
use crate::workload::Workload;

#[derive(Parser)]
#[command(about = "Runs Quiver under faults and checks that every read was linearizable")]
struct Args {
    /// How long clients run with faults, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=7))]
    nodes: u8,
    /// Faults to inject, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,pause,partition,clock,disk,shard-ops")]
    faults: Vec<FaultKind>,
    /// Keys the clients share.
    #[arg(long, default_value_t = 6)]
    keys: i64,
    /// Concurrent clients (default: two per node).
    #[arg(long)]
    clients: Option<u32>,
    /// Where the run keeps its history, node logs and data (default: a new folder in /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Checks a kept history (`history.jsonl`) again instead of running.
    #[arg(long, conflicts_with_all = ["seconds", "dir"])]
    check: Option<PathBuf>,
}

/// How long a node may take to serve after it starts or after the faults end.
const READY: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let outcome = match &args.check {
        Some(path) => history::load(path).map(|ops| report(&checker::check(&ops), true)),
        None => run(&args).await,
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Prints the check's outcome, "N violations" last; true when the history passed.
fn report(report: &Report, recovered: bool) -> bool {
    println!("checked {} operations on {} keys", report.ops, report.keys);
    for v in &report.violations {
        println!("violation on key {}: {} operations linearize, then {:?}", v.key, v.linearized, v.stuck_at);
    }
    if !report.undecided.is_empty() {
        println!("undecided (search budget spent) on keys {:?}", report.undecided);
    }
    println!("{} violations", report.violations.len());
    report.violations.is_empty() && report.undecided.is_empty() && recovered
}

async fn run(args: &Args) -> Result<bool> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("quiver-faults-{}", quiver_tests::now_micros() / 1_000_000)),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    let tag = std::process::id() % 200 + 20;
    let lab = Lab::create(&dir, args.nodes.into(), tag).context("making the hosts (root is needed)")?;
    let cluster = Arc::new(Mutex::new(start_cluster(lab, &dir).await?));
    let endpoints = cluster.lock().await.endpoints.clone();
    let subnet = cluster.lock().await.lab.subnet.clone();
    println!("{} nodes in namespaces on {subnet}.0/24; history and logs in {}", args.nodes, dir.display());

    let setup = Client::connect(endpoints[0].clone()).await?;
    setup.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES)?).await?;
    let start = Instant::now();
    let workload = Workload {
        endpoints: Arc::new(endpoints.clone()),
        keys: args.keys,
        base_ts: quiver_tests::now_micros() - 3_600_000_000,
        start,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_on_ctrl_c.store(true, Ordering::Relaxed);
        }
    });
    let clients: Vec<_> = (0..args.clients.unwrap_or(2 * u32::from(args.nodes)))
        .map(|id| tokio::spawn(workload.clone().client(id, stop.clone())))
        .collect();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let nemesis =
        Arc::new(Nemesis { cluster: cluster.clone(), kinds: args.faults.clone(), start, events: events.clone() });
    let host_faults = tokio::spawn(nemesis.clone().host_faults(stop.clone()));
    let shard_ops =
        args.faults.contains(&FaultKind::ShardOps).then(|| tokio::spawn(nemesis.clone().shard_ops(stop.clone())));

    let until = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    host_faults.await?.context("injecting faults")?;
    if let Some(ops) = shard_ops {
        ops.await?;
    }
    let mut history: Vec<Op> = Vec::new();
    for client in clients {
        history.extend(client.await?);
    }

    // Everything healed, every node up: each key read once more, with nothing in the way.
    let recovered = recover(&cluster).await;
    for key in 0..args.keys {
        if let Some(op) = final_read(&workload, &endpoints, key).await {
            history.push(op);
        } else {
            println!("key {key} could not be read after the faults ended");
        }
    }
    let finals = history.iter().filter(|op| op.client == u32::MAX).count() as i64;
    let path = dir.join("history.jsonl");
    history::save(&path, &history)?;
    let events = events.lock().unwrap().clone();
    let log: Vec<String> = events.iter().map(|e| format!("{:.3} {}", e.at as f64 / 1e6, e.what)).collect();
    std::fs::write(dir.join("faults.log"), log.join("\n") + "\n")?;
    summarize(&history, &events);
    println!("history: {} (check again: quiver-faults --check {0})", path.display());
    let checked = checker::check(&history);
    let online = report(&checked, recovered.is_ok() && finals == args.keys);
    let offline = offline_check(&endpoints, &dir.join("offline"), args.keys, workload.base_ts - 1, &history).await;
    Ok(online && offline)
}

/// The offline check (`offline::check`, with its `keys` and `before`) through the first node
/// that answers; prints its outcome, "N offline violations" last, and says whether it passed.
async fn offline_check(endpoints: &[String], store: &std::path::Path, keys: i64, before: i64, history: &[Op]) -> bool {
    let mut failed = Vec::new();
    for endpoint in endpoints {
        let outcome = match Client::connect(endpoint.clone()).await {
            Ok(client) => offline::check(&client, store, keys, before, history).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(report) => {
                println!("offline: {} rows of the clients' keys in committed files", report.rows);
                for problem in &report.problems {
                    println!("offline violation: {problem}");
                }
                println!("{} offline violations", report.problems.len());
                return report.problems.is_empty();
            }
            Err(e) => failed.push(format!("through {endpoint}: {e:#}")),
        }
    }
    println!("the offline check could not run: {}", failed.join("; "));
    false
}

/// Starts a node in each host's namespace, all forming one cluster, and waits until each serves.
async fn start_cluster(lab: Lab, dir: &std::path::Path) -> Result<Cluster> {
    let listen: Vec<String> = lab.hosts.iter().map(|h| format!("{}:7000", h.ip)).collect();
    let initial = listen.join(",");
    let (secret, store) = (dir.join("cluster.secret"), dir.join("offline"));
    let secret = secret.to_str().context("a path that is not UTF-8")?;
    let store = store.to_str().context("a path that is not UTF-8")?;
    // Off loopback without TLS: members still prove themselves with the cluster secret. The
    // offline store is on the host's disk, which every namespace sees.
    let args = [
        ["--initial-cluster", initial.as_str(), "--cluster-secret", secret, "--offline-store", store].as_slice(),
        &["--shards", "4", "--insecure"],
    ]
    .concat();
    let mut nodes = Vec::new();
    for (host, addr) in lab.hosts.iter().zip(&listen) {
        let prefix = host.prefix();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let http = format!("{}:8000", host.ip);
        let node = LocalNode::spawn_under(&prefix, host.data_dir(), addr, &http, &args, &node_env(host))?;
        host.adopt(node.pid().context("a node that did not start")?)?;
        nodes.push(node);
    }
    for node in &mut nodes {
        node.wait_ready(READY).await?;
    }
    let endpoints = listen.iter().map(|a| format!("http://{a}")).collect();
    Ok(Cluster { nodes, endpoints, lab })
}

/// A node's environment: its clock, and exports as slow as to a distant object store (held
/// between reading the queue and writing the files), so that faults often land inside one.
fn node_env(host: &lab::Host) -> Vec<(String, String)> {
    let mut env = Lab::clock_env(host);
    env.push(("QUIVER_DELAY".into(), "export:300".into()));
    env
}

/// Heals every fault and waits for every node to serve again.
async fn recover(cluster: &Mutex<Cluster>) -> Result<()> {
    let mut cluster = cluster.lock().await;
    cluster.heal_all()?;
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        if let Err(e) = node.wait_ready(READY).await {
            // CI keeps only what is printed: the end of the node's log goes with it.
            println!("node {} did not recover: {e:#}\nthe end of its log:\n{}", i + 1, node.log_tail(40));
            bail!("node {} did not recover", i + 1);
        }
    }
    Ok(())
}

/// A linearizable read of `key` after the run, retried through each node for a minute.
async fn final_read(workload: &Workload, endpoints: &[String], key: i64) -> Option<Op> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for endpoint in endpoints.iter().cycle() {
        if Instant::now() > deadline {
            return None;
        }
        if let Ok(client) = Client::connect(endpoint.clone()).await {
            let op = workload.read(&client, u32::MAX, key).await;
            if op.ret.is_some() {
                return Some(op);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// What ran: operations by outcome, and faults by kind.
fn summarize(history: &[Op], events: &[nemesis::Event]) {
    let writes = history.iter().filter(|op| matches!(op.kind, checker::Kind::Write { .. }));
    let (acked, unknown) = writes.fold((0, 0), |(a, u), op| if op.ret.is_some() { (a + 1, u) } else { (a, u + 1) });
    let reads = history.iter().filter(|op| matches!(op.kind, checker::Kind::Read { .. }) && op.ret.is_some()).count();
    println!("writes: {acked} acknowledged, {unknown} of unknown outcome; reads answered: {reads}");
    let mut kinds = std::collections::BTreeMap::new();
    for event in events {
        *kinds.entry(event.kind).or_insert(0) += 1;
    }
    println!("events: {kinds:?}");
}
