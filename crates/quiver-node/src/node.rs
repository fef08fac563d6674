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
        self.waiting_for().is_empty()
    }

    /// What keeps the node from being ready (`is_ready`), each in a few words.
    pub fn waiting_for(&self) -> Vec<String> {
        let state = self.meta.latest();
        let mut waiting = Vec::new();
        if state.shard_map.shards.is_empty() {
            waiting.push("the shard map".to_string());
        }
        // The first member registers the cluster admin's token once the meta group has a
        // leader: until this node has applied it, that token would be refused here.
        if !state.tokens.values().any(|t| t.name == token::BOOTSTRAP_NAME) {
            waiting.push("the cluster admin's token".to_string());
        }
        if self.config.auth.enabled && !self.meta.caught_up_within(crate::auth::TOKEN_VIEW_BOUND) {
            waiting.push("a fresh view of the tokens".to_string());
        }
        if self.groups.leader_of(META_GROUP).is_none() {
            waiting.push("a leader of the meta group".to_string());
        }
        for shard in state.shard_map.shards.iter().filter(|s| s.hosted_by(self.id)) {
            match self.groups.get(shard.id) {
                None => waiting.push(format!("shard {} to open here", shard.id)),
                Some(group) if group.leader().is_none() => waiting.push(format!("a leader of shard {}", shard.id)),
                Some(_) => {}
            }
        }
        waiting
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
