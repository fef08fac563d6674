//! One Quiver node, as its services see it: the parts it was assembled from (see
//! `server::start`). Services take the parts they use; nothing below imports the node.

use std::sync::Arc;

use quiver_core::shard_map::META_GROUP;
use quiver_offline::store::OfflineStore;
use tracing::warn;

use crate::auth::Gate;
use crate::auth::audit::AuditLog;
use crate::backup::create::Backups;
use crate::groups::Groups;
use crate::meta_reader::MetaReader;
use crate::metrics::Metrics;
use crate::proposer::Proposer;
use crate::raft::NodeId;
use crate::raft::network::PeerPool;
use crate::serving_log::ServingLog;
use crate::tls::Tls;
use crate::trust::token;
use quiver_store::config::Config;
use quiver_store::storage::KvEngine;

pub struct Node {
    pub id: NodeId,
    pub config: Config,
    /// The Raft groups open here.
    pub groups: Arc<Groups>,
    /// The meta state: as applied here, or caught up with the metadata leader.
    pub meta: MetaReader,
    /// Proposals to any group, forwarded to its leader.
    pub proposer: Arc<Proposer>,
    pub metrics: Metrics,
    pub offline: OfflineStore,
    /// A sample of the values online reads served, summarized for drift.
    pub serving: Arc<ServingLog>,
    /// Makes backups of the whole cluster.
    pub backups: Arc<Backups>,
    /// Who is calling, and may they.
    pub gate: Arc<Gate>,
    /// What was done, by whom: recorded through the meta group.
    pub audit: Arc<AuditLog>,
    /// TLS on the gRPC and HTTP ports, when configured.
    pub tls: Option<Tls>,
    /// Channels to the other nodes (over TLS when the node has it).
    pub peers: PeerPool,
    pub(crate) engine: Arc<dyn KvEngine>,
}

impl Node {
    /// True once the meta group and every shard assigned here have a leader, and the
    /// cluster admin's token is known here, and, with authentication on, this node's view of
    /// the tokens is fresh (`auth::TOKEN_VIEW_BOUND`).
    pub fn is_ready(&self) -> bool {
        let state = self.meta.latest();
        let assigned = state.shard_map.shards.iter().filter(|s| s.hosted_by(self.id));
        // The first member registers the cluster admin's token once the meta group has a
        // leader: until this node has applied it, that token would be refused here.
        let admin_known = state.tokens.values().any(|t| t.name == token::BOOTSTRAP_NAME);
        let tokens_fresh = !self.config.auth.enabled || self.meta.caught_up_within(crate::auth::TOKEN_VIEW_BOUND);
        !state.shard_map.shards.is_empty()
            && admin_known
            && tokens_fresh
            && self.groups.leader_of(META_GROUP).is_some()
            && assigned.into_iter().all(|s| self.groups.leader_of(s.id).is_some())
    }

    /// Stops every group and flushes the engine.
    pub async fn shutdown(&self) {
        for group in self.groups.all() {
            if let Err(e) = group.raft.shutdown().await {
                warn!(group = group.id, "stopping raft: {e}");
            }
        }
        if let Err(e) = self.engine.flush() {
            warn!("final flush: {e}");
        }
    }
}
