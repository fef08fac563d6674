//! Background work. Each worker is a named loop with an interval; what it does in one round
//! is a plain async function of the parts of the node it needs (`Context`), which tests
//! and operators can reason about step by step.

pub mod autosplit;
pub mod backup;
pub mod compaction;
pub mod export;
pub mod monitors;
pub mod replicas;
pub mod scheduler;
pub mod serving_stats;
pub mod statistics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quiver_offline::store::OfflineStore;

use crate::backup::create::Backups;
use crate::groups::Groups;
use crate::meta_reader::MetaReader;
use crate::metrics::Metrics;
use crate::proposer::Proposer;
use crate::raft::NodeId;
use crate::raft::network::PeerPool;
use crate::serving_log::ServingLog;
use quiver_store::config::{BackupConfig, ShardingConfig, WorkerConfig};

/// The parts of a node that workers use.
#[derive(Clone)]
pub struct Context {
    pub me: NodeId,
    pub config: WorkerConfig,
    pub sharding: ShardingConfig,
    /// Connections to other nodes, for what is not a proposal (a leadership transfer's
    /// campaign call).
    pub pool: PeerPool,
    pub groups: Arc<Groups>,
    pub meta: MetaReader,
    pub proposer: Arc<Proposer>,
    pub offline: OfflineStore,
    pub metrics: Metrics,
    pub serving: Arc<ServingLog>,
    pub backups: Arc<Backups>,
    pub backup: BackupConfig,
}

/// Runs `round` every `interval` until the process ends, logging failures.
pub fn spawn<F, Fut>(context: Context, name: &'static str, interval: Duration, round: F)
where
    F: Fn(Context) -> Fut + Send + 'static,
    Fut: Future<Output = quiver_store::error::Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = round(context.clone()).await {
                tracing::warn!(worker = name, "round failed: {e}");
            }
        }
    });
}
