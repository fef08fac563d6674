//! The split benchmark: a cluster with one shard holding `--rows` rows; writers push fresh
//! rows for random entities in a closed loop, first alone, then while the shard is split in
//! two (`quiverctl shard split`'s operation), then alone again while the parent sweeps the
//! rows it gave away. It prints the split's time, start to done, and the write throughput
//! and latency percentiles before (once the load is exported), during and after the split.

use std::time::{Duration, Instant};

use anyhow::Result;
use quiver_admin::local_node::LocalNode;
use quiver_client::{OpKind, Outcome};
use serde_json::json;

use crate::online::{WriteLoad, load, say_writes};
use crate::output::{Format, Out};

#[derive(clap::Args)]
pub struct Args {
    /// Rows in the shard before it splits.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// 1: a single node; 3: every shard on three replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    #[command(flatten)]
    writes: WriteLoad,
    /// Seconds in all: 20,000 rows, 1 s of baseline.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Rows of the benchmark's feature set in the offline store.
async fn exported(client: &quiver_client::Client) -> Result<u64> {
    Ok(client.files("bench", "driver_stats").await?.iter().map(|f| f.rows).sum())
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.rows = 20_000;
        args.writes.seconds = 1.0;
    }
    let out = Out::new(args.format);
    let dir = tempfile::tempdir()?;
    // Leaders stay where they are: a leadership move after the split pauses writes for a
    // second of its own (`quiver-bench online --failovers` measures that).
    let one_shard = ["--shards", "1", "--balance-leaders", "false"];
    let nodes = match args.nodes {
        1 => vec![LocalNode::start(&dir.path().join("node"), &one_shard).await?],
        n => LocalNode::start_cluster(dir.path(), n.into(), &one_shard, &[], Duration::from_secs(60)).await?,
    };
    let client = nodes[0].client().await?;
    client.apply(&quiver_client::Definitions::from_yaml(crate::datagen::DEFINITIONS)?).await?;
    out.say(format!("quiver-bench split: {} node(s), one shard, data in {}", args.nodes, dir.path().display()));
    let (written, secs) = load(&client, args.rows, 1_000, args.writes.writers).await?;
    let rows = written.rows_written;
    out.say(format!("load: {rows} rows in {secs:.1} s"));
    // The baseline waits for the load's export to the offline store, which competes with it.
    let started = Instant::now();
    while exported(&client).await? < rows {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the load's rows never reached the offline store"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.say(format!("export of the load: done {:.1} s later", started.elapsed().as_secs_f64()));

    out.say(format!("\nwrites (batches of {}, {} writers):", args.writes.batch, args.writes.writers));
    let before = say_writes(&out, "before the split", &args.writes.alone(&client, args.rows).await?);
    let started = Instant::now();
    let split = async {
        let op = client.start_shard_operation(OpKind::Split { shard: 1, at: 0, child: 0 }).await?;
        let ended = client.wait_for_operation(op.id, Duration::from_secs(600), |_| {}).await?;
        anyhow::Ok((ended, started.elapsed()))
    };
    let (split, writes) = args.writes.beside(&client, args.rows, split).await?;
    let (ended, took) = split?;
    let during = say_writes(&out, "during the split", &writes);
    anyhow::ensure!(ended.outcome == Outcome::Done, "the split failed: {:?}", ended.outcome);
    let after = say_writes(&out, "after the split", &args.writes.alone(&client, args.rows).await?);
    out.say(format!("\nsplit of a shard of {} rows: {:.2} s (operation start -> done)", args.rows, took.as_secs_f64()));
    let p99 = |f: &serde_json::Value| f["p99_us"].as_f64().unwrap_or(0.0).max(1.0);
    out.say(format!("write p99 during the split / before: {:.1}x", p99(&during) / p99(&before)));
    out.figures(&json!({
        "kind": "split", "nodes": args.nodes, "rows": args.rows, "split_secs": took.as_secs_f64(),
        "writes_before": before, "writes_during": during, "writes_after": after,
    }));
    Ok(())
}
