//! Runs `bench/duckdb_asof.py` (see `python`), the yardstick for Quiver's point-in-time
//! retrieval. DuckDB stays an optional Python package, not a build dependency.

use std::path::Path;

use anyhow::{Context, Result};

use crate::python;

const SCRIPT: &str = include_str!("../duckdb_asof.py");

pub struct Figures {
    pub seconds: f64,
    /// The join and its answer fetched into a pandas DataFrame, where pandas is installed.
    pub pandas_seconds: Option<f64>,
    /// Peak resident memory of the Python process, interpreter included.
    pub peak_kib: u64,
    pub rows: u64,
    pub matched: u64,
    pub threads: u64,
    pub version: String,
}

/// Whether the bench's Python can import `duckdb`.
pub fn available() -> bool {
    python::can_import("duckdb")
}

/// DuckDB's `ASOF LEFT JOIN` of `spine` against the Parquet files matching `data_glob`, and
/// (where pandas is there) the same answer fetched into a pandas DataFrame.
pub fn asof_join(data_glob: &str, spine: &Path, ttl_secs: u64) -> Result<Figures> {
    let spine = spine.display().to_string();
    let json = python::run("duckdb_asof.py", SCRIPT, &[data_glob, &spine, &ttl_secs.to_string()])?;
    let number = |name: &str| json[name].as_u64().with_context(|| format!("duckdb_asof.py printed no '{name}'"));
    Ok(Figures {
        seconds: json["seconds"].as_f64().context("duckdb_asof.py printed no 'seconds'")?,
        pandas_seconds: json["pandas_seconds"].as_f64(),
        peak_kib: number("peak_kib")?,
        rows: number("rows")?,
        matched: number("matched")?,
        threads: number("threads")?,
        version: json["version"].as_str().unwrap_or("?").to_string(),
    })
}
