//! The online benchmark: writes a deterministic data set through the Rust client with
//! concurrent writers, then reads feature vectors in a closed loop, so write throughput and
//! read latency percentiles of the serving path can be compared across changes. With
//! `--nodes 3` it runs on a cluster of three local node processes (every shard on three
//! replicas), reads both linearizably and stale, and times failovers: the leader of a shard
//! is killed with SIGKILL while a client writes to it, until a write is acknowledged again.
//! Push throughput is measured after the reads (which so see a settled store), at several
//! batch sizes, with `--writers` clients writing fresh rows for random entities in a closed loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use quiver_admin::local_node::LocalNode;
use quiver_client::{Client, Consistency, FeatureSelection, InputRow, OnlineRequest, Value, WriteOutcome};
use quiver_core::time::now_micros;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::output::{Format, Out};
use crate::python;

#[derive(clap::Args)]
pub struct Args {
    /// Entities loaded before the read benchmarks.
    #[arg(long, default_value_t = 100_000)]
    entities: i64,
    /// Rows per write request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Seconds per read and per push benchmark.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent readers, comma-separated.
    #[arg(long, default_value = "1,16,64")]
    concurrency: String,
    /// Rows per write request of the push benchmark (after the load), comma-separated.
    #[arg(long, default_value = "1,100,1000")]
    push_batches: String,
    /// 1: the embedded single-node default; 3: a cluster of local processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    /// With --nodes 3: how many shard leaders are killed, one after another, to time failover.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// With --nodes 3: every shard led by the first node (balancing off), instead of
    /// leaders spread evenly.
    #[arg(long)]
    one_leader: bool,
    /// A few seconds in all: 5,000 entities, 0.5 s per read and push benchmark, one failover.
    #[arg(long)]
    quick: bool,
    /// `json`: the figures as one JSON object on stdout, the text on stderr.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Comma-separated counts, as `--concurrency` and `--push-batches` take them.
fn counts(list: &str) -> Result<Vec<usize>> {
    list.split(',').map(|n| n.trim().parse().with_context(|| format!("{n:?} is not a count"))).collect()
}

/// Rows per load chunk of `redis`, `--batch`'s default: both stores then hold the same values.
pub const LOAD_BATCH: usize = 1_000;

/// The rows of load chunk `n` (the entities `ids`): each chunk has its own seed, so the data
/// set does not depend on which writer takes which chunk.
pub fn chunk_rows(n: usize, ids: &[i64], ts: i64) -> Vec<InputRow> {
    let mut rng = StdRng::seed_from_u64(n as u64);
    ids.iter().map(|id| row(&mut rng, *id, ts)).collect()
}

/// One driver's row: `f0`..`f7` float64 in [0, 1), `i0`, `i1` int64 in [0, 1000).
pub fn row(rng: &mut StdRng, id: i64, ts: i64) -> InputRow {
    let mut row: InputRow = (0..8).map(|i| (format!("f{i}"), Value::Float64(rng.random()))).collect();
    row.insert("i0".into(), Value::Int64(rng.random_range(0..1000)));
    row.insert("i1".into(), Value::Int64(rng.random_range(0..1000)));
    row.insert("driver_id".into(), Value::Int64(id));
    row.insert("event_timestamp".into(), Value::Timestamp(ts));
    row
}

/// Writes `entities` rows in batches of `batch` from `writers` writers: what they wrote (all
/// of it, for `Client::wait_for_export`) and how long it took.
pub async fn load(client: &Client, entities: i64, batch: usize, writers: usize) -> Result<(WriteOutcome, f64)> {
    // Fresh events: older than the feature set's TTL, reads would measure "expired" answers.
    let ts = now_micros();
    let ids: Vec<i64> = (0..entities).collect();
    let chunks: Vec<Vec<i64>> = ids.chunks(batch).map(<[i64]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter().enumerate().collect::<Vec<_>>()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (client, queue) = (client.clone(), queue.clone());
            tokio::spawn(async move {
                let mut written = WriteOutcome::default();
                loop {
                    let Some((n, ids)) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop() else { break };
                    let rows = chunk_rows(n, &ids, ts);
                    written.merge(&client.write("bench", "driver_stats", rows).await?);
                }
                anyhow::Ok(written)
            })
        })
        .collect();
    let mut total = WriteOutcome::default();
    for t in tasks {
        total.merge(&t.await??);
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

pub struct PushFigures {
    pub rows: u64,
    pub secs: f64,
    /// Per write request, µs.
    pub hist: Histogram<u64>,
}

/// The writers that run beside an operation being measured (a split, a backup).
#[derive(clap::Args)]
pub struct WriteLoad {
    /// Concurrent writers, alone and beside the operation.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Rows per write request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Seconds of writes alone first, the baseline.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
}

impl WriteLoad {
    /// Writes to `keys` entities alone for `seconds`: the baseline.
    pub async fn alone(&self, client: &Client, keys: i64) -> Result<PushFigures> {
        push(client, keys, self.batch, self.writers, for_secs(self.seconds)).await
    }

    /// Writes to `keys` entities while `operation` runs; answers its outcome and the writes'.
    pub async fn beside<T>(
        &self,
        client: &Client,
        keys: i64,
        operation: impl std::future::Future<Output = T>,
    ) -> Result<(T, PushFigures)> {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until: Until = {
            let done = done.clone();
            Arc::new(move || done.load(std::sync::atomic::Ordering::Relaxed))
        };
        let (client, batch, writers) = (client.clone(), self.batch, self.writers);
        let writes = tokio::spawn(async move { push(&client, keys, batch, writers, until).await });
        let outcome = operation.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok((outcome, writes.await??))
    }
}

/// Prints one line of write figures and answers them as JSON.
pub fn say_writes(out: &Out, when: &str, f: &PushFigures) -> serde_json::Value {
    let (p50, p99) = (f.hist.value_at_quantile(0.5), f.hist.value_at_quantile(0.99));
    let rate = f.rows as f64 / f.secs;
    out.say(format!("{when:<24} {rate:>10.0} rows/s   p50 {p50:>7} us   p99 {p99:>7} us   ({:.1} s)", f.secs));
    json!({"rows": f.rows, "secs": f.secs, "rows_per_sec": rate, "p50_us": p50, "p99_us": p99})
}

/// Says when a closed loop of requests should stop.
pub type Until = Arc<dyn Fn() -> bool + Send + Sync>;

/// The end of a loop that runs for `secs`.
pub fn for_secs(secs: f64) -> Until {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    Arc::new(move || Instant::now() >= deadline)
}

/// `writers` clients each write `batch` fresh rows of consecutive entities from a random
/// start, one request after another, until `until` says so.
pub async fn push(client: &Client, entities: i64, batch: usize, writers: usize, until: Until) -> Result<PushFigures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|worker| {
            let (client, until) = (client.clone(), until.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(1_000 + worker as u64);
                let mut hist = Histogram::<u64>::new(3)?;
                let mut written = 0;
                while !until() {
                    let (start, ts) = (rng.random_range(0..entities), now_micros());
                    let rows = (0..batch as i64).map(|i| row(&mut rng, (start + i) % entities, ts)).collect();
                    let t = Instant::now();
                    written += client.write("bench", "driver_stats", rows).await?.rows_written;
                    hist.record(t.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok((written, hist))
            })
        })
        .collect();
    let (mut rows, mut hist) = (0, Histogram::<u64>::new(3)?);
    for t in tasks {
        let (written, h) = t.await??;
        rows += written;
        hist.add(h)?;
    }
    Ok(PushFigures { rows, secs: started.elapsed().as_secs_f64(), hist })
}

pub struct ReadFigures {
    pub ops: u64,
    pub secs: f64,
    pub hist: Histogram<u64>,
}

/// `concurrency` readers each read `per_request` random entities' vector, one request after
/// another, until `until` says so.
pub async fn read_loop(
    client: &Client,
    entities: i64,
    (per_request, consistency): (usize, Consistency),
    concurrency: usize,
    until: Until,
) -> Result<ReadFigures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, until) = (client.clone(), until.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(worker as u64);
                let mut hist = Histogram::<u64>::new(3)?;
                while !until() {
                    let keys = (0..per_request)
                        .map(|_| {
                            BTreeMap::from([("driver_id".to_string(), Value::Int64(rng.random_range(0..entities)))])
                        })
                        .collect();
                    let request = OnlineRequest {
                        project: "bench".into(),
                        features: FeatureSelection::Vector("all".into()),
                        entities: keys,
                        consistency,
                    };
                    let t = Instant::now();
                    client.get_online(request).await?;
                    hist.record(t.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok(hist)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    Ok(ReadFigures { ops: hist.len(), secs: started.elapsed().as_secs_f64(), hist })
}

/// One HTTP/1.1 connection reading a random entity's vector from `POST /v1/features`, one
/// request at a time, until `until`.
async fn http_reads(addr: &str, entities: i64, until: Until) -> Result<ReadFigures> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let url = format!("http://{addr}/v1/features");
    let mut rng = StdRng::seed_from_u64(7);
    let (started, mut hist) = (Instant::now(), Histogram::<u64>::new(3)?);
    while !until() {
        let body = json!({"project": "bench", "vector": "all",
                          "entities": [{"driver_id": rng.random_range(0..entities)}]});
        let t = Instant::now();
        let answer = client.post(&url).body(body.to_string()).send().await?;
        anyhow::ensure!(answer.status().is_success(), "{url} answered {}", answer.status());
        answer.bytes().await?;
        hist.record(t.elapsed().as_micros() as u64)?;
    }
    Ok(ReadFigures { ops: hist.len(), secs: started.elapsed().as_secs_f64(), hist })
}

/// One client without routing (the generated gRPC stub, as any language has) reading driver
/// 0 linearizably through `endpoint`, one request at a time, until `until`.
async fn unrouted_reads(endpoint: &str, until: Until) -> Result<ReadFigures> {
    use quiver_proto::v1::{self, feature_service_client::FeatureServiceClient};
    let mut stub = FeatureServiceClient::connect(endpoint.to_string()).await?;
    let key = v1::EntityKey { keys: [("driver_id".to_string(), quiver_proto::value_to_proto(Value::Int64(0)))].into() };
    let request = v1::GetOnlineFeaturesRequest {
        project: "bench".into(),
        features: Some(v1::get_online_features_request::Features::Vector("all".into())),
        entities: vec![key],
        consistency: v1::Consistency::Linearizable.into(),
        routes: Vec::new(),
    };
    let (started, mut hist) = (Instant::now(), Histogram::<u64>::new(3)?);
    while !until() {
        let t = Instant::now();
        stub.get_online_features(request.clone()).await?;
        hist.record(t.elapsed().as_micros() as u64)?;
    }
    Ok(ReadFigures { ops: hist.len(), secs: started.elapsed().as_secs_f64(), hist })
}

/// Waits until every shard has a known leader and, unless `one_leader`, leaders are
/// spread (no node over ⌈shards / nodes⌉); returns the shards each node leads.
async fn settle_leaders(client: &Client, nodes: u64, one_leader: bool) -> Result<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let map = client.shard_map().await?;
        let shards = &map.shard_map.shards;
        let counts: Vec<usize> = (1..=nodes).map(|n| shards.iter().filter(|s| s.leader == Some(n)).count()).collect();
        let spread = counts.iter().all(|c| *c <= shards.len().div_ceil(nodes as usize));
        if shards.iter().all(|s| s.leader.is_some()) && (one_leader || spread) {
            return Ok(counts);
        }
        anyhow::ensure!(Instant::now() < deadline, "leaders did not settle in 60 s: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The shard that holds driver 0, which `failover` and `transfer` time.
async fn driver0_shard(client: &Client) -> Result<quiver_client::Shard> {
    let hash = quiver_core::key::key_hash(&quiver_core::key::encode_entity_key(&[Value::Int64(0)]));
    Ok(client.shard_map().await?.shard_map.shard_for(hash)?.clone())
}

/// A client writing driver 0 in a loop, one row per request, noting when each
/// acknowledged write was sent and acknowledged.
struct Driver0Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    acks: Arc<std::sync::Mutex<Vec<(Instant, Instant)>>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Driver0Writer {
    fn start(client: &Client) -> Driver0Writer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (client, flag, list) = (client.clone(), stop.clone(), acks.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let (ts, sent) = (now_micros(), Instant::now());
                if client.write("bench", "driver_stats", vec![row(&mut rng, 0, ts)]).await.is_ok() {
                    list.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((sent, Instant::now()));
                }
            }
            anyhow::Ok(())
        });
        Driver0Writer { stop, acks, task }
    }

    /// Waits for the first write sent at or after `since` to be acknowledged (60 s at most).
    async fn first_ack_sent_after(&self, since: Instant) -> Result<Instant> {
        let deadline = since + Duration::from_secs(60);
        loop {
            let first = {
                let acks = self.acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                acks.iter().find(|(sent, _)| *sent >= since).map(|(_, acked)| *acked)
            };
            if let Some(acked) = first {
                return Ok(acked);
            }
            anyhow::ensure!(Instant::now() < deadline, "no write acknowledged within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The longest time between two acknowledgements in a row.
    fn longest_gap(&self) -> Result<Duration> {
        let acks = self.acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(acks.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or_default())
    }

    async fn stop(self) -> Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await?
    }
}

/// Kills the leader of the shard that holds driver 0 while a client writes that driver in
/// a loop; returns the time from the kill to the acknowledgement of the first write sent
/// after the node was dead (one sent before could be acknowledged just after the kill). The
/// killed node is restarted and caught up before returning.
async fn failover(nodes: &mut [LocalNode], client: &Client) -> Result<Failover> {
    let shard = driver0_shard(client).await?;
    // The node that says it leads the shard (a hint from another node may be a term old).
    let mut leader = None;
    for (i, node) in nodes.iter().enumerate() {
        let status = node.client().await?.status().await?;
        if status.groups.iter().any(|g| g.group_id == shard.id && g.state == "Leader") {
            leader = Some(i);
        }
    }
    let victim = leader.context("no node leads the shard")?;
    let survivors: Vec<Client> = {
        let others = nodes.iter().enumerate().filter(|(i, _)| *i != victim);
        futures::future::try_join_all(others.map(|(_, n)| n.client())).await?
    };
    let writer = Driver0Writer::start(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    nodes[victim].kill_9()?;
    let elected = elected(&survivors, shard.id).await? - killed;
    let resumed = writer.first_ack_sent_after(Instant::now()).await? - killed;
    writer.stop().await?;
    nodes[victim].restart().await?;
    Ok(Failover { elected, resumed })
}

/// One failover's times from the kill.
struct Failover {
    /// Until a survivor says it leads the shard.
    elected: Duration,
    /// Until the first write sent after the kill is acknowledged.
    resumed: Duration,
}

/// When one of `survivors` first says it leads shard `shard` (polled every 5 ms, 60 s at most).
async fn elected(survivors: &[Client], shard: u64) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for client in survivors {
            let Ok(status) = client.status().await else { continue };
            if status.groups.iter().any(|g| g.group_id == shard && g.state == "Leader") {
                return Ok(Instant::now());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no survivor led the shard within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Hands leadership of driver 0's shard to another of its voters (`quiverctl shard
/// transfer-leader`'s operation) while a client writes that driver in a loop; returns the
/// operation's time (start to done) and the longest pause between two acknowledged writes,
/// which spans the last write the old leader acknowledged and the first the new one did.
async fn transfer(client: &Client) -> Result<(Duration, Duration)> {
    let writer = Driver0Writer::start(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The placement rule may be moving leaders (after a failover): start once it is not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (op, started) = loop {
        let shard = driver0_shard(client).await?;
        let leader = shard.leader.context("the shard has no known leader")?;
        let to = *shard.voters.iter().find(|v| **v != leader).context("the shard has one voter")?;
        let started = Instant::now();
        match client.start_shard_operation(quiver_client::OpKind::TransferLeader { shard: shard.id, to }).await {
            Ok(op) => break (op, started),
            Err(e) if e.to_string().contains("busy") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ended = client.wait_for_operation(op.id, Duration::from_secs(60), |_| {}).await?;
    let took = started.elapsed();
    anyhow::ensure!(ended.outcome == quiver_client::Outcome::Done, "the transfer failed: {:?}", ended.outcome);
    writer.first_ack_sent_after(Instant::now()).await?;
    let gap = writer.longest_gap()?;
    writer.stop().await?;
    Ok((took, gap))
}

/// Writers of the single-row push figure, whose writes group commit shares entries among.
const GROUP_COMMIT_WRITERS: usize = 64;

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.entities = 5_000;
        args.seconds = 0.5;
        args.failovers = 1;
    }
    let (concurrency, push_batches) = (counts(&args.concurrency)?, counts(&args.push_batches)?);
    let out = Out::new(args.format);
    let dir = tempfile::tempdir()?;
    let leaders = if args.one_leader { "one node" } else { "spread" };
    let balance = ["--balance-leaders", if args.one_leader { "false" } else { "true" }];
    let mut nodes = match args.nodes {
        1 => vec![LocalNode::start(&dir.path().join("node"), &[]).await?],
        n => LocalNode::start_cluster(dir.path(), n.into(), &balance, &[], Duration::from_secs(60)).await?,
    };
    let client = nodes[0].client().await?;
    if args.nodes > 1 {
        let counts = settle_leaders(&client, args.nodes.into(), args.one_leader).await?;
        out.say(format!("shard leaders per node: {counts:?} ({leaders})"));
    }
    client.apply(&quiver_client::Definitions::from_yaml(crate::datagen::DEFINITIONS)?).await?;
    let shape = if args.nodes == 1 { "single node".to_string() } else { format!("{} nodes", args.nodes) };
    out.say(format!(
        "quiver-bench: {shape}, 8 shards with {} replicas each, data in {}",
        args.nodes,
        dir.path().display()
    ));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    out.say(format!("machine: {cores} cores"));

    let (written, secs) = load(&client, args.entities, args.batch, args.writers).await?;
    let rows = written.rows_written;
    out.say(format!(
        "\nload: {rows} rows x 10 features, batches of {}, {} writers: {secs:.2} s, {:.0} rows/s",
        args.batch,
        args.writers,
        rows as f64 / secs
    ));
    // Reads are measured on a settled store: not beside the export of the load to Parquet.
    let started = Instant::now();
    client.wait_for_export(&written, Duration::from_secs(300)).await?;
    out.say(format!("its export to the offline store: {:.2} s more", started.elapsed().as_secs_f64()));
    let load = json!({"rows": rows, "batch": args.batch, "writers": args.writers, "secs": secs,
                      "rows_per_sec": rows as f64 / secs});

    out.say(format!("\nonline reads (vector of 10 features, {} s each):", args.seconds));
    out.say(format!(
        "{:<13} {:<10} {:>11} {:>12} {:>9} {:>9} {:>10}",
        "consistency", "entities", "concurrency", "requests/s", "p50 us", "p99 us", "p99.9 us"
    ));
    let mut reads = Vec::new();
    for (name, consistency) in [("linearizable", Consistency::Linearizable), ("stale", Consistency::Stale)] {
        for per_request in [1usize, 100] {
            for &concurrency in &concurrency {
                let f =
                    read_loop(&client, args.entities, (per_request, consistency), concurrency, for_secs(args.seconds))
                        .await?;
                let rate = f.ops as f64 / f.secs;
                let [p50, p99, p999] = [0.5, 0.99, 0.999].map(|q| f.hist.value_at_quantile(q));
                out.say(format!(
                    "{name:<13} {per_request:<10} {concurrency:>11} {rate:>12.0} {p50:>9} {p99:>9} {p999:>10}"
                ));
                reads.push(json!({"consistency": name, "entities": per_request, "concurrency": concurrency,
                                  "requests": f.ops, "secs": f.secs, "requests_per_sec": rate,
                                  "p50_us": p50, "p99_us": p99, "p999_us": p999}));
            }
        }
    }

    // The Python client's reads, beside the Rust client's 1-client figures above (on one node).
    let python_reads = if args.nodes > 1 {
        None
    } else if python::client_available() {
        let f = python::client_reads(&nodes[0].endpoint(), args.entities, args.seconds)?;
        out.say(format!("\nPython client (1 client, linearizable, {} s each):", args.seconds));
        for per in ["1", "100"] {
            let fig = |name: &str| f[per][name].as_f64().unwrap_or(f64::NAN);
            out.say(format!(
                "  {per} entities: {:.0} requests/s, p50 {:.0} us, p99 {:.0} us",
                fig("requests_per_sec"),
                fig("p50_us"),
                fig("p99_us")
            ));
        }
        Some(f)
    } else {
        out.say("\nPython client: skipped, the bench's Python cannot import quiver and pandas");
        None
    };

    out.say(format!(
        "\nJSON over HTTP (POST /v1/features, 1 entity, vector of 10 features, 1 connection, {} s):",
        args.seconds
    ));
    let f = http_reads(nodes[0].http_addr(), args.entities, for_secs(args.seconds)).await?;
    let [p50, p99] = [0.5, 0.99].map(|q| f.hist.value_at_quantile(q));
    let rate = f.ops as f64 / f.secs;
    out.say(format!("  {rate:.0} requests/s, p50 {p50} us, p99 {p99} us"));
    out.say("  reference, not run here: feast serve on this machine kind, 762 requests/s, p99 5.8 ms");
    let http = json!({"requests_per_sec": rate, "p50_us": p50, "p99_us": p99, "requests": f.ops});

    out.say(format!("\npush (fresh rows for random entities, {} s each):", args.seconds));
    out.say("  fsync: every log append is flushed on each replica before it counts toward a quorum");
    out.say(format!("{:>6} {:>8} {:>10} {:>12} {:>9} {:>9}", "batch", "writers", "rows", "rows/s", "p50 us", "p99 us"));
    let mut pushes = Vec::new();
    // The last: single-row writes from many writers, which group commit puts in shared entries.
    let runs = push_batches.iter().map(|b| (*b, args.writers)).chain([(1, GROUP_COMMIT_WRITERS)]);
    for (batch, writers) in runs {
        let f = push(&client, args.entities, batch, writers, for_secs(args.seconds)).await?;
        let (p50, p99) = (f.hist.value_at_quantile(0.5), f.hist.value_at_quantile(0.99));
        out.say(format!("{batch:>6} {writers:>8} {:>10} {:>12.0} {p50:>9} {p99:>9}", f.rows, f.rows as f64 / f.secs));
        pushes.push(json!({"batch": batch, "writers": writers, "rows": f.rows, "requests": f.hist.len(),
                           "secs": f.secs, "rows_per_sec": f.rows as f64 / f.secs, "p50_us": p50, "p99_us": p99}));
    }

    let mut hop = serde_json::Value::Null;
    if args.nodes > 1 {
        out.say(format!(
            "\nunrouted reads (a client generated from proto/: driver 0, linearizable, {} s each):",
            args.seconds
        ));
        let shard = driver0_shard(&client).await?;
        let leader = shard.leader.context("driver 0's shard has no leader")?;
        let follower = shard.voters.iter().copied().find(|v| *v != leader).context("a shard without followers")?;
        let mut figures = Vec::new();
        for (through, node) in [("its leader", leader), ("a follower (one hop)", follower)] {
            let endpoint = nodes[node as usize - 1].endpoint();
            let f = unrouted_reads(&endpoint, for_secs(args.seconds)).await?;
            let [p50, p99] = [0.5, 0.99].map(|q| f.hist.value_at_quantile(q));
            out.say(format!("  through {through:<21} p50 {p50:>6} us, p99 {p99:>6} us ({} requests)", f.ops));
            figures.push((p50, p99));
        }
        let cost = figures[1].0 as i64 - figures[0].0 as i64;
        out.say(format!("  the hop costs {cost} us at the median"));
        hop = json!({"leader_p50_us": figures[0].0, "leader_p99_us": figures[0].1,
                     "follower_p50_us": figures[1].0, "follower_p99_us": figures[1].1, "hop_p50_us": cost});
    }

    let (mut failovers, mut elections) = (Vec::new(), Vec::new());
    if args.nodes > 1 && args.failovers > 0 {
        out.say("\nfailover (SIGKILL of a shard leader -> first acknowledged write to that shard):");
        for round in 1..=args.failovers {
            let mut f = failover(&mut nodes, &client).await?;
            // Leadership can move (placement) between finding the leader and the kill: a
            // survivor that already leads is no failover.
            for _ in 0..3 {
                if f.elected >= Duration::from_millis(20) {
                    break;
                }
                out.say(format!("  round {round}: the shard's leadership had moved before the kill; again"));
                f = failover(&mut nodes, &client).await?;
            }
            out.say(format!(
                "  round {round}: {} ms (a new leader after {} ms)",
                f.resumed.as_millis(),
                f.elected.as_millis()
            ));
            failovers.push(f.resumed.as_secs_f64() * 1e3);
            elections.push(f.elected.as_secs_f64() * 1e3);
        }
    }
    let mut transfers = Vec::new();
    if args.nodes > 1 && args.failovers > 0 {
        out.say("\nleadership transfer (operation start -> done; longest pause between acknowledged writes):");
        for round in 1..=args.failovers {
            let (took, gap) = transfer(&client).await?;
            out.say(format!("  round {round}: {} ms, writes paused {} ms", took.as_millis(), gap.as_millis()));
            transfers.push(json!({"op_ms": took.as_secs_f64() * 1e3, "write_pause_ms": gap.as_secs_f64() * 1e3}));
        }
    }
    out.figures(&json!({
        "kind": "online", "nodes": args.nodes, "leaders": leaders, "entities": args.entities, "seconds": args.seconds,
        "cores": cores, "load": load, "push": pushes, "reads": reads, "failover_ms": failovers, "election_ms": elections, "transfers": transfers,
        "unrouted_hop": hop, "http_reads": http, "python_reads": python_reads,
    }));
    Ok(())
}
