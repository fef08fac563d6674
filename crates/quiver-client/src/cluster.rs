//! Cluster administration: status, the shard map, removing a node, shard operations
//! (leadership transfers, replica moves, rebalancing) started and followed to their end,
//! and backups.

use std::time::{Duration, Instant};

use quiver_core::backup::BackupProgress;
use quiver_core::cluster::{ClusterMap, ClusterStatus};
use quiver_core::shard_ops::{FinishedOp, OpKind, ShardOp};
use quiver_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

/// How long an operation id the node does not know yet is waited for.
const UNSEEN_GRACE: Duration = Duration::from_secs(10);

impl Client {
    /// The connected node's view of the cluster: every node, and every Raft group it hosts
    /// with its leader, indexes and (on leaders) replica lag.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let reply = self.admin.clone().status(v1::StatusRequest {}).await.map_err(Error::from)?;
        Ok(quiver_proto::cluster_status_from_proto(reply.into_inner())?)
    }

    /// Makes a consistent backup of the whole cluster in `to` (a directory on the connected
    /// node's machine, or `s3://bucket/prefix` with the node's S3 settings): every group at
    /// one Raft index each, the offline files listed with checksums and, unless
    /// `options.copy_offline` says no (by default: unless `to` is the offline store), copied;
    /// incremental and encrypted as `options` say. Answers the last report once the backup's
    /// catalog is written.
    pub async fn create_backup(
        &self,
        to: &str,
        options: &BackupOptions,
        progress: impl FnMut(&BackupProgress),
    ) -> Result<BackupProgress> {
        let request = v1::CreateBackupRequest {
            to: to.into(),
            incremental: options.incremental,
            copy_offline: options.copy_offline,
            encryption_key: options.encryption_key.clone().unwrap_or_default(),
        };
        let stream = self.admin.clone().create_backup(request).await.map_err(Error::from)?.into_inner();
        let last = self.follow(stream, quiver_proto::backup_progress_from_proto, progress).await?;
        last.filter(|p| p.done)
            .ok_or_else(|| Error::Rpc(tonic::Status::aborted("the backup ended without a final report")))
    }

    /// The shard map as the connected node knows it: ranges, epochs, replicas, leader hints
    /// and node addresses.
    pub async fn shard_map(&self) -> Result<ClusterMap> {
        let reply = self.admin.clone().get_shard_map(v1::GetShardMapRequest {}).await.map_err(Error::from)?;
        Ok(quiver_proto::cluster_map_from_proto(reply.into_inner())?)
    }

    /// Records a shard operation; the cluster carries it out in the background. Refused,
    /// with what is wrong and nothing changed, when it cannot be done (an unknown shard or
    /// node, a transfer to a node that is not a voter, a move to a node that already holds
    /// a replica, a shard another operation is busy with). Follow it with
    /// [`Client::wait_for_operation`] or [`Client::shard_map`].
    pub async fn start_shard_operation(&self, kind: OpKind) -> Result<ShardOp> {
        let request = quiver_proto::op_kind_to_proto(&kind);
        let reply = self.admin.clone().start_shard_operation(request).await.map_err(Error::from)?.into_inner();
        let empty = || quiver_core::Error::Internal("a started shard operation came back empty".into());
        let op = reply.operation.ok_or_else(empty)?;
        Ok(quiver_proto::shard_op_from_proto(op)?)
    }

    /// Cancels shard operation `id`: it ends as failed and what it began is undone (a
    /// replica move goes back to the shard's voters, a merge's upper shard thaws). A split
    /// is refused; a merge that began absorbing, or a move whose new replica already votes,
    /// goes on. Answers whether it ended, and a sentence saying how or why not.
    pub async fn cancel_shard_operation(&self, id: u64) -> Result<(bool, String)> {
        let request = v1::CancelShardOperationRequest { id };
        let reply = self.admin.clone().cancel_shard_operation(request).await.map_err(Error::from)?.into_inner();
        Ok((reply.ended, reply.note))
    }

    /// Finalizes an upgrade: puts the answering node's cluster version in force, which lets
    /// members use the stored formats and commands its release brings. Refused
    /// `MembersBehind`, naming them, while a member runs an earlier release. Answers the
    /// cluster version in force and whether this call raised it. A cluster admin's.
    pub async fn finalize_upgrade(&self) -> Result<(u32, bool)> {
        let request = v1::FinalizeUpgradeRequest {};
        let reply = self.admin.clone().finalize_upgrade(request).await.map_err(Error::from)?.into_inner();
        Ok((reply.cluster_version, reply.raised))
    }

    /// Waits until operation `id` ends and says how; `progress` is called with the shard
    /// map at every look. Gives up after `timeout` (the operation goes on). A node that has
    /// not applied the operation's start yet is given a few seconds to.
    pub async fn wait_for_operation(
        &self,
        id: u64,
        timeout: Duration,
        mut progress: impl FnMut(&ClusterMap),
    ) -> Result<FinishedOp> {
        let started = Instant::now();
        loop {
            let map = self.shard_map().await?;
            progress(&map);
            match map.operation(id) {
                Some(Some(ended)) => return Ok(ended.clone()),
                Some(None) => {}
                None if started.elapsed() < UNSEEN_GRACE => {}
                None => {
                    let unknown = format!("the cluster knows no shard operation {id}");
                    return Err(quiver_core::Error::InvalidArgument(unknown).into());
                }
            }
            if started.elapsed() > timeout {
                return Err(Error::Timeout(format!("shard operation {id} still under way after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drains node `id`: the metadata leader moves its replicas to the other nodes, then
    /// removes it from the cluster. Returns once the drain is recorded; watch [`Client::status`].
    pub async fn remove_node(&self, id: u64) -> Result<()> {
        self.admin.clone().remove_node(v1::RemoveNodeRequest { node_id: id }).await.map_err(Error::from)?;
        Ok(())
    }
}

/// How a backup is made (`Client::create_backup`).
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Store only what changed since the newest complete backup in the location.
    pub incremental: bool,
    /// Copy the offline store's files into the backup; `None`: unless the location is the
    /// offline store itself.
    pub copy_offline: Option<bool>,
    /// Seal every object with this 32-byte AES-256 key (a key file's, `quiverctl backup
    /// new-key`); restore and verify then need it.
    pub encryption_key: Option<Vec<u8>>,
}
