//! Operator view: this node, the cluster's nodes and every group open here.

use std::sync::Arc;

use quiver_core::shard_map::META_GROUP;
use quiver_proto::v1::admin_service_server::AdminService;
use quiver_proto::v1::{
    GroupStatus, MetaReadIndexRequest, MetaReadIndexResponse, NodeStatus, ReplicaLag, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::observed;
use crate::error::{Error, Result};
use crate::node::{Group, Node};

pub struct AdminApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn meta_read_index(
        &self,
        _: Request<MetaReadIndexRequest>,
    ) -> std::result::Result<Response<MetaReadIndexResponse>, Status> {
        observed(&self.node, "MetaReadIndex", async {
            if self.node.leader_of(META_GROUP) != Some(self.node.id) {
                return Err(quiver_core::Error::NotLeader { group: META_GROUP, leader: None }.into());
            }
            Ok(MetaReadIndexResponse { index: self.node.meta_read_index().await? })
        })
        .await
    }

    async fn status(&self, _: Request<StatusRequest>) -> std::result::Result<Response<StatusResponse>, Status> {
        observed(&self.node, "Status", async {
            let state = self.node.meta.borrow().clone();
            let mut groups = Vec::new();
            for g in self.node.groups.all() {
                groups.push(self.group_status(&g, &state).await?);
            }
            let meta_metrics = self.node.groups.get(META_GROUP).map(|g| g.raft.metrics().borrow().clone());
            let nodes = state
                .nodes
                .values()
                .map(|n| {
                    // A node is up if it is this one, or the meta leader here sees it replicating.
                    let replicating = meta_metrics
                        .as_ref()
                        .and_then(|m| m.replication.as_ref())
                        .is_some_and(|r| r.get(&n.id).is_some_and(Option::is_some));
                    NodeStatus { id: n.id, address: n.addr.clone(), up: n.id == self.node.id || replicating }
                })
                .collect();
            Ok(StatusResponse { node_id: self.node.id, version: env!("CARGO_PKG_VERSION").into(), nodes, groups })
        })
        .await
    }
}

impl AdminApi {
    async fn group_status(&self, g: &Group, state: &crate::meta::MetaState) -> Result<GroupStatus> {
        let m = g.raft.metrics().borrow().clone();
        let committed = g.raft.with_raft_state(|s| s.committed).await.map_err(|e| Error::Raft(e.to_string()))?;
        let range = state.shard_map.shard(g.id).ok().map(|s| (s.start, s.end)).unwrap_or_default();
        Ok(GroupStatus {
            group_id: g.id,
            kind: if g.id == META_GROUP { "meta" } else { "shard" }.into(),
            leader_id: m.current_leader.unwrap_or_default(),
            has_leader: m.current_leader.is_some(),
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            committed_index: committed.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or_default(),
            voters: m.membership_config.membership().voter_ids().collect(),
            range_start: range.0,
            range_end: range.1,
            state: format!("{:?}", m.state),
            replicas: replica_lags(&m),
        })
    }
}

/// Lag of each replica behind the leader's last log index (only the leader knows it).
fn replica_lags(m: &openraft::RaftMetrics<crate::raft::NodeId, openraft::BasicNode>) -> Vec<ReplicaLag> {
    let last = m.last_log_index.unwrap_or_default();
    m.replication
        .iter()
        .flatten()
        .map(|(id, matched)| {
            let matched_index = matched.map(|l| l.index);
            ReplicaLag { node_id: *id, matched_index, lag: last.saturating_sub(matched_index.unwrap_or_default()) }
        })
        .collect()
}
