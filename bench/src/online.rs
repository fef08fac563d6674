//! The online benchmark: writes a deterministic data set through the Rust client with
//! concurrent writers, then reads feature vectors in a closed loop, so write throughput and
//! read latency percentiles of the serving path can be compared across changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
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
    /// A few seconds in all: 5,000 entities, 1 s per read benchmark.
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
    per_request: usize,
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
                        consistency: Consistency::Linearizable,
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

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.entities = 5_000;
        args.seconds = 1;
    }
    let dir = tempfile::tempdir()?;
    let node = LocalNode::start(&dir.path().join("node"), &[]).await?;
    let client = node.client().await?;
    client.apply(&quiver_admin::input::parse_definitions(crate::DEFINITIONS)?).await?;
    println!("quiver-bench: single node, 8 shards, data in {}", dir.path().display());
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    let (rows, secs) = load(&client, args.entities, args.batch, args.writers).await?;
    println!(
        "\nwrite: {rows} rows x 10 features, batches of {}, {} writers: {secs:.2} s, {:.0} rows/s",
        args.batch,
        args.writers,
        rows as f64 / secs
    );

    println!("\nonline reads (linearizable, vector of 10 features, {} s each):", args.seconds);
    println!(
        "{:<10} {:>11} {:>12} {:>9} {:>9} {:>10}",
        "entities", "concurrency", "requests/s", "p50 us", "p99 us", "p99.9 us"
    );
    for per_request in [1usize, 100] {
        for concurrency in args.concurrency.split(',').map(str::trim).map(str::parse::<usize>) {
            let concurrency = concurrency?;
            let f = read_loop(&client, args.entities, per_request, concurrency, args.seconds).await?;
            println!(
                "{:<10} {:>11} {:>12.0} {:>9} {:>9} {:>10}",
                per_request,
                concurrency,
                f.ops as f64 / f.secs,
                f.hist.value_at_quantile(0.5),
                f.hist.value_at_quantile(0.99),
                f.hist.value_at_quantile(0.999),
            );
        }
    }
    Ok(())
}
