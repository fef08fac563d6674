//! The offline benchmark: generates a deterministic data set as Parquet, ingests it into a
//! release node, builds a point-in-time training set for a spine, then runs DuckDB's as-of
//! join on the same files, so that Quiver's figures come with a well-known yardstick.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow_array::Array;
use clap::ValueEnum;
use quiver_admin::input::parse_definitions;
use quiver_admin::local_node::LocalNode;
use quiver_client::{FeatureSelection, HistoricalRequest, SpineFormat};
use quiver_core::time::{format_ttl, parse_ttl};

use crate::{datagen, duckdb};

/// The event-time column the answer carries for `driver_stats`: null where nothing matched.
const MATCHED_TS_COLUMN: &str = "driver_stats:event_timestamp";

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// 1M feature rows, a 100k-row spine.
    Small,
    /// 10M feature rows, a 1M-row spine.
    Full,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Size::Small)]
    size: Size,
    /// Seconds in all, for CI: 20k feature rows, a 2k-row spine.
    #[arg(long, conflicts_with = "size")]
    quick: bool,
}

/// Peak resident memory of a process over its life so far (Linux `VmHWM`), KiB.
fn peak_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).with_context(|| format!("no VmHWM in {path}"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

pub async fn run(args: Args) -> Result<()> {
    let (name, rows, spine_rows) = match (args.quick, args.size) {
        (true, _) => ("quick", 20_000, 2_000),
        (false, Size::Small) => ("small", 1_000_000, 100_000),
        (false, Size::Full) => ("full", 10_000_000, 1_000_000),
    };
    // The node reads the source files itself: it needs absolute paths.
    let dir = tempfile::tempdir()?;
    let root = dir.path().canonicalize()?;
    let (data, spine) = (root.join("data"), root.join("spine.parquet"));
    std::fs::create_dir(&data)?;
    println!("quiver-bench offline ({name}): single node, data in {}", root.display());
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    let started = Instant::now();
    datagen::write_features(&data, rows)?;
    datagen::write_spine(&spine, spine_rows)?;
    println!(
        "\ngenerate: {rows} feature rows x 10 features over {} entities and 90 days, {spine_rows}-row spine: \
         {:.2} s, {:.1} MiB of Parquet",
        datagen::ENTITIES,
        started.elapsed().as_secs_f64(),
        dir_bytes(&data)? as f64 / f64::from(1 << 20)
    );

    let mut node = LocalNode::start(&root.join("node"), &[]).await?;
    let pid = node.pid().context("the node is not running")?;
    let client = node.client().await?;
    let defs = parse_definitions(crate::DEFINITIONS)?;
    let ttl_secs = parse_ttl(defs.feature_sets[0].ttl.as_deref().unwrap_or_default())?;
    client.apply(&defs).await?;

    let data_path = data.to_str().context("the temp dir's path is not UTF-8")?;
    let started = Instant::now();
    let report = client.ingest("bench", "driver_stats", data_path, |_| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest: {} rows from {} files ({} offline files written): {secs:.2} s, {:.0} rows/s",
        report.rows,
        report.files_total,
        report.files_written,
        report.rows as f64 / secs
    );
    let peak_before = peak_kib(pid)?;

    let request = HistoricalRequest {
        project: "bench".into(),
        features: FeatureSelection::Vector("all".into()),
        spine: std::fs::read(&spine)?,
        spine_format: SpineFormat::Parquet,
        timestamp_column: None,
        short_names: true,
        save_as: None,
        spine_name: spine.display().to_string(),
    };
    // Compaction may merge the ingested files in the background: say what retrieval read.
    let files = client.files("bench", "driver_stats").await?.len();
    let started = Instant::now();
    let training = client.historical(request).await?;
    let quiver_secs = started.elapsed().as_secs_f64();
    let peak_after = peak_kib(pid)?;
    let matched = training.column_by_name(MATCHED_TS_COLUMN).map(|c| c.len() - c.null_count());
    println!(
        "retrieval: {spine_rows}-row spine x 10 features, ttl {}, {files} offline files: {quiver_secs:.2} s, \
         {} rows out, {} matched",
        format_ttl(ttl_secs),
        training.num_rows(),
        matched.map_or("?".into(), |m| m.to_string())
    );
    // VmHWM is the peak over the node's life: if retrieval did not raise it, ingest set it.
    println!(
        "node peak memory (VmHWM): {:.0} MiB after ingest, {:.0} MiB after retrieval",
        mib(peak_before),
        mib(peak_after)
    );
    if training.num_rows() != spine_rows {
        println!("warning: {} output rows for a {spine_rows}-row spine", training.num_rows());
    }
    drop(training);
    // Stopped so that DuckDB has the machine to itself.
    node.terminate()?;

    let duck = if duckdb::available() {
        let glob = format!("{data_path}/*.parquet");
        let d = duckdb::asof_join(&glob, &spine, ttl_secs)?;
        println!(
            "duckdb ({} threads): {:.2} s, {} rows out, {} matched, peak memory {:.0} MiB",
            d.threads,
            d.seconds,
            d.rows,
            d.matched,
            mib(d.peak_kib)
        );
        if matched.is_some_and(|m| m as u64 != d.matched) {
            println!("warning: Quiver and DuckDB matched different numbers of spine rows");
        }
        Some(d)
    } else {
        println!("duckdb: skipped, python3 cannot import duckdb (to compare: pip install duckdb)");
        None
    };

    println!("\npoint-in-time retrieval, {name}: {rows} feature rows, {spine_rows}-row spine");
    println!(
        "{:>9} {:>9} {:>14} {:>16} {:>16}",
        "quiver s", "duckdb s", "quiver/duckdb", "quiver peak MiB", "duckdb peak MiB"
    );
    let cell = |v: Option<f64>, decimals: usize| v.map_or("-".into(), |v| format!("{v:.decimals$}"));
    println!(
        "{:>9.2} {:>9} {:>14} {:>16.0} {:>16}",
        quiver_secs,
        cell(duck.as_ref().map(|d| d.seconds), 2),
        cell(duck.as_ref().map(|d| quiver_secs / d.seconds), 2),
        mib(peak_after),
        cell(duck.as_ref().map(|d| mib(d.peak_kib)), 0)
    );
    Ok(())
}
