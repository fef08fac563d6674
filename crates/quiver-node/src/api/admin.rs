//! Operator view: this node, the cluster's nodes and every group open here.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::{BasicNode, RaftMetrics};
use quiver_core::cluster::{ClusterMap, GroupKind};
use quiver_core::shard_map::META_GROUP;
use quiver_core::shard_ops::{OpKind, Outcome};
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_proto::v1::admin_service_server::AdminService;
use quiver_proto::v1::{
    GetShardMapRequest, GetShardMapResponse, GroupStatus, JoinRequest, JoinResponse, MetaReadIndexRequest,
    MetaReadIndexResponse, NodeStatus, RemoveNodeRequest, RemoveNodeResponse, ReplicaLag, ShardOperationRequest,
    ShardOperationResponse, StatusRequest, StatusResponse,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::access;
use super::observed::{admit, allowed, observed};
use super::offline::stream_job;
use crate::auth::Call;
use crate::backup::create::BackupRequest;
use crate::backup::seal::BackupKey;
use crate::groups::Group;
use crate::node::Node;
use crate::raft::NodeId;
use crate::streaming::Streamed;
use quiver_core::access::{Need, Principal};
use quiver_proto::v1;
use quiver_store::command::MetaCommand;
use quiver_store::command::Response as RaftResponse;
use quiver_store::error::{Error, Result};

pub struct AdminApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn meta_read_index(
        &self,
        request: Request<MetaReadIndexRequest>,
    ) -> std::result::Result<Response<MetaReadIndexResponse>, Status> {
        let call = self.member("MetaReadIndex", &request);
        observed(&self.node, &call, async {
            if self.node.groups.leader_of(META_GROUP) != Some(self.node.id) {
                return Err(quiver_core::Error::NotLeader { group: META_GROUP, leader: None }.into());
            }
            Ok(MetaReadIndexResponse { index: self.node.meta.read_index().await? })
        })
        .await
    }

    async fn join(&self, request: Request<JoinRequest>) -> std::result::Result<Response<JoinResponse>, Status> {
        let call = self.member("Join", &request);
        observed(&self.node, &call, async {
            let addr = request.into_inner().address;
            if addr.is_empty() {
                return Err(quiver_core::Error::InvalidArgument("a joining node must give its address".into()).into());
            }
            match self.node.proposer.write_meta(MetaCommand::AddNode { addr }).await? {
                RaftResponse::NodeId(node_id) => Ok(JoinResponse { node_id }),
                other => Err(Error::Raft(format!("unexpected answer to a join: {other:?}"))),
            }
        })
        .await
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> std::result::Result<Response<RemoveNodeResponse>, Status> {
        let call = admit(&self.node, "RemoveNode", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "removing a node" })?;
            let id = request.into_inner().node_id;
            let state = self.node.meta.caught_up().await?;
            if state.nodes.get(&id).is_some_and(|n| !n.draining) && state.active_nodes().len() == 1 {
                let last = format!("node {id} is the cluster's last active node; it cannot be drained");
                return Err(quiver_core::Error::InvalidArgument(last).into());
            }
            self.node.proposer.write_meta(MetaCommand::DrainNode { id }).await?;
            Ok(RemoveNodeResponse {})
        })
        .await
    }

    async fn get_shard_map(
        &self,
        request: Request<GetShardMapRequest>,
    ) -> std::result::Result<Response<GetShardMapResponse>, Status> {
        let call = admit(&self.node, "GetShardMap", &request)?;
        observed(&self.node, &call, async {
            let state = self.node.meta.latest();
            let mut shard_map = state.shard_map.clone();
            // The leader this node sees beats the last one reported to the meta group.
            for s in &mut shard_map.shards {
                s.leader = self.node.groups.leader_of(s.id).or(s.leader);
            }
            let map = ClusterMap {
                shard_map,
                nodes: state.nodes.values().map(|n| (n.id, n.client_addr.clone())).collect(),
                operations: state.ops.clone(),
                finished: state.finished_ops.iter().cloned().collect(),
                exported: state.export_marks.iter().map(|(shard, mark)| (*shard, mark.log_index)).collect(),
            };
            Ok(quiver_proto::cluster_map_to_proto(&map))
        })
        .await
    }

    async fn start_shard_operation(
        &self,
        request: Request<ShardOperationRequest>,
    ) -> std::result::Result<Response<ShardOperationResponse>, Status> {
        let call = admit(&self.node, "StartShardOperation", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "a shard operation" })?;
            let kind = quiver_proto::op_kind_from_proto(request.into_inner())?;
            let id = match self.node.proposer.write_meta(MetaCommand::StartOp { kind, requested: true }).await? {
                RaftResponse::OpId(id) => id,
                other => return Err(Error::Raft(format!("unexpected answer to a shard operation: {other:?}"))),
            };
            let state = self.node.meta.caught_up().await?;
            let finished = state.finished_ops.iter().map(|f| &f.op);
            let op = state.ops.iter().chain(finished).find(|op| op.id == id);
            let op = op.ok_or_else(|| Error::Raft(format!("operation {id} is not in the caught-up meta state")))?;
            Ok(ShardOperationResponse { operation: Some(quiver_proto::shard_op_to_proto(op)) })
        })
        .await
    }

    async fn cancel_shard_operation(
        &self,
        request: Request<v1::CancelShardOperationRequest>,
    ) -> std::result::Result<Response<v1::CancelShardOperationResponse>, Status> {
        let call = admit(&self.node, "CancelShardOperation", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "cancelling a shard operation" })?;
            let id = request.into_inner().id;
            if !self.node.meta.caught_up().await?.ops.iter().any(|op| op.id == id) {
                let gone = format!("no shard operation {id} is under way (`quiverctl shards` lists them)");
                return Err(quiver_core::Error::InvalidArgument(gone).into());
            }
            let why = format!("cancelled by {}", call.caller.name);
            self.node.proposer.write_meta(MetaCommand::AbandonOp { id, why }).await?;
            let state = self.node.meta.caught_up().await?;
            let answer = match state.finished_ops.iter().find(|f| f.op.id == id) {
                Some(ended) => {
                    let how = match &ended.outcome {
                        Outcome::Done => "done".to_string(),
                        Outcome::Failed(why) => format!("failed: {why}"),
                    };
                    (true, format!("operation {id} ended: {how}"))
                }
                None => {
                    let why = match state.ops.iter().find(|op| op.id == id).map(|op| &op.kind) {
                        Some(OpKind::Merge { .. }) => "the merge began absorbing and can no longer be undone",
                        Some(OpKind::MoveReplica { .. }) => "the new replica votes already: the move finishes",
                        _ => "it ends by itself",
                    };
                    (false, format!("operation {id} goes on: {why}"))
                }
            };
            Ok(v1::CancelShardOperationResponse { ended: answer.0, note: answer.1 })
        })
        .await
    }

    type CreateBackupStream = Streamed<v1::BackupProgress>;

    async fn create_backup(
        &self,
        request: Request<v1::CreateBackupRequest>,
    ) -> std::result::Result<Response<Self::CreateBackupStream>, Status> {
        let call = admit(&self.node, "CreateBackup", &request)?;
        let req = request.into_inner();
        let action = format!("a backup to {}", req.to);
        allowed(&self.node, &call, Need::Cluster { action: &action }).await?;
        let key = (!req.encryption_key.is_empty()).then(|| BackupKey::from_bytes(&req.encryption_key));
        let key = key.transpose().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let request = BackupRequest {
            to: req.to,
            incremental: req.incremental,
            copy_offline: req.copy_offline,
            scheduled: false,
            key,
        };
        let backups = self.node.backups.clone();
        Ok(Response::new(stream_job(self.node.clone(), "CreateBackup", move |tx| async move {
            // A follower too slow to take a report misses it; the next one says more.
            let follow = move |p: &quiver_core::backup::BackupProgress| {
                let _ = tx.try_send(quiver_proto::backup_progress_to_proto(p));
            };
            let made = backups.create(request, &follow).await?;
            Ok(quiver_proto::backup_progress_to_proto(&made))
        })))
    }

    async fn status(&self, request: Request<StatusRequest>) -> std::result::Result<Response<StatusResponse>, Status> {
        let call = admit(&self.node, "Status", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "reading the cluster's status" })?;
            cluster_status(&self.node, Some(request.metadata())).await
        })
        .await
    }

    async fn create_token(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> std::result::Result<Response<v1::CreateTokenResponse>, Status> {
        let call = admit(&self.node, "CreateToken", &request)?;
        observed(&self.node, &call, access::create(&self.node, &call, request.into_inner())).await
    }

    async fn list_tokens(
        &self,
        request: Request<v1::ListTokensRequest>,
    ) -> std::result::Result<Response<v1::ListTokensResponse>, Status> {
        let call = admit(&self.node, "ListTokens", &request)?;
        observed(&self.node, &call, access::list(&self.node, &call, request.into_inner())).await
    }

    async fn revoke_token(
        &self,
        request: Request<v1::RevokeTokenRequest>,
    ) -> std::result::Result<Response<v1::RevokeTokenResponse>, Status> {
        let call = admit(&self.node, "RevokeToken", &request)?;
        observed(&self.node, &call, access::revoke(&self.node, &call, request.into_inner())).await
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> std::result::Result<Response<v1::ListAuditResponse>, Status> {
        let call = admit(&self.node, "ListAudit", &request)?;
        observed(&self.node, &call, access::audit(&self.node, &call, request.into_inner())).await
    }

    async fn finalize_upgrade(
        &self,
        request: Request<v1::FinalizeUpgradeRequest>,
    ) -> std::result::Result<Response<v1::FinalizeUpgradeResponse>, Status> {
        let call = admit(&self.node, "FinalizeUpgrade", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "finalizing an upgrade" })?;
            let raised = self.node.proposer.finalize_upgrade().await?;
            self.node.meta.caught_up().await?;
            let meta = self.node.groups.group(META_GROUP)?;
            let cluster_version = quiver_store::meta::cluster_version(meta.data.as_ref())?;
            Ok(v1::FinalizeUpgradeResponse { cluster_version, raised })
        })
        .await
    }

    async fn set_audit_retention(
        &self,
        request: Request<v1::SetAuditRetentionRequest>,
    ) -> std::result::Result<Response<v1::SetAuditRetentionResponse>, Status> {
        let call = admit(&self.node, "SetAuditRetention", &request)?;
        observed(&self.node, &call, async {
            call.allow(Need::Cluster { action: "setting the audit log's retention" })?;
            let secs = request.into_inner().retention_secs;
            let retention_micros = i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000);
            self.node.proposer.write_meta(MetaCommand::SetAuditRetention { retention_micros }).await?;
            Ok(v1::SetAuditRetentionResponse {})
        })
        .await
    }
}

impl AdminApi {
    /// The call of an RPC between nodes, which admission let through as a member's
    /// (`trust::member`): it carries no token.
    fn member<T>(&self, method: &'static str, request: &Request<T>) -> Call {
        Call::new(method, Principal::open(), request.remote_addr())
    }
}

/// The node's view of the cluster: every node (up/down as the metadata leader sees it,
/// address, replicas, meta vote) and every group open here with its leader, indexes and
/// replica lag. `caller`: the request's metadata, whose token asks the metadata leader.
pub async fn cluster_status(node: &Node, caller: Option<&MetadataMap>) -> Result<StatusResponse> {
    let state = node.meta.latest();
    let mut groups = Vec::new();
    for g in node.groups.all() {
        match group_status(&g, &state).await {
            Ok(status) => groups.push(status),
            // Closed meanwhile (moved or merged away): no longer a group of this node.
            Err(_) if node.groups.get(g.id).is_none() => {}
            Err(e) => return Err(e),
        }
    }
    let meta_metrics = node.groups.get(META_GROUP).map(|g| g.raft.metrics().borrow().clone());
    let (liveness_from, live) = liveness(node, &state, meta_metrics.as_ref(), caller).await;
    let (versions, cluster_version) = match node.groups.get(META_GROUP) {
        Some(meta) => (
            quiver_store::meta::node_versions(meta.data.as_ref())?,
            quiver_store::meta::cluster_version(meta.data.as_ref())?,
        ),
        None => (Default::default(), 0),
    };
    let nodes = state
        .nodes
        .values()
        .map(|n| NodeStatus {
            id: n.id,
            address: n.client_addr.clone(),
            up: n.id == node.id || live.contains(&n.id),
            draining: n.draining,
            replicas: state.shard_map.shards.iter().filter(|s| s.replicas.contains(&n.id)).count() as u32,
            meta_voter: meta_metrics
                .as_ref()
                .is_some_and(|m| m.membership_config.membership().voter_ids().any(|v| v == n.id)),
            version: versions.get(&n.id).cloned().unwrap_or_default(),
        })
        .collect();
    let backups = state.backups.iter().map(quiver_proto::backup_record_to_proto).collect();
    let expires = node.tls.as_ref().and_then(|t| t.expires());
    let certificate_expires_micros = expires
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Ok(StatusResponse {
        node_id: node.id,
        version: quiver_store::release::RELEASE.into(),
        nodes,
        groups,
        backups,
        certificate_expires_micros,
        liveness_from: liveness_from.unwrap_or(0),
        cluster_version,
    })
}

/// Marks a status request one node asked another for: it is answered from the receiver's
/// own view, never asked on.
const FORWARDED: &str = "x-quiver-forwarded";

/// Which nodes are up, and whose view that is: the metadata leader's, this node's own when
/// it leads the meta group (a node is up while the leader replicates to it), else asked of
/// the leader with the caller's token; `None` when the leader cannot be asked.
async fn liveness(
    node: &Node,
    state: &quiver_store::meta::MetaState,
    metrics: Option<&RaftMetrics<NodeId, BasicNode>>,
    caller: Option<&MetadataMap>,
) -> (Option<u64>, BTreeSet<u64>) {
    let Some(metrics) = metrics else { return (None, BTreeSet::new()) };
    if metrics.current_leader == Some(node.id) {
        let replicating = metrics.replication.iter().flatten().filter(|(_, matched)| matched.is_some());
        return (Some(node.id), replicating.map(|(id, _)| *id).collect());
    }
    let caller = caller.filter(|c| !c.contains_key(FORWARDED));
    let leader = metrics.current_leader.and_then(|id| Some((id, state.nodes.get(&id)?.addr.clone())));
    let (Some(caller), Some((leader, addr))) = (caller, leader) else { return (None, BTreeSet::new()) };
    match ask_status(node, &addr, caller).await {
        Ok(answer) if answer.liveness_from == leader => {
            (Some(leader), answer.nodes.iter().filter(|n| n.up).map(|n| n.id).collect())
        }
        Ok(_) => (None, BTreeSet::new()),
        Err(e) => {
            tracing::debug!("asking the metadata leader which nodes are up: {e}");
            (None, BTreeSet::new())
        }
    }
}

/// The status answer of the node at `addr`, asked with the caller's token.
async fn ask_status(node: &Node, addr: &str, caller: &MetadataMap) -> std::result::Result<StatusResponse, String> {
    let channel = node.peers.channel(addr)?;
    let mut request = Request::new(StatusRequest {});
    if let Some(token) = caller.get("authorization") {
        request.metadata_mut().insert("authorization", token.clone());
    }
    request.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    let mut client = AdminServiceClient::new(channel);
    match tokio::time::timeout(ASK_STATUS_FOR, client.status(request)).await {
        Ok(answer) => answer.map(tonic::Response::into_inner).map_err(|s| s.message().to_string()),
        Err(_) => Err(format!("no answer within {ASK_STATUS_FOR:?}")),
    }
}

/// How long a status request waits for the metadata leader's view.
const ASK_STATUS_FOR: std::time::Duration = std::time::Duration::from_secs(2);

async fn group_status(g: &Group, state: &quiver_store::meta::MetaState) -> Result<GroupStatus> {
    let m = g.raft.metrics().borrow().clone();
    let committed = g.raft.with_raft_state(|s| s.committed).await.map_err(|e| Error::Raft(e.to_string()))?;
    let range = state.shard_map.shard(g.id).ok().map(|s| (s.start, s.end)).unwrap_or_default();
    Ok(GroupStatus {
        group_id: g.id,
        kind: if g.id == META_GROUP { GroupKind::Meta } else { GroupKind::Shard }.name().into(),
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
