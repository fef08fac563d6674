//! The backup benchmark: a node with `--online` keys written online and `--offline` rows
//! ingested from Parquet; writers push fresh rows in a closed loop, first alone, then while
//! a full backup runs, then while an incremental one runs. Then the last backup is restored
//! into a new data dir. It prints each backup's and the restore's time and throughput (rows
//! and MiB per second) and the writes' throughput and latency before and during backups.

use std::time::Instant;

use anyhow::Result;
use quiver_admin::local_node::LocalNode;
use quiver_client::{BackupProgress, Client};
use serde_json::json;

use crate::online::{PushFigures, WriteLoad, load, say_writes};
use crate::output::{Format, Out};

#[derive(clap::Args)]
pub struct Args {
    /// Online keys written before the backups.
    #[arg(long, default_value_t = 1_000_000)]
    online: i64,
    /// Offline rows ingested before the backups (the offline benchmark's data set).
    #[arg(long, default_value_t = 10_000_000)]
    offline: usize,
    #[command(flatten)]
    writes: WriteLoad,
    /// Seconds in all: 20,000 keys, 100,000 offline rows, 1 s of baseline.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn say_transfer(out: &Out, what: &str, rows: u64, bytes: u64, secs: f64) -> serde_json::Value {
    let mib = bytes as f64 / f64::from(1 << 20);
    out.say(format!(
        "{what:<24} {secs:>7.2} s   {:>9.0} rows/s   {:>7.1} MiB/s   ({rows} online rows, {mib:.1} MiB)",
        rows as f64 / secs,
        mib / secs
    ));
    json!({"secs": secs, "rows": rows, "bytes": bytes, "rows_per_sec": rows as f64 / secs, "mib_per_sec": mib / secs})
}

/// Makes a backup while the writers write; answers its last report, its time, the writes'.
async fn backup_under_writes(
    client: &Client,
    args: &Args,
    to: &str,
    incremental: bool,
) -> Result<(BackupProgress, f64, PushFigures)> {
    let started = Instant::now();
    let backup = async {
        (
            client.create_backup(to, &quiver_client::BackupOptions { incremental, ..Default::default() }, |_| {}).await,
            started.elapsed().as_secs_f64(),
        )
    };
    let ((made, secs), writes) = args.writes.beside(client, args.online, backup).await?;
    Ok((made?, secs, writes))
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.online, args.offline, args.writes.seconds) = (20_000, 100_000, 1.0);
    }
    let out = Out::new(args.format);
    let dir = tempfile::tempdir()?;
    // Compaction would rewrite the offline files between the two backups: kept out of the
    // way, so the incremental backup shows what it saves when they stay.
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[workers]\ncompaction_interval_ms = 86400000\n")?;
    let node = LocalNode::start(&dir.path().join("node"), &["--config", &config.display().to_string()]).await?;
    let client = node.client().await?;
    client.apply(&quiver_client::Definitions::from_yaml(crate::datagen::DEFINITIONS)?).await?;
    out.say(format!("quiver-bench backup: one node, data in {}", dir.path().display()));
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    crate::datagen::write_features(&data, args.offline)?;
    let started = Instant::now();
    let ingested = client.ingest("bench", "driver_stats", &data.display().to_string(), |_| {}).await?;
    out.say(format!("ingest: {} offline rows in {:.1} s", ingested.rows, started.elapsed().as_secs_f64()));
    // Summarizing the new files would compete with the backups.
    crate::offline::statistics_caught_up(&client, ingested.rows).await?;
    let (written, secs) = load(&client, args.online, 1_000, args.writes.writers).await?;
    out.say(format!("load: {} online keys in {secs:.1} s", written.rows_written));

    out.say(format!("\nwrites (batches of {}, {} writers):", args.writes.batch, args.writes.writers));
    let before = say_writes(&out, "no backup", &args.writes.alone(&client, args.online).await?);
    let to = dir.path().join("backups").display().to_string();
    let (full, full_secs, writes) = backup_under_writes(&client, &args, &to, false).await?;
    let during_full = say_writes(&out, "during a full backup", &writes);
    let (incr, incr_secs, writes) = backup_under_writes(&client, &args, &to, true).await?;
    let during_incr = say_writes(&out, "during an incremental", &writes);

    out.say(format!(
        "\nbackups of {} online keys and {} offline rows, to a local directory:",
        args.online, args.offline
    ));
    let full_json = say_transfer(&out, "full backup", full.rows, full.bytes, full_secs);
    let incr_json = say_transfer(&out, "incremental backup", incr.rows, incr.bytes, incr_secs);
    drop(node);
    let location = quiver_backup::catalog::open(&to, &Default::default())?;
    let catalog = quiver_backup::catalog::find(&location, &full.id).await?;
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let shards: u64 = catalog.shards.iter().map(|s| s.object.bytes).sum();
    let offline: u64 = catalog.offline.iter().filter_map(|f| f.copy.as_ref()).map(|o| o.bytes).sum();
    out.say(format!(
        "full backup's objects: meta group {:.1} MiB, {} shards {:.1} MiB, {} offline files {:.1} MiB",
        mib(catalog.meta.object.bytes),
        catalog.shards.len(),
        mib(shards),
        catalog.offline.len(),
        mib(offline)
    ));

    let config = quiver_store::config::Config { data_dir: dir.path().join("restored"), ..Default::default() };
    let started = Instant::now();
    let mut bytes = 0;
    let restored = quiver_backup::restore::restore(&config, &to, &incr.id, None, false, |p| bytes = p.bytes).await?;
    let restore_json =
        say_transfer(&out, "restore (incremental)", restored.rows, bytes, started.elapsed().as_secs_f64());
    out.figures(&json!({
        "kind": "backup", "online_keys": args.online, "offline_rows": args.offline,
        "full": full_json, "incremental": incr_json, "restore": restore_json,
        "writes_before": before, "writes_during_full": during_full, "writes_during_incremental": during_incr,
    }));
    Ok(())
}
