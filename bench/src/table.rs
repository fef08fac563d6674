//! `bench/run.sh`'s table: reads the JSON figures of every `online`, `redis` and `offline` run in
//! a directory and prints Quiver beside Redis and DuckDB as one Markdown table, each figure the
//! median of the runs, with the range where there were several.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// A directory of `*.json` files, each the output of one `--format json` run.
    dir: PathBuf,
    /// Label the figures as coming from `--quick` runs.
    #[arg(long)]
    quick: bool,
}

/// One figure over the runs that measured it.
#[derive(Clone, Copy)]
pub(crate) struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) fn stat(mut values: Vec<f64>) -> Option<Stat> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let (first, last) = (*values.first()?, *values.last()?);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    Some(Stat { median, min: first, max: last })
}

/// `value` in runs: each run's figure at `path` (object keys), in the element of the array at
/// `list` that `matches`, or at the top when `list` is empty.
fn across(runs: &[&Value], list: &str, matches: &dyn Fn(&Value) -> bool, path: &[&str]) -> Option<Stat> {
    let values = runs.iter().filter_map(|run| {
        let item = if list.is_empty() { Some(*run) } else { run[list].as_array()?.iter().find(|i| matches(i)) };
        path.iter().try_fold(item?, |v, key| v.get(*key))?.as_f64()
    });
    stat(values.collect())
}

/// 4,365 · 16.1 · 0.26: three significant figures or whole numbers with separators.
fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median, and the range when the runs differ.
fn ranged(s: Option<Stat>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.min == s.max => num(s.median),
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
    }
}

/// Whole numbers (µs, MiB): no decimals below 100 either.
fn whole(s: Option<Stat>) -> String {
    s.map_or("-".into(), |s| if s.median.abs() >= 100.0 { num(s.median) } else { format!("{:.0}", s.median) })
}

fn ratio(quiver: Option<Stat>, other: Option<Stat>) -> String {
    match (quiver, other) {
        (Some(q), Some(o)) if o.median > 0.0 => {
            let r = q.median / o.median;
            if r >= 10.0 { format!("{r:.0}×") } else { format!("{r:.2}×") }
        }
        _ => "-".into(),
    }
}

fn joined(cells: impl IntoIterator<Item = String>) -> String {
    cells.into_iter().collect::<Vec<_>>().join(" / ")
}

struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, what: impl Into<String>, quiver: String, other: String, ratio: String) {
        self.rows.push([what.into(), quiver, other, ratio]);
    }

    fn print(&self) {
        let header = ["measurement", "Quiver", "Redis / DuckDB", "Quiver ÷ other"].map(String::from);
        let mut widths = [0; 4];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 4]| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            println!("| {} |", cells.join(" | "));
        };
        line(&header);
        println!("|{}|", widths.map(|w| "-".repeat(w + 2)).join("|"));
        for row in &self.rows {
            line(row);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("reading {}", args.dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut all = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        all.push(
            serde_json::from_str::<Value>(last).with_context(|| format!("{} holds no JSON figures", path.display()))?,
        );
    }
    anyhow::ensure!(!all.is_empty(), "no figures (*.json) in {}", args.dir.display());
    let kind = |kind: &str| -> Vec<&Value> { all.iter().filter(|v| v["kind"] == kind).collect() };
    let online = |nodes: u64| -> Vec<&Value> { kind("online").into_iter().filter(|v| v["nodes"] == nodes).collect() };
    let offline = |size: &str| -> Vec<&Value> { kind("offline").into_iter().filter(|v| v["size"] == size).collect() };
    let redis = kind("redis");
    let mut t = Table { rows: Vec::new() };

    // Online reads, each Quiver setup beside Redis at the same entities and concurrency.
    let setups = [(1, "linearizable"), (1, "stale"), (3, "linearizable"), (3, "stale")];
    let mut concurrencies: Vec<u64> = kind("online")
        .iter()
        .flat_map(|r| r["reads"].as_array().into_iter().flatten())
        .filter_map(|r| r["concurrency"].as_u64())
        .collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    let percentiles = ["p50_us", "p99_us", "p999_us"];
    for per_request in [1u64, 100] {
        for &c in &concurrencies {
            let at_redis = |r: &Value| r["entities"] == per_request && r["concurrency"] == c;
            let redis_rate = across(&redis, "reads", &at_redis, &["requests_per_sec"]);
            let redis_lat = percentiles.map(|p| across(&redis, "reads", &at_redis, &[p]));
            for (nodes, consistency) in setups {
                let runs = online(nodes);
                if runs.is_empty() {
                    continue;
                }
                let at = |r: &Value| {
                    r["consistency"] == consistency && r["entities"] == per_request && r["concurrency"] == c
                };
                let rate = across(&runs, "reads", &at, &["requests_per_sec"]);
                let lat = percentiles.map(|p| across(&runs, "reads", &at, &[p]));
                let setup = if nodes == 1 { "1 node".to_string() } else { format!("{nodes} nodes") };
                let keys = if per_request == 1 { "1 entity".to_string() } else { format!("{per_request} entities") };
                let clients = if c == 1 { "1 client".to_string() } else { format!("{c} clients") };
                t.row(
                    format!("read {keys}, {clients}, {setup} {consistency}: req/s"),
                    ranged(rate),
                    ranged(redis_rate),
                    ratio(rate, redis_rate),
                );
                t.row(
                    "  p50 / p99 / p99.9 µs",
                    joined(lat.map(whole)),
                    joined(redis_lat.map(whole)),
                    joined((0..3).map(|i| ratio(lat[i], redis_lat[i]))),
                );
            }
        }
    }

    // The Python client's reads (one client, 1 node, linearizable) beside Redis's at one client.
    for per_request in [1u64, 100] {
        let at_redis = |r: &Value| r["entities"] == per_request && r["concurrency"] == 1;
        let redis_rate = across(&redis, "reads", &at_redis, &["requests_per_sec"]);
        let key = per_request.to_string();
        let runs = online(1);
        let rate = across(&runs, "", &|_| true, &["python_reads", &key, "requests_per_sec"]);
        if rate.is_none() {
            continue;
        }
        let lat = ["p50_us", "p99_us"].map(|p| across(&runs, "", &|_| true, &["python_reads", &key, p]));
        let keys = if per_request == 1 { "1 entity".to_string() } else { format!("{per_request} entities") };
        t.row(
            format!("read {keys}, 1 client, 1 node, Python client: req/s"),
            ranged(rate),
            ranged(redis_rate),
            ratio(rate, redis_rate),
        );
        t.row("  p50 / p99 µs", joined(lat.map(whole)), "-".to_string(), "-".to_string());
    }

    // Writes: Quiver only.
    let dash = || "-".to_string();
    for nodes in [1u64, 3] {
        let runs = online(nodes);
        let setup = if nodes == 1 { "1 node" } else { "3 replicas" };
        let mut shapes: Vec<(u64, u64)> = runs
            .iter()
            .flat_map(|r| r["push"].as_array().into_iter().flatten())
            .filter_map(|p| Some((p["batch"].as_u64()?, p["writers"].as_u64()?)))
            .collect();
        shapes.sort_unstable();
        shapes.dedup();
        for (b, writers) in shapes {
            let at = |p: &Value| p["batch"] == b && p["writers"] == writers;
            let rate = across(&runs, "push", &at, &["rows_per_sec"]);
            let lat = [across(&runs, "push", &at, &["p50_us"]), across(&runs, "push", &at, &["p99_us"])];
            t.row(format!("push, batch {b}, {writers} writers, {setup}: rows/s"), ranged(rate), dash(), dash());
            t.row("  request p50 / p99 µs", joined(lat.map(whole)), dash(), dash());
        }
        if nodes > 1 {
            let failover: Vec<f64> = runs
                .iter()
                .flat_map(|r| r["failover_ms"].as_array().into_iter().flatten())
                .filter_map(Value::as_f64)
                .collect();
            if !failover.is_empty() {
                t.row(
                    "failover: SIGKILL of a shard leader → next acknowledged write, ms",
                    ranged(stat(failover)),
                    dash(),
                    dash(),
                );
            }
        }
    }

    // Offline: ingest and materialization (Quiver only), retrieval beside DuckDB.
    let mut duckdb_version = None;
    for size in ["quick", "small", "full"] {
        let runs = offline(size);
        let Some(first) = runs.first() else { continue };
        let (rows, spine) = (first["rows"].as_f64().unwrap_or(0.0), first["spine_rows"].as_f64().unwrap_or(0.0));
        let peak = |phase: &str| whole(across(&runs, "", &|_| true, &[phase, "peak_mib"]));
        let top = |path: &[&str]| across(&runs, "", &|_| true, path);
        t.row(
            format!("ingest, {size} ({} rows of Parquet): rows/s", num(rows)),
            format!("{} (peak {} MiB)", ranged(top(&["ingest", "rows_per_sec"])), peak("ingest")),
            dash(),
            dash(),
        );
        t.row(
            format!("statistics, {size}: rows summarized/s from the ingest's start (lag after it, s)"),
            format!("{} ({})", ranged(top(&["statistics", "rows_per_sec"])), ranged(top(&["statistics", "lag_secs"]))),
            dash(),
            dash(),
        );
        t.row(
            format!("materialize, {size} (into the online store): rows read/s"),
            format!("{} (peak {} MiB)", ranged(top(&["materialize", "rows_per_sec"])), peak("materialize")),
            dash(),
            dash(),
        );
        let (q, d) = (top(&["retrieval", "secs"]), top(&["duckdb", "secs"]));
        t.row(
            format!("point-in-time retrieval, {size} ({} spine rows), files as ingested: s", num(spine)),
            ranged(q),
            ranged(d),
            ratio(q, d),
        );
        let q = top(&["retrieval_compacted", "secs"]);
        t.row("  the same, files compacted (one per day): s", ranged(q), ranged(d), ratio(q, d));
        let (q, d) = (top(&["python", "training_set_secs"]), top(&["duckdb", "pandas_secs"]));
        t.row("  the same into pandas (Python client / DuckDB's .df()): s", ranged(q), ranged(d), ratio(q, d));
        let (q, d) = (top(&["retrieval", "peak_mib"]), top(&["duckdb", "peak_mib"]));
        t.row("  peak memory MiB (the node's whole resident set)", whole(q), whole(d), ratio(q, d));
        let q = top(&["retrieval", "added_mib"]);
        t.row("  memory the retrieval added to the node's, MiB", whole(q), whole(d), ratio(q, d));
        duckdb_version = duckdb_version.or_else(|| runs.iter().find_map(|r| r["duckdb"]["version"].as_str()));
    }

    let cores = all.iter().find_map(|r| r["cores"].as_u64()).unwrap_or(0);
    let redis_version = redis.iter().find_map(|r| r["version"].as_str());
    println!(
        "Quiver beside Redis {} and DuckDB {} on this machine ({cores} cores), {}{}",
        redis_version.unwrap_or("(not run)"),
        duckdb_version.unwrap_or("(not run)"),
        match rounds(&all) {
            1 => "one run".to_string(),
            n => format!("medians of {n} runs (range in parentheses)"),
        },
        if args.quick { "; quick mode: 5,000 entities, 0.5 s per figure, not representative" } else { "" }
    );
    println!();
    t.print();
    println!();
    println!("Reads fetch 10 features per entity. Quiver ÷ other: below 1 for req/s, above 1 for µs, s and MiB means");
    println!("  Quiver is slower or bigger.");
    println!(
        "Redis: redis-server on loopback, persistence off, one hash per driver (`driver:<id>`, fields f0…f7, i0, i1);"
    );
    println!(
        "  `redis-benchmark -c <clients> -r <entities> HMGET driver:__rand_int__ f0 … i1`. For 100 entities a request is"
    );
    println!(
        "  a pipeline of 100 HMGETs (`-P 100`): req/s is HMGET/s ÷ 100, and latency is per HMGET, from sending the"
    );
    println!("  pipeline to that HMGET's reply (so its p99 is about one whole pipeline; its p50 less than one).");
    println!(
        "Quiver reads: a 10-feature vector, closed loop; its client shares the cores with the node(s), as redis-benchmark"
    );
    println!(
        "  does with redis-server. Push: fresh rows for random entities. Peak memory: the node's during each phase."
    );
    println!(
        "DuckDB: `ASOF LEFT JOIN` of the same Parquet files from python3; peak = that process's, interpreter included."
    );
    Ok(())
}

/// Rounds of measurement: the most runs of any one kind (online per node count, redis,
/// offline per size).
fn rounds(all: &[Value]) -> usize {
    let mut kinds: Vec<String> =
        all.iter().map(|v| format!("{}-{}-{}", v["kind"].as_str().unwrap_or(""), v["nodes"], v["size"])).collect();
    kinds.sort();
    kinds.chunk_by(|a, b| a == b).map(<[String]>::len).max().unwrap_or(0)
}
