//! Cluster administration: status, the shard map, and removing a node.

use quiver_core::cluster::{ClusterMap, ClusterStatus};
use quiver_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// The connected node's view of the cluster: every node, and every Raft group it hosts
    /// with its leader, indexes and (on leaders) replica lag.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let reply = self.admin.clone().status(v1::StatusRequest {}).await.map_err(Error::from)?;
        Ok(quiver_proto::cluster_status_from_proto(reply.into_inner())?)
    }

    /// The shard map as the connected node knows it: ranges, epochs, replicas, leader hints
    /// and node addresses.
    pub async fn shard_map(&self) -> Result<ClusterMap> {
        let reply = self.admin.clone().get_shard_map(v1::GetShardMapRequest {}).await.map_err(Error::from)?;
        Ok(quiver_proto::cluster_map_from_proto(reply.into_inner()))
    }

    /// Drains node `id`: the metadata leader moves its replicas to the other nodes, then
    /// removes it from the cluster. Returns once the drain is recorded; watch [`Client::status`].
    pub async fn remove_node(&self, id: u64) -> Result<()> {
        self.admin.clone().remove_node(v1::RemoveNodeRequest { node_id: id }).await.map_err(Error::from)?;
        Ok(())
    }
}
