//! The Python programs the bench runs, compiled into the binary so that `quiver-bench` runs
//! from anywhere: DuckDB's as-of join (`duckdb.rs`) and Quiver's Python client
//! (`python_client.py`, below). Both run under `QUIVER_BENCH_PYTHON` (default `python3`), the
//! interpreter that has duckdb, pandas and the `quiver` package; each is skipped without them.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

const CLIENT: &str = include_str!("../python_client.py");

fn interpreter() -> String {
    std::env::var("QUIVER_BENCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether the interpreter can import every one of `modules`.
pub fn can_import(modules: &str) -> bool {
    Command::new(interpreter())
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `script` (called `name` in messages) with `args`: the JSON object it prints last.
pub fn run(name: &str, script: &str, args: &[&str]) -> Result<Value> {
    let out = Command::new(interpreter())
        .args(["-c", script])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {name} with {}", interpreter()))?;
    if !out.status.success() {
        bail!("{name} exited with {}", out.status);
    }
    // The figures are the last line; anything a library printed before it is not ours.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("reading {name}'s JSON from {stdout:?}"))
}

/// Whether the client's figures can be taken: `quiver` (and pandas, which they end in) import.
pub fn client_available() -> bool {
    can_import("quiver, pandas")
}

/// The Python client's closed-loop reads of the bench's vector at one client, for 1 and for
/// 100 entities: `{"1": {requests_per_sec, p50_us, p99_us, ...}, "100": {...}}`.
pub fn client_reads(endpoint: &str, entities: i64, seconds: f64) -> Result<Value> {
    run("python_client.py", CLIENT, &["online", endpoint, &entities.to_string(), &seconds.to_string()])
}

/// The Python client's training set for `spine` into a pandas frame: `{seconds, rows}`.
pub fn client_training_set(endpoint: &str, spine: &Path) -> Result<Value> {
    run("python_client.py", CLIENT, &["history", endpoint, &spine.display().to_string()])
}
