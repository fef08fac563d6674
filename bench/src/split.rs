//! The split benchmark: a cluster with one shard holding `--rows` rows; writers push fresh
//! rows for random entities in a closed loop, first alone, then while the shard is split in
//! two (`quiverctl shard split`'s operation). It prints the split's time, start to done, and
//! the write throughput and latency percentiles before and during the split.

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

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.rows = 20_000;
        args.writes.seconds = 1.0;
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
    let (rows, secs) = load(&client, args.rows, 1_000, args.writes.writers).await?;
    out.say(format!("load: {rows} rows in {secs:.1} s"));

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
    out.say(format!("\nsplit of a shard of {} rows: {:.2} s (operation start -> done)", args.rows, took.as_secs_f64()));
    out.figures(&json!({
        "kind": "split", "nodes": args.nodes, "rows": args.rows, "split_secs": took.as_secs_f64(),
        "writes_before": before, "writes_during": during,
    }));
    Ok(())
}
