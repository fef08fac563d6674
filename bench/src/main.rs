//! `quiver-bench`: starts a real `quiver-node` (from the same target directory) on a temp
//! directory, loads a deterministic data set through the Rust client and prints figures.
//! It never asserts on time; `--quick` runs in seconds so CI keeps it compiling and working.

mod datagen;
mod duckdb;
mod offline;
mod online;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The benchmark project: one feature set of 8 float64 and 2 int64 features per driver.
pub const DEFINITIONS: &str = "
project: bench
entities:
  - name: driver
    join_keys: [{name: driver_id, type: int64}]
feature_sets:
  - name: driver_stats
    entity: driver
    timestamp: event_timestamp
    ttl: 30d
    features:
      - {name: f0, type: float64}
      - {name: f1, type: float64}
      - {name: f2, type: float64}
      - {name: f3, type: float64}
      - {name: f4, type: float64}
      - {name: f5, type: float64}
      - {name: f6, type: float64}
      - {name: f7, type: float64}
      - {name: i0, type: int64}
      - {name: i1, type: int64}
feature_vectors:
  - name: all
    features: ['driver_stats:*']
";

#[derive(Parser)]
#[command(about = "Measures Quiver on a single node and prints figures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Online write throughput and read latency.
    Online(online::Args),
    /// Batch ingestion and point-in-time retrieval, beside DuckDB's as-of join.
    Offline(offline::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Online(args) => online::run(args).await,
        Command::Offline(args) => offline::run(args).await,
    }
}
