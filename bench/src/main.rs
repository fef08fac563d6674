//! `quiver-bench`: starts a real `quiver-node` (from the same target directory) on a temp
//! directory, loads a deterministic data set through the Rust client and prints figures;
//! measures a Redis server with the same data as a yardstick; and prints `bench/run.sh`'s table.
//! It never asserts on time; `--quick` runs in seconds so CI keeps it compiling and working.

mod backup;
mod datagen;
mod duckdb;
mod offline;
mod online;
mod output;
mod python;
mod redis;
mod security;
mod split;
mod table;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Measures Quiver (beside Redis and DuckDB) and prints figures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Online write throughput and read latency.
    Online(online::Args),
    /// Batch ingestion, point-in-time retrieval beside DuckDB's as-of join, materialization.
    Offline(offline::Args),
    /// A shard holding many rows split in two while writers write: its time, and the writes'.
    Split(split::Args),
    /// Full and incremental backups while writers write, and a restore: times, throughput,
    /// and the writes' throughput and latency.
    Backup(backup::Args),
    /// Online reads and pushes on one node open, with TLS, and with TLS and tokens.
    Security(security::Args),
    /// Loads the online data set into a running Redis and reads it with redis-benchmark.
    Redis(redis::Args),
    /// Prints one table, medians over runs, from the `--format json` outputs in a directory.
    Table(table::Args),
}

/// glibc's allocator was a fifth of the CPU time of the online read path (measured with `perf`; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Online(args) => online::run(args).await,
        Command::Offline(args) => offline::run(args).await,
        Command::Redis(args) => redis::run(args),
        Command::Split(args) => split::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Security(args) => security::run(args).await,
        Command::Table(args) => table::run(args),
    }
}
