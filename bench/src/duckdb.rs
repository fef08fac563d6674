//! Runs `bench/duckdb_asof.py` with `python3`, the yardstick for Quiver's point-in-time
//! retrieval. The script is compiled into the binary so that `quiver-bench` runs from
//! anywhere; DuckDB stays an optional Python package, not a build dependency.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

const SCRIPT: &str = include_str!("../duckdb_asof.py");

pub struct Figures {
    pub seconds: f64,
    /// Peak resident memory of the Python process, interpreter included.
    pub peak_kib: u64,
    pub rows: u64,
    pub matched: u64,
    pub threads: u64,
    pub version: String,
}

/// Whether `python3` can import `duckdb`.
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// DuckDB's `ASOF LEFT JOIN` of `spine` against the Parquet files matching `data_glob`.
pub fn asof_join(data_glob: &str, spine: &Path, ttl_secs: u64) -> Result<Figures> {
    let out = Command::new("python3")
        .args(["-c", SCRIPT, data_glob])
        .arg(spine)
        .arg(ttl_secs.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!("duckdb_asof.py exited with {}", out.status);
    }
    // The figures are the last line; anything DuckDB printed before it is not ours.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).with_context(|| format!("reading duckdb_asof.py's JSON from {stdout:?}"))?;
    let number = |name: &str| json[name].as_u64().with_context(|| format!("duckdb_asof.py printed no '{name}'"));
    Ok(Figures {
        seconds: json["seconds"].as_f64().context("duckdb_asof.py printed no 'seconds'")?,
        peak_kib: number("peak_kib")?,
        rows: number("rows")?,
        matched: number("matched")?,
        threads: number("threads")?,
        version: json["version"].as_str().unwrap_or("?").to_string(),
    })
}
