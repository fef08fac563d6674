//! The node's side of the audit log: entries go to the meta group in batches (one proposal
//! carries every entry waiting), and a request that must be on record (a change, a read of
//! personal data) is answered only once its entry is committed. Entries about requests
//! without a valid token are recorded without waiting, and dropped (counted) while the
//! queue is full, so a flood of them cannot stall the node.

use std::sync::Arc;

use quiver_core::Error as CoreError;
use quiver_core::audit::{AuditEntry, AuditQuery};
use tokio::sync::{mpsc, oneshot};

use super::write_tally::WriteTally;
use crate::proposer::Proposer;
use quiver_store::codec::load;
use quiver_store::command::MetaCommand;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace;
use quiver_store::meta::audit_chain;
use quiver_store::storage::KvTree;

/// Entries waiting for the meta group, at most.
const QUEUE: usize = 10_000;
/// Entries in one proposal, at most.
const BATCH: usize = 1_000;

type Waiter = Option<oneshot::Sender<Result<(), CoreError>>>;

pub struct AuditLog {
    tx: mpsc::Sender<(AuditEntry, Waiter)>,
    /// Writes, counted until their minute ends (`write_tally`).
    pub writes: WriteTally,
    /// Entries dropped because the queue was full (`quiver_audit_dropped_total`).
    dropped: prometheus::IntCounter,
}

impl AuditLog {
    /// Starts the task that writes entries of node `node` to the meta group, forgetting
    /// entries older than `retention`.
    pub fn start(
        node: u64,
        proposer: Arc<Proposer>,
        retention: std::time::Duration,
        dropped: prometheus::IntCounter,
    ) -> Arc<AuditLog> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let retention_micros = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        tokio::spawn(flush(node, proposer, retention_micros, rx));
        Arc::new(AuditLog { tx, writes: WriteTally::default(), dropped })
    }

    /// Records `entry`, answering once the meta group has committed it.
    pub async fn record(&self, entry: AuditEntry) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let stopped = || Error::Core(CoreError::Unavailable("the node is stopping: no audit log".into()));
        self.tx.send((entry, Some(done))).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(|e| {
            Error::Core(CoreError::Unavailable(format!("the audit log could not record the request: {e}")))
        })
    }

    /// Records `entry` without waiting; drops it when the queue is full.
    pub fn record_later(&self, entry: AuditEntry) {
        if self.tx.try_send((entry, None)).is_err() {
            self.dropped.inc();
        }
    }
}

async fn flush(
    node: u64,
    proposer: Arc<Proposer>,
    retention_micros: i64,
    mut rx: mpsc::Receiver<(AuditEntry, Waiter)>,
) {
    // Keys are (time, node, seq): a counter per process keeps two entries of one
    // microsecond apart.
    let mut seq = 0u64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (entries, waiters): (Vec<AuditEntry>, Vec<Waiter>) = batch.into_iter().unzip();
        let first_seq = seq;
        seq += entries.len() as u64;
        let command = MetaCommand::RecordAudit { node, first_seq, entries, retention_micros };
        let result = proposer.write_meta(command).await.map(drop).map_err(Error::into_core);
        if let Err(e) = &result {
            tracing::warn!("recording audit entries: {e}");
        }
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(result.clone());
        }
    }
}

/// How far back of a query's `since` the chain is read: entries are chained in the order
/// applied, which may differ from their nodes' clocks by this much.
const CLOCK_SLACK_MICROS: i64 = 3_600_000_000;

/// The entries of the meta group's `tree` that `query` asks for, oldest first: from the
/// chain (newest back, until `limit` or `since` is passed), and from before it began.
pub fn read(tree: &dyn KvTree, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let since = query.since.unwrap_or(i64::MIN);
    let mut matched = 0;
    let mut found = audit_chain::newest_first(tree, |entry| {
        matched += usize::from(query.matches(entry));
        matched <= query.limit() && entry.at >= since.saturating_sub(CLOCK_SLACK_MICROS)
    })?;
    found.retain(|e| query.matches(e));
    let start = keyspace::audit_from(since);
    let end = keyspace::audit_from(i64::MAX);
    let mut legacy = std::collections::VecDeque::new();
    for kv in tree.scan((std::ops::Bound::Included(start), std::ops::Bound::Included(end))) {
        let entry: AuditEntry = load(&kv?.1)?;
        if query.matches(&entry) {
            if legacy.len() == query.limit() {
                legacy.pop_front();
            }
            legacy.push_back(entry);
        }
    }
    found.extend(legacy);
    found.sort_by_key(|e| e.at);
    let extra = found.len().saturating_sub(query.limit());
    Ok(found.split_off(extra))
}
