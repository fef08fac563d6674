//! `quiver-node`: runs one node. Settings come from defaults, then `--config FILE` (TOML),
//! then `QUIVER_*` environment variables and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use quiver_node::Config;

#[derive(Parser, Debug)]
#[command(name = "quiver-node", version, about = "Runs a Quiver feature-store node")]
struct Args {
    /// TOML config file; flags and QUIVER_* variables override it.
    #[arg(long, env = "QUIVER_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id in the cluster [default: 1]
    #[arg(long, env = "QUIVER_NODE_ID")]
    node_id: Option<u64>,
    /// Where the node keeps its data [default: ./quiver-data]
    #[arg(long, env = "QUIVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC address [default: 127.0.0.1:7070]
    #[arg(long, env = "QUIVER_LISTEN")]
    listen: Option<SocketAddr>,
    /// HTTP address for /health and /metrics [default: 127.0.0.1:7080]
    #[arg(long, env = "QUIVER_HTTP")]
    http: Option<SocketAddr>,
    /// Address peers reach this node at [default: the listen address]
    #[arg(long, env = "QUIVER_ADVERTISE")]
    advertise: Option<String>,
    /// Address clients reach this node at, when not the one peers use [default: --advertise]
    #[arg(long, env = "QUIVER_ADVERTISE_CLIENT")]
    advertise_client: Option<String>,
    /// Comma-separated addresses of the members forming a new cluster (this node's included);
    /// every member gets the same list
    #[arg(long, env = "QUIVER_INITIAL_CLUSTER", value_delimiter = ',')]
    initial_cluster: Vec<String>,
    /// Address of any member of a running cluster to join (first start only)
    #[arg(long, env = "QUIVER_JOIN", conflicts_with = "initial_cluster")]
    join: Option<String>,
    /// Without TLS: the cluster's secret, which members prove themselves with; every member of
    /// a new cluster of several gets the same path (the first to start makes the file), and a
    /// joining node a copy of it (first start only)
    #[arg(long, env = "QUIVER_CLUSTER_SECRET")]
    cluster_secret: Option<PathBuf>,
    /// With --auth, a local directory or s3://bucket/prefix ingests may read from; repeat or
    /// comma-separate for more ([ingest] allow; none by default)
    #[arg(long, env = "QUIVER_INGEST_ALLOW", value_delimiter = ',')]
    ingest_allow: Vec<String>,
    /// Number of shards laid out on first start [default: 8]
    #[arg(long, env = "QUIVER_SHARDS")]
    shards: Option<u64>,
    /// Offline store: a directory or s3://bucket/prefix [default: <data-dir>/offline]
    #[arg(long, env = "QUIVER_OFFLINE_STORE")]
    offline_store: Option<String>,
    /// TLS: this node's certificate (PEM); with --tls-key and --tls-ca
    #[arg(long, env = "QUIVER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS: this node's private key (PEM)
    #[arg(long, env = "QUIVER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// TLS: the cluster's CA (PEM), which peers' and clients' certificates are checked against
    #[arg(long, env = "QUIVER_TLS_CA", alias = "tls-client-ca")]
    tls_ca: Option<PathBuf>,
    /// Require a token on every request ([auth] enabled)
    #[arg(long, env = "QUIVER_AUTH")]
    auth: bool,
    /// Listen on a non-loopback address without TLS and authentication (logged loudly)
    #[arg(long, env = "QUIVER_INSECURE")]
    insecure: bool,
    /// Spread shard leaders evenly over the nodes by itself [default: true]
    #[arg(long, env = "QUIVER_BALANCE_LEADERS")]
    balance_leaders: Option<bool>,
    /// A node silent this long is taken for dead: its replicas are made again elsewhere
    /// ([sharding] replace_dead_after) [default: 5m]
    #[arg(long, env = "QUIVER_REPLACE_DEAD_AFTER")]
    replace_dead_after: Option<String>,
    /// Memory a training set's join may take before it spills, e.g. 4GiB or 25% [default: 25%]
    #[arg(long, env = "QUIVER_RETRIEVAL_MEMORY")]
    retrieval_memory: Option<String>,
    /// Split training sets of at least this many spine rows over the cluster [default: 100000]
    #[arg(long, env = "QUIVER_SPLIT_MIN_ROWS")]
    split_min_rows: Option<u64>,
    /// Memory for the rows online reads got lately, in MiB; 0: no cache ([online]
    /// row_cache_mib) [default: 256]
    #[arg(long, env = "QUIVER_ROW_CACHE_MIB")]
    row_cache_mib: Option<u64>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Config::from_toml(&text, &path.display().to_string())?
            }
            None => Config::default(),
        };
        if let Some(v) = self.node_id {
            config.node_id = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.http {
            config.http = v;
        }
        if self.advertise.is_some() {
            config.advertise = self.advertise;
        }
        if self.advertise_client.is_some() {
            config.advertise_client = self.advertise_client;
        }
        if self.cluster_secret.is_some() {
            config.cluster_secret = self.cluster_secret;
        }
        config.ingest.allow.extend(self.ingest_allow);
        if let Some(v) = self.shards {
            config.shards = v;
        }
        if let Some(v) = self.row_cache_mib {
            config.online.row_cache_mib = v;
        }
        if self.offline_store.is_some() {
            config.offline_store = self.offline_store;
        }
        if !self.initial_cluster.is_empty() {
            config.initial_cluster = self.initial_cluster;
        }
        if self.join.is_some() {
            config.join = self.join;
        }
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key;
        }
        if self.tls_ca.is_some() {
            config.tls.ca = self.tls_ca;
        }
        config.auth.enabled |= self.auth;
        config.insecure |= self.insecure;
        if let Some(v) = self.balance_leaders {
            config.sharding.balance_leaders = v;
        }
        if let Some(v) = self.replace_dead_after {
            config.sharding.replace_dead_after = v;
        }
        if let Some(v) = self.retrieval_memory {
            config.offline.retrieval_memory = v;
        }
        if let Some(v) = self.split_min_rows {
            config.offline.split_min_rows = v;
        }
        config.resolve_node_id()?;
        config.validate()?;
        Ok(config)
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

/// glibc's allocator was a fifth of the CPU time of the online read path (measured with `perf`; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn")),
        )
        // Colours for a terminal only: a log file or journal keeps plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = Args::parse().into_config()?;
    tracing::info!(node = config.node_id, listen = %config.listen, http = %config.http, data_dir = %config.data_dir.display(), "starting");
    let node = quiver_node::start(config).await?;
    let halt = node.peers.halt();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            why = halt.until_set() => tracing::error!("stopping: {why}"),
        }
    };
    quiver_node::api::serve(node.clone(), stop).await?;
    node.shutdown().await;
    if let Some(why) = node.peers.halt().why() {
        anyhow::bail!(why);
    }
    tracing::info!("stopped");
    Ok(())
}
