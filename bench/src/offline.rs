//! The offline benchmark: generates a deterministic data set as Parquet, ingests it into a
//! release node, builds a point-in-time training set for a spine (from the files as ingested,
//! and again once compaction has merged each day's), then runs DuckDB's as-of join on the same
//! source files, so that Quiver's figures come with a well-known yardstick. It also
//! materializes the ingested rows into the online store. Peak memory is measured per phase
//! where Linux allows resetting a process's high-water mark, else over the node's life.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use arrow_array::Array;
use clap::ValueEnum;
use futures::StreamExt;
use quiver_admin::local_node::{LocalNode, binary};
use quiver_client::Definitions;
use quiver_client::{FeatureSelection, HistoricalRequest, Spine};
use quiver_core::time::{format_ttl, parse_ttl};
use serde_json::json;

use crate::online::{for_secs, read_loop};
use crate::output::{Format, Out, cpu_secs, mib, peak_kib, reset_peak, resident_kib};
use crate::table::stat;
use crate::{datagen, duckdb, python};

/// The event-time column the answer carries for `driver_stats`: null where nothing matched.
const MATCHED_TS_COLUMN: &str = "driver_stats:event_timestamp";

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// 1M feature rows, a 100k-row spine.
    Small,
    /// 10M feature rows, a 1M-row spine.
    Full,
    /// 40M feature rows, a 4M-row spine: four times full, to show memory beside DuckDB's
    /// (run it with --retrieval-memory to see the joins keep to a budget).
    Large,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Size::Small)]
    size: Size,
    /// Seconds in all, for CI: 20k feature rows, a 2k-row spine.
    #[arg(long, conflicts_with = "size")]
    quick: bool,
    /// The node's `[offline] retrieval_memory` (e.g. 256MiB): what a join holds before it spills.
    #[arg(long)]
    retrieval_memory: Option<String>,
    /// Nodes of a local cluster sharing one offline store: a training set of 100k spine rows
    /// or more is split over them (on one machine they share its cores).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Another `quiver-node` build: the retrieval from files as ingested then runs on it and on
    /// this one in turn, on the same data, `--rounds` times each, and both medians are printed.
    /// A/B on a noisy machine, for performance work; one node only.
    #[arg(long, conflicts_with = "nodes")]
    against: Option<PathBuf>,
    /// Rounds of `--against`.
    #[arg(long, default_value_t = 3, requires = "against", value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// `json`: the figures as one JSON object on stdout, the text on stderr.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Asks `done` every `every` until it answers true, for 30 minutes at most. Nodes sharing two
/// cores with an ingest or a compaction can miss a quorum round for a moment: that answer just
/// asks again.
async fn wait_until(
    what: &str,
    every: std::time::Duration,
    mut done: impl AsyncFnMut() -> quiver_client::Result<bool>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match done().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if matches!(e.server_error(), Some(quiver_core::Error::Unavailable(_))) => {}
            Err(e) => return Err(e.into()),
        }
        anyhow::ensure!(started.elapsed() < std::time::Duration::from_secs(1800), "{what} never happened");
        tokio::time::sleep(every).await;
    }
}

/// Waits until the statistics worker has summarized `rows` offline rows of the bench set.
pub async fn statistics_caught_up(client: &quiver_client::Client, rows: u64) -> Result<()> {
    let all = quiver_client::StatsWindow::Offline { from: None, to: None };
    let summarized = async || Ok(client.statistics("bench", "driver_stats", &all).await?.rows >= rows);
    wait_until("statistics catching up", std::time::Duration::from_millis(100), summarized).await
}

/// Online reads (1 entity, 4 readers) alone for 2 s, then while the same retrieval runs
/// again: the retrieval decodes and joins on the blocking pool, so reads should barely notice.
async fn serving_beside_retrieval(
    out: &Out,
    client: &quiver_client::Client,
    request: &HistoricalRequest,
) -> Result<serde_json::Value> {
    use quiver_client::Consistency;
    let readers = |until| {
        let client = client.clone();
        tokio::spawn(
            async move { read_loop(&client, datagen::ENTITIES, (1, Consistency::Linearizable), 4, until).await },
        )
    };
    let alone = readers(for_secs(2.0)).await??;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let during = readers(Arc::new(move || flag.load(Ordering::Relaxed)));
    let started = Instant::now();
    let retrieval = client.historical(request.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (during, _) = (during.await??, retrieval?);
    let [a50, a99, d50, d99] =
        [(&alone, 0.5), (&alone, 0.99), (&during, 0.5), (&during, 0.99)].map(|(f, q)| f.hist.value_at_quantile(q));
    out.say(format!(
        "online reads (1 entity, 4 readers): alone p50 {a50} us, p99 {a99} us; \
         during a retrieval ({secs:.2} s): p50 {d50} us, p99 {d99} us"
    ));
    Ok(json!({"alone_p50_us": a50, "alone_p99_us": a99, "during_p50_us": d50, "during_p99_us": d99,
              "retrieval_secs": secs}))
}

/// Waits until every day of the bench set is one file (compaction merged it).
async fn compacted(client: &quiver_client::Client) -> Result<()> {
    let one_per_day = async || {
        let files = client.files("bench", "driver_stats").await?;
        Ok(files.len() == files.iter().map(|f| f.day).collect::<std::collections::BTreeSet<_>>().len())
    };
    wait_until("compaction of every day", std::time::Duration::from_millis(200), one_per_day).await
}

/// One training set's figures.
struct Retrieval {
    secs: f64,
    /// The receiving node's CPU time in it: steadier than `secs` on a noisy machine.
    cpu_secs: f64,
    files: usize,
    rows: usize,
    matched: Option<usize>,
    joined_by: u32,
    memory: quiver_client::JoinMemory,
    /// The receiving node's peak in the retrieval, and what it held before.
    peak_kib: u64,
    resident_before_kib: u64,
    others_peak_kib: Option<u64>,
}

impl Retrieval {
    fn figures(&self) -> serde_json::Value {
        json!({"secs": self.secs, "cpu_secs": self.cpu_secs, "files": self.files, "rows": self.rows, "matched": self.matched,
               "peak_mib": mib(self.peak_kib),
               "added_mib": mib(self.peak_kib.saturating_sub(self.resident_before_kib)),
               "join_peak_mib": mib(self.memory.peak_bytes / 1024),
               "spilled_mib": mib(self.memory.spilled_bytes / 1024), "partitions": self.memory.partitions})
    }
}

/// Builds the training set of `request` through the node of `pids[0]` (the others of its
/// cluster beside it), and says what it took.
async fn retrieve(
    out: &Out,
    client: &quiver_client::Client,
    request: &HistoricalRequest,
    pids: &[u32],
    (shape, spine_rows): (&str, usize),
) -> Result<Retrieval> {
    let listed = client.files("bench", "driver_stats").await?;
    let (files, stored) = (listed.len(), listed.iter().map(|f| f.bytes).sum::<u64>());
    for pid in pids {
        reset_peak(*pid);
    }
    // What the node holds before (the sled cache, the ingest's leftovers) is not the join's.
    let resident_before_kib = resident_kib(pids[0])?;
    let cpu_before = cpu_secs(pids[0])?;
    let started = Instant::now();
    let mut answer = client.historical_stream(request.clone(), |_| {}).await?;
    let computed = started.elapsed();
    let (schema, phases, memory, joined_by) =
        (answer.schema(), answer.phases().to_vec(), answer.memory(), answer.nodes());
    let mut batches = Vec::new();
    while let Some(batch) = answer.next().await {
        batches.push(batch?);
    }
    // The answer is in hand as batches, as a stream's user has it: gluing them into one
    // table is the bench's own copy, not the retrieval's.
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs(pids[0])? - cpu_before;
    let training = arrow_select::concat::concat_batches(&schema, &batches)?;
    let others_peak_kib = pids[1..].iter().map(|pid| peak_kib(*pid)).collect::<Result<Vec<u64>>>()?.into_iter().max();
    let peak_kib = peak_kib(pids[0])?;
    let matched = training.column_by_name(MATCHED_TS_COLUMN).map(|c| c.len() - c.null_count());
    out.say(format!(
        "retrieval: {shape}, {files} offline files ({:.1} MiB): {secs:.2} s, {} rows out, {} matched",
        stored as f64 / f64::from(1 << 20),
        training.num_rows(),
        matched.map_or("?".into(), |m| m.to_string())
    ));
    let mut spent = phases.iter().map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64())).collect::<Vec<_>>();
    spent.push(format!("receiving {:.2} s", secs - computed.as_secs_f64()));
    out.say(format!("  where the time went: {}; the node's CPU time: {cpu_secs:.2} s", spent.join(", ")));
    if let Some(most) = others_peak_kib {
        out.say(format!(
            "  joined by {joined_by} node(s); the other nodes' peak memory (VmHWM) in it: at most {:.0} MiB",
            mib(most)
        ));
    }
    out.say(format!(
        "  the joins' own accounting: {:.1} MiB held at most, {:.1} MiB spilled, {} partition(s) \
         ([offline] retrieval_memory)",
        mib(memory.peak_bytes / 1024),
        mib(memory.spilled_bytes / 1024),
        memory.partitions
    ));
    if training.num_rows() != spine_rows {
        out.say(format!("warning: {} output rows for a {spine_rows}-row spine", training.num_rows()));
    }
    Ok(Retrieval {
        secs,
        cpu_secs,
        files,
        rows: training.num_rows(),
        matched,
        joined_by,
        memory,
        peak_kib,
        resident_before_kib,
        others_peak_kib,
    })
}

/// The retrieval of `request` on this build's node and on `other`'s in turn, `rounds` times,
/// the node restarted on the same data before each; prints both medians and leaves this
/// build running.
async fn compare_builds(
    out: &Out,
    node: &mut LocalNode,
    other: &Path,
    rounds: u64,
    request: &HistoricalRequest,
    shape: (&str, usize),
) -> Result<()> {
    let builds = [("this build", binary("quiver-node")?), ("--against", other.to_path_buf())];
    // Per build, the seconds and the node's CPU seconds of each round.
    let mut runs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); builds.len()];
    for _ in 0..rounds {
        for ((_, bin), (secs, cpu)) in builds.iter().zip(&mut runs) {
            node.set_binary(bin.clone());
            node.restart().await?;
            let pid = node.pid().context("the node is not running")?;
            let r = retrieve(out, &node.client().await?, request, &[pid], shape).await?;
            secs.push(r.secs);
            cpu.push(r.cpu_secs);
        }
    }
    for ((label, bin), (secs, cpu)) in builds.iter().zip(runs) {
        let (Some(s), Some(c)) = (stat(secs.clone()), stat(cpu.clone())) else { continue };
        out.say(format!(
            "{label} ({}): median {:.2} s ({:.2}–{:.2}) of {secs:.2?}; node CPU median {:.2} s ({:.2}–{:.2})",
            bin.display(),
            s.median,
            s.min,
            s.max,
            c.median,
            c.min,
            c.max
        ));
    }
    node.set_binary(builds[0].1.clone());
    node.restart().await
}

pub async fn run(args: Args) -> Result<()> {
    let (name, rows, spine_rows) = match (args.quick, args.size) {
        (true, _) => ("quick", 20_000, 2_000),
        (false, Size::Small) => ("small", 1_000_000, 100_000),
        (false, Size::Full) => ("full", 10_000_000, 1_000_000),
        (false, Size::Large) => ("large", 40_000_000, 4_000_000),
    };
    let out = Out::new(args.format);
    // The node reads the source files itself: it needs absolute paths.
    let dir = tempfile::tempdir()?;
    let root = dir.path().canonicalize()?;
    let (data, spine) = (root.join("data"), root.join("spine.parquet"));
    std::fs::create_dir(&data)?;
    out.say(format!("quiver-bench offline ({name}): {} node(s), data in {}", args.nodes, root.display()));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    out.say(format!("machine: {cores} cores"));

    let started = Instant::now();
    datagen::write_features(&data, rows)?;
    datagen::write_spine(&spine, spine_rows)?;
    out.say(format!(
        "\ngenerate: {rows} feature rows x 10 features over {} entities and 90 days, {spine_rows}-row spine: \
         {:.2} s, {:.1} MiB of Parquet",
        datagen::ENTITIES,
        started.elapsed().as_secs_f64(),
        dir_bytes(&data)? as f64 / f64::from(1 << 20)
    ));

    // Compaction waits until the files as ingested have been measured (`compact`), restarts
    // included: a day never has that many files.
    let config = root.join("quiver.toml");
    std::fs::write(
        &config,
        format!("[workers]\ncompaction_interval_ms = {}\ncompaction_min_files = 1000000\n", 24 * 3_600_000),
    )?;
    let config_path = config.display().to_string();
    let mut flags: Vec<&str> = vec!["--config", &config_path];
    if let Some(memory) = &args.retrieval_memory {
        flags.extend(["--retrieval-memory", memory]);
    }
    let shared = root.join("offline").display().to_string();
    let mut nodes = match args.nodes {
        0 | 1 => vec![LocalNode::start(&root.join("node"), &flags).await?],
        n => {
            flags.extend(["--offline-store", shared.as_str()]);
            LocalNode::start_cluster(&root, n, &flags, &[], std::time::Duration::from_secs(120)).await?
        }
    };
    let pids = nodes.iter().map(|n| n.pid().context("a node is not running")).collect::<Result<Vec<u32>>>()?;
    let pid = pids[0];
    let client = nodes[0].client().await?;
    let defs = Definitions::from_yaml(crate::datagen::DEFINITIONS)?;
    let ttl_secs = parse_ttl(defs.feature_sets[0].ttl.as_deref().unwrap_or_default())?;
    client.apply(&defs).await?;

    let data_path = data.to_str().context("the temp dir's path is not UTF-8")?;
    let started = Instant::now();
    let report = client.ingest("bench", "driver_stats", data_path, |_| {}).await?;
    let ingest_secs = started.elapsed().as_secs_f64();
    out.say(format!(
        "ingest: {} rows from {} files ({} offline files written): {ingest_secs:.2} s, {:.0} rows/s",
        report.rows,
        report.files_total,
        report.files_written,
        report.rows as f64 / ingest_secs
    ));
    // The statistics worker summarizes committed files in the background, during the ingest
    // and after it; waiting for it here also keeps it from running beside the retrieval.
    statistics_caught_up(&client, report.rows).await?;
    let stats_secs = started.elapsed().as_secs_f64();
    out.say(format!(
        "statistics: every ingested row summarized {:.2} s after the ingest ended; {:.0} rows/s from the ingest's start",
        stats_secs - ingest_secs,
        report.rows as f64 / stats_secs
    ));
    let ingest_peak = peak_kib(pid)?;
    // VmHWM is the peak over the node's life unless it can be reset between phases.
    let per_phase = pids.iter().all(|pid| reset_peak(*pid));

    let request = HistoricalRequest {
        project: "bench".into(),
        features: FeatureSelection::Vector("all".into()),
        spine: Spine::Parquet(std::fs::read(&spine)?),
        timestamp_column: None,
        short_names: true,
        save_as: None,
        spine_name: spine.display().to_string(),
    };
    let shape = format!("{spine_rows}-row spine x 10 features, ttl {}", format_ttl(ttl_secs));
    let fresh = retrieve(&out, &client, &request, &pids, (&shape, spine_rows)).await?;
    let serving = serving_beside_retrieval(&out, &client, &request).await?;
    if let Some(other) = &args.against {
        compare_builds(&out, &mut nodes[0], other, args.rounds, &request, (&shape, spine_rows)).await?;
    }
    // A restart (`--against`) gives the node another process.
    let pid = nodes[0].pid().context("the node is not running")?;

    reset_peak(pid);
    let started = Instant::now();
    let progress = client.materialize("bench", "driver_stats", (None, None), |_| {}).await?;
    let materialize_secs = started.elapsed().as_secs_f64();
    let materialize_peak = peak_kib(pid)?;
    out.say(format!(
        "materialize: {} offline rows read, {} entities written to the online store: {materialize_secs:.2} s, \
         {:.0} rows/s",
        progress.rows_read,
        progress.entities_written,
        progress.rows_read as f64 / materialize_secs
    ));
    out.say(format!(
        "node peak memory (VmHWM{}): ingest {:.0} MiB, retrieval {:.0} MiB ({:.0} MiB resident before it), \
         materialize {:.0} MiB",
        if per_phase { ", reset between phases" } else { ", over the node's life: no reset allowed" },
        mib(ingest_peak),
        mib(fresh.peak_kib),
        mib(fresh.resident_before_kib),
        mib(materialize_peak)
    ));

    // The same training set once compaction has merged each day's files into one, sorted by
    // entity-key hash.
    std::fs::write(&config, "[workers]\ncompaction_interval_ms = 200\ncompaction_min_files = 2\n")?;
    for node in &mut nodes {
        node.restart().await?;
    }
    let client = nodes[0].client().await?;
    let started = Instant::now();
    compacted(&client).await?;
    out.say(format!("compaction: each day's files merged into one in {:.2} s", started.elapsed().as_secs_f64()));
    let pids = nodes.iter().map(|n| n.pid().context("a node is not running")).collect::<Result<Vec<u32>>>()?;
    let compact = retrieve(&out, &client, &request, &pids, (&shape, spine_rows)).await?;
    // The same training set into pandas through the Python client, as a data scientist gets it.
    let from_python = if python::client_available() {
        let f = python::client_training_set(&nodes[0].endpoint(), &spine)?;
        let secs = f["seconds"].as_f64().context("python_client.py printed no 'seconds'")?;
        out.say(format!("python client: the training set into pandas in {secs:.2} s ({} rows)", f["rows"]));
        Some(secs)
    } else {
        out.say(
            "python client: skipped, the bench's Python cannot import quiver and pandas (pip install ./python pandas)",
        );
        None
    };
    // Stopped so that DuckDB has the machine to itself.
    for node in &mut nodes {
        node.terminate()?;
    }

    let duck = if duckdb::available() {
        let glob = format!("{data_path}/*.parquet");
        let d = duckdb::asof_join(&glob, &spine, ttl_secs)?;
        out.say(format!(
            "duckdb {} ({} threads): {:.2} s, {} rows out, {} matched, peak memory {:.0} MiB{}",
            d.version,
            d.threads,
            d.seconds,
            d.rows,
            d.matched,
            mib(d.peak_kib),
            d.pandas_seconds.map_or(String::new(), |s| format!("; into pandas {s:.2} s"))
        ));
        if [&fresh, &compact].iter().any(|r| r.matched.is_some_and(|m| m as u64 != d.matched)) {
            out.say("warning: Quiver and DuckDB matched different numbers of spine rows");
        }
        Some(d)
    } else {
        out.say("duckdb: skipped, python3 cannot import duckdb (to compare: pip install duckdb)");
        None
    };

    out.say(format!("\npoint-in-time retrieval, {name}: {rows} feature rows, {spine_rows}-row spine"));
    out.say(format!(
        "{:<12} {:>6} {:>9} {:>9} {:>14} {:>16} {:>16}",
        "files", "count", "quiver s", "duckdb s", "quiver/duckdb", "quiver peak MiB", "duckdb peak MiB"
    ));
    let cell = |v: Option<f64>, decimals: usize| v.map_or("-".into(), |v| format!("{v:.decimals$}"));
    for (label, r) in [("as ingested", &fresh), ("compacted", &compact)] {
        out.say(format!(
            "{label:<12} {:>6} {:>9.2} {:>9} {:>14} {:>16.0} {:>16}",
            r.files,
            r.secs,
            cell(duck.as_ref().map(|d| d.seconds), 2),
            cell(duck.as_ref().map(|d| r.secs / d.seconds), 2),
            mib(r.peak_kib),
            cell(duck.as_ref().map(|d| mib(d.peak_kib)), 0)
        ));
    }
    let mut retrieval = fresh.figures();
    retrieval["serving"] = serving;
    out.figures(&json!({
        "kind": "offline", "size": name, "rows": rows, "spine_rows": spine_rows, "cores": cores,
        "nodes": args.nodes, "joined_by": fresh.joined_by,
        "other_nodes_peak_mib": fresh.others_peak_kib.map(mib),
        "peak_per_phase": per_phase,
        "ingest": {"rows": report.rows, "secs": ingest_secs, "rows_per_sec": report.rows as f64 / ingest_secs,
                   "peak_mib": mib(ingest_peak)},
        "statistics": {"lag_secs": stats_secs - ingest_secs, "rows_per_sec": report.rows as f64 / stats_secs},
        "retrieval": retrieval,
        "retrieval_compacted": compact.figures(),
        "python": {"training_set_secs": from_python},
        "materialize": {"rows_read": progress.rows_read, "entities_written": progress.entities_written,
                        "secs": materialize_secs, "rows_per_sec": progress.rows_read as f64 / materialize_secs,
                        "peak_mib": mib(materialize_peak)},
        "duckdb": duck.as_ref().map(|d| json!({"version": d.version, "threads": d.threads, "secs": d.seconds,
                                               "pandas_secs": d.pandas_seconds,
                                               "peak_mib": mib(d.peak_kib), "rows": d.rows, "matched": d.matched})),
    }));
    Ok(())
}
