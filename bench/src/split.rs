//! The split benchmark: a cluster with one shard holding `--rows` rows; writers push fresh
//! rows for random entities in a closed loop, first alone, then while the shard is split in
//! two (`quiverctl shard split`'s operation). It prints the split's time, start to done, and
//! the write throughput and latency percentiles before and during the split.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use quiver_admin::local_node::LocalNode;
use quiver_client::{OpKind, Outcome};
use serde_json::json;

use crate::online::{PushFigures, for_secs, load, push};
use crate::output::{Format, Out};

#[derive(clap::Args)]
pub struct Args {
    /// Rows in the shard before it splits.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// 1: a single node; 3: every shard on three replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    /// Concurrent writers, before and during the split.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Rows per write request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of writes before the split, the baseline.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds in all: 20,000 rows, 1 s of baseline.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn say_writes(out: &Out, when: &str, f: &PushFigures) -> serde_json::Value {
    let (p50, p99) = (f.hist.value_at_quantile(0.5), f.hist.value_at_quantile(0.99));
    let rate = f.rows as f64 / f.secs;
    out.say(format!("{when:<18} {rate:>10.0} rows/s   p50 {p50:>7} us   p99 {p99:>7} us   ({:.1} s)", f.secs));
    json!({"rows": f.rows, "secs": f.secs, "rows_per_sec": rate, "p50_us": p50, "p99_us": p99})
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.rows = 20_000;
        args.seconds = 1.0;
    }
    let out = Out::new(args.format);
    let dir = tempfile::tempdir()?;
    let one_shard = ["--shards", "1"];
    let nodes = match args.nodes {
        1 => vec![LocalNode::start(&dir.path().join("node"), &one_shard).await?],
        n => LocalNode::start_cluster(dir.path(), n.into(), &one_shard, &[], Duration::from_secs(60)).await?,
    };
    let client = nodes[0].client().await?;
    client.apply(&quiver_admin::input::parse_definitions(crate::datagen::DEFINITIONS)?).await?;
    out.say(format!("quiver-bench split: {} node(s), one shard, data in {}", args.nodes, dir.path().display()));
    let (rows, secs) = load(&client, args.rows, 1_000, args.writers).await?;
    out.say(format!("load: {rows} rows in {secs:.1} s"));

    out.say(format!("\nwrites (batches of {}, {} writers):", args.batch, args.writers));
    let before = push(&client, args.rows, args.batch, args.writers, for_secs(args.seconds)).await?;
    let before = say_writes(&out, "before the split", &before);
    let done = Arc::new(AtomicBool::new(false));
    let until = {
        let done = done.clone();
        Arc::new(move || done.load(Ordering::Relaxed))
    };
    let writers = {
        let (client, rows, batch, writers) = (client.clone(), args.rows, args.batch, args.writers);
        tokio::spawn(async move { push(&client, rows, batch, writers, until).await })
    };
    let started = Instant::now();
    let op = client.start_shard_operation(OpKind::Split { shard: 1, at: 0, child: 0 }).await?;
    let ended = client.wait_for_operation(op.id, Duration::from_secs(600), |_| {}).await?;
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let during = say_writes(&out, "during the split", &writers.await??);
    anyhow::ensure!(ended.outcome == Outcome::Done, "the split failed: {:?}", ended.outcome);
    out.say(format!("\nsplit of a shard of {} rows: {:.2} s (operation start -> done)", args.rows, took.as_secs_f64()));
    out.figures(&json!({
        "kind": "split", "nodes": args.nodes, "rows": args.rows, "split_secs": took.as_secs_f64(),
        "writes_before": before, "writes_during": during,
    }));
    Ok(())
}
