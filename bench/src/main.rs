//! `quiver-bench`: starts a real `quiver-node` (from the same target directory) on a temp
//! directory, loads a deterministic data set through the Rust client and prints figures.
//! It never asserts on time; `--quick` runs in seconds so CI keeps it compiling and working.

mod datagen;
mod duckdb;
mod offline;
mod online;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Measures Quiver on a single node and prints figures", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    // Without a subcommand the online benchmark runs, as before subcommands existed:
    // `.ci/run` and the README invoke `quiver-bench [--quick]`.
    #[command(flatten)]
    online: online::Args,
}

#[derive(Subcommand)]
enum Command {
    /// Online write throughput and read latency (the default).
    Online(online::Args),
    /// Batch ingestion and point-in-time retrieval, beside DuckDB's as-of join.
    Offline(offline::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => online::run(cli.online).await,
        Some(Command::Online(args)) => online::run(args).await,
        Some(Command::Offline(args)) => offline::run(args).await,
    }
}
