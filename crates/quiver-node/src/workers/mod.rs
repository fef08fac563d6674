//! Background work. Each worker is a named loop with an interval; what it does in one round
//! is a plain async function that tests and operators can reason about step by step.

pub mod compaction;
pub mod export;
pub mod monitors;
pub mod replicas;
pub mod scheduler;
pub mod statistics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;

/// Runs `round` every `interval` until the process ends, logging failures.
pub fn spawn<F, Fut>(node: Arc<Node>, name: &'static str, interval: Duration, round: F)
where
    F: Fn(Arc<Node>) -> Fut + Send + 'static,
    Fut: Future<Output = crate::error::Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = round(node.clone()).await {
                tracing::warn!(worker = name, "round failed: {e}");
            }
        }
    });
}
