//! The online benchmark: writes a deterministic data set through the Rust client with
//! concurrent writers, then reads feature vectors in a closed loop, so write throughput and
//! read latency percentiles of the serving path can be compared across changes. With
//! `--nodes 3` it runs on a cluster of three local node processes (every shard on three
//! replicas), reads both linearizably and stale, and times failovers: the leader of a shard
//! is killed with SIGKILL while a client writes to it, until a write is acknowledged again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use quiver_admin::local_node::LocalNode;
use quiver_client::{Client, Consistency, FeatureSelection, InputRow, OnlineRequest, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
    /// Seconds per read benchmark.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent readers, comma-separated.
    #[arg(long, default_value = "1,16")]
    concurrency: String,
    /// 1: the embedded single-node default; 3: a cluster of local processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    /// With --nodes 3: how many shard leaders are killed, one after another, to time failover.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// A few seconds in all: 5,000 entities, 1 s per read benchmark, one failover.
    #[arg(long)]
    quick: bool,
}

fn row(rng: &mut StdRng, id: i64, ts: i64) -> InputRow {
    let mut row: InputRow = (0..8).map(|i| (format!("f{i}"), Value::Float64(rng.random()))).collect();
    row.insert("i0".into(), Value::Int64(rng.random_range(0..1000)));
    row.insert("i1".into(), Value::Int64(rng.random_range(0..1000)));
    row.insert("driver_id".into(), Value::Int64(id));
    row.insert("event_timestamp".into(), Value::Timestamp(ts));
    row
}

async fn load(client: &Client, entities: i64, batch: usize, writers: usize) -> Result<(u64, f64)> {
    // Fresh events: older than the feature set's TTL, reads would measure "expired" answers.
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
    let ids: Vec<i64> = (0..entities).collect();
    let chunks: Vec<Vec<i64>> = ids.chunks(batch).map(<[i64]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter().enumerate().collect::<Vec<_>>()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (client, queue) = (client.clone(), queue.clone());
            tokio::spawn(async move {
                let mut written = 0;
                loop {
                    let Some((n, ids)) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop() else { break };
                    let mut rng = StdRng::seed_from_u64(n as u64);
                    let rows = ids.iter().map(|id| row(&mut rng, *id, ts)).collect();
                    written += client.write("bench", "driver_stats", rows).await?.rows_written;
                }
                anyhow::Ok(written)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

struct ReadFigures {
    ops: u64,
    secs: f64,
    hist: Histogram<u64>,
}

async fn read_loop(
    client: &Client,
    entities: i64,
    (per_request, consistency): (usize, Consistency),
    concurrency: usize,
    secs: u64,
) -> Result<ReadFigures> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(worker as u64);
                let mut hist = Histogram::<u64>::new(3)?;
                while Instant::now() < deadline {
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

/// Kills the leader of the shard that holds driver 0 while a client writes that driver in
/// a loop; returns the time from the kill to the first acknowledged write after it. The
/// killed node is restarted and caught up before returning.
async fn failover(nodes: &mut [LocalNode], client: &Client) -> Result<Duration> {
    let hash = quiver_core::key::key_hash(&quiver_core::key::encode_entity_key(&[Value::Int64(0)]));
    let map = client.shard_map().await?;
    let shard = map.shards.iter().find(|s| s.start <= hash && hash <= s.end).context("no shard for driver 0")?;
    let leader = shard.leader_hint.context("the shard has no known leader")?;
    let victim = nodes.get_mut(leader as usize - 1).context("leader is not a local node")?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (client, stop, acks) = (client.clone(), stop.clone(), acks.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
                if client.write("bench", "driver_stats", vec![row(&mut rng, 0, ts)]).await.is_ok() {
                    acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Instant::now());
                }
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    victim.kill_9()?;
    let deadline = killed + Duration::from_secs(60);
    let resumed = loop {
        let first = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.iter().copied().find(|t| *t > killed);
        if let Some(t) = first {
            break t;
        }
        anyhow::ensure!(Instant::now() < deadline, "no write acknowledged within 60 s of the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await??;
    victim.restart().await?;
    Ok(resumed - killed)
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.entities = 5_000;
        args.seconds = 1;
        args.failovers = 1;
    }
    let dir = tempfile::tempdir()?;
    let mut nodes = match args.nodes {
        1 => vec![LocalNode::start(&dir.path().join("node"), &[]).await?],
        n => LocalNode::start_cluster(dir.path(), n.into(), &[], &[], Duration::from_secs(60)).await?,
    };
    let client = nodes[0].client().await?;
    client.apply(&quiver_admin::input::parse_definitions(crate::DEFINITIONS)?).await?;
    let shape = if args.nodes == 1 { "single node".to_string() } else { format!("{} nodes", args.nodes) };
    println!("quiver-bench: {shape}, 8 shards with {} replicas each, data in {}", args.nodes, dir.path().display());
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    let (rows, secs) = load(&client, args.entities, args.batch, args.writers).await?;
    println!(
        "\nwrite: {rows} rows x 10 features, batches of {}, {} writers: {secs:.2} s, {:.0} rows/s",
        args.batch,
        args.writers,
        rows as f64 / secs
    );

    println!("\nonline reads (vector of 10 features, {} s each):", args.seconds);
    println!(
        "{:<13} {:<10} {:>11} {:>12} {:>9} {:>9} {:>10}",
        "consistency", "entities", "concurrency", "requests/s", "p50 us", "p99 us", "p99.9 us"
    );
    for (name, consistency) in [("linearizable", Consistency::Linearizable), ("stale", Consistency::Stale)] {
        for per_request in [1usize, 100] {
            for concurrency in args.concurrency.split(',').map(str::trim).map(str::parse::<usize>) {
                let concurrency = concurrency?;
                let f =
                    read_loop(&client, args.entities, (per_request, consistency), concurrency, args.seconds).await?;
                println!(
                    "{:<13} {:<10} {:>11} {:>12.0} {:>9} {:>9} {:>10}",
                    name,
                    per_request,
                    concurrency,
                    f.ops as f64 / f.secs,
                    f.hist.value_at_quantile(0.5),
                    f.hist.value_at_quantile(0.99),
                    f.hist.value_at_quantile(0.999),
                );
            }
        }
    }

    if args.nodes > 1 {
        println!("\nfailover (SIGKILL of a shard leader -> first acknowledged write to that shard):");
        for round in 1..=args.failovers {
            let took = failover(&mut nodes, &client).await?;
            println!("  round {round}: {} ms", took.as_millis());
        }
    }
    Ok(())
}
