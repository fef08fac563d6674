//! Reads of the meta state: the latest this node applied, or — when a caller must see
//! every change acknowledged anywhere (read-your-writes through any node) — the state once
//! this node has caught up with the metadata leader's read index.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quiver_core::shard_map::META_GROUP;
use quiver_core::table::TableRef;

use crate::groups::Groups;
use crate::raft::network::PeerPool;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace;
use quiver_store::meta::{MetaState, MetaView};

/// How long a membership check waits for a peer's answer.
const MEMBERSHIP_ASK_FOR: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct MetaReader {
    groups: Arc<Groups>,
    view: MetaView,
    pool: PeerPool,
    /// How long catching up waits through an election of the meta group.
    retry_for: Duration,
    /// When the last catch-up that succeeded asked for its read index (µs after `started`,
    /// 0: never): this node's state then held every change acknowledged anywhere before that
    /// moment. An atomic: every authenticated request reads it.
    caught_up_at: Arc<AtomicU64>,
    started: Instant,
}

impl MetaReader {
    pub fn new(groups: Arc<Groups>, view: MetaView, pool: PeerPool, retry_for: Duration) -> MetaReader {
        MetaReader { groups, view, pool, retry_for, caught_up_at: Arc::default(), started: Instant::now() }
    }

    /// Has this node caught up with the metadata leader within `bound`? A node cut off from
    /// it for longer may hold a stale view (of revoked tokens, say).
    pub fn caught_up_within(&self, bound: Duration) -> bool {
        let at = self.caught_up_at.load(Ordering::Acquire);
        at != 0 && (self.started.elapsed().as_micros() as u64).saturating_sub(at) <= bound.as_micros() as u64
    }

    /// The meta state this node applied last (may lag the metadata leader).
    pub fn latest(&self) -> Arc<MetaState> {
        self.view.borrow().clone()
    }

    /// A receiver that wakes on every newly applied meta state.
    pub fn watch(&self) -> MetaView {
        self.view.clone()
    }

    /// The meta log index that covers every change acknowledged so far, from the metadata
    /// leader (this node, or asked over gRPC). While the meta group elects a leader (none
    /// known, or the one known does not answer) it asks again, for a bounded time.
    pub async fn read_index(&self) -> Result<u64> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.read_index_once().await {
                Err(e) if Instant::now() < deadline && e.is_transient() => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }

    async fn read_index_once(&self) -> Result<u64> {
        let group = self.groups.group(META_GROUP)?;
        if self.groups.leads(META_GROUP) {
            group.linearize().await?;
            return Ok(group.raft.metrics().borrow().last_applied.map_or(0, |l| l.index));
        }
        let leader = group.leader();
        let addr = leader
            .and_then(|id| self.latest().nodes.get(&id).map(|n| n.addr.clone()))
            .ok_or_else(|| quiver_core::Error::Unavailable("the meta group has no leader".into()))?;
        let asked = self.read_index_of(&addr).await?;
        asked.map_err(|s| {
            quiver_core::Error::Unavailable(format!("meta read index from {addr}: {}", s.message())).into()
        })
    }

    /// The metadata read index as the member at `addr` answers it; a refusal that says this
    /// node was removed is noted (`PeerPool::refused`).
    async fn read_index_of(&self, addr: &str) -> Result<std::result::Result<u64, tonic::Status>> {
        let channel = self.pool.channel(addr).map_err(Error::Raft)?;
        let mut client = quiver_proto::v1::admin_service_client::AdminServiceClient::new(channel);
        let reply = client.meta_read_index(quiver_proto::v1::MetaReadIndexRequest {}).await;
        if let Err(status) = &reply {
            self.pool.refused(status);
        }
        Ok(reply.map(|r| r.into_inner().index))
    }

    /// Asks the metadata leader, or with none known here (or this node, no longer a voter,
    /// still taking itself for the leader) every other member, to admit a
    /// request of this node's: one the cluster removed is refused, and the pool notes it
    /// (`PeerPool::refused`). Such a node is no longer sent anything, so it must ask.
    pub async fn check_membership(&self, me: u64) {
        let Ok(group) = self.groups.group(META_GROUP) else { return };
        let state = self.latest();
        // Applied here (by a metadata leader that removed itself, say): nothing to ask.
        if me < state.next_node_id && !state.nodes.contains_key(&me) {
            return self.pool.note_removed();
        }
        // A leader that removed itself from the voters may still call itself leader here.
        let voter = group.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == me);
        let ask: Vec<&str> = match group.leader() {
            Some(leader) if leader == me && voter => return,
            Some(leader) if leader != me => state.nodes.get(&leader).map(|n| n.addr.as_str()).into_iter().collect(),
            _ => state.nodes.values().filter(|n| n.id != me).map(|n| n.addr.as_str()).collect(),
        };
        for addr in ask {
            // A peer that does not answer in time is asked again at the next check.
            let _ = tokio::time::timeout(MEMBERSHIP_ASK_FOR, self.read_index_of(addr)).await;
        }
    }

    /// The meta state once this node has applied everything the metadata leader acknowledged.
    pub async fn caught_up(&self) -> Result<Arc<MetaState>> {
        let asked = Instant::now();
        let index = self.read_index().await?;
        let group = self.groups.group(META_GROUP)?;
        let waited =
            group.raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(index), "meta catch-up").await;
        waited.map_err(|e| quiver_core::Error::Unavailable(format!("catching up with the registry: {e}")))?;
        // Never 0, which means never; `fetch_max`: a slow catch-up asked earlier than one
        // that finished first does not move the time back.
        let asked = (asked.duration_since(self.started).as_micros() as u64).max(1);
        self.caught_up_at.fetch_max(asked, Ordering::AcqRel);
        Ok(self.latest())
    }

    /// True when source `source` of `table` was committed (as applied here: a lagging node
    /// may say false, and the commit itself refuses the duplicate).
    pub fn has_source(&self, table: &TableRef, source: &str) -> Result<bool> {
        Ok(self.groups.group(META_GROUP)?.data.get(&keyspace::source(table, source))?.is_some())
    }

    /// Runs `check` on the applied meta state. When it fails for a name the registry does
    /// not know, the state may just be behind the metadata leader: catch up to the leader's
    /// read index and check once more, so a definition acknowledged through any node is
    /// seen here too.
    /// Returns the state the check passed on, with what the check computed from it.
    pub async fn current<T>(&self, check: impl Fn(&MetaState) -> Result<T>) -> Result<(Arc<MetaState>, T)> {
        let state = self.latest();
        match check(&state) {
            Err(Error::Core(
                quiver_core::Error::UnknownProject(_)
                | quiver_core::Error::UnknownEntity(_)
                | quiver_core::Error::UnknownFeatureSet(_)
                | quiver_core::Error::UnknownFeature { .. }
                | quiver_core::Error::UnknownVector(_),
            )) => {
                let state = self.caught_up().await?;
                let checked = check(&state)?;
                Ok((state, checked))
            }
            other => other.map(|checked| (state, checked)),
        }
    }
}
