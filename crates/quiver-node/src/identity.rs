//! How a node learns who it is on start: the id kept in `<data-dir>/identity.toml`
//! (`quiver_store::identity`), or on a first start its place in the initial cluster or an id
//! the cluster hands out when it joins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_proto::v1::JoinRequest;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_store::identity::{Identity, path};
use tracing::info;

use crate::raft::network::PeerPool;
use crate::trust::member::ClusterMark;
use quiver_store::config::Config;
use quiver_store::error::{Error, Result};
use quiver_store::storage::KvTree;

/// How long a joining node keeps asking while the cluster is unreachable or electing.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// Reads the stored identity, or makes one on the first start; sets `config.node_id`.
pub async fn establish(config: &mut Config, pool: &PeerPool) -> Result<Identity> {
    let identity = match Identity::read(&config.data_dir)? {
        Some(stored) => {
            if !config.initial_cluster.is_empty() && !stored.joined && stored.node_id != config.node_id {
                return Err(Error::Config(format!(
                    "{} says this is node {}, but its place in initial_cluster makes it node {}; \
                     keep the list's order as it was when the cluster formed",
                    path(&config.data_dir).display(),
                    stored.node_id,
                    config.node_id
                )));
            }
            stored
        }
        None => {
            let identity = match &config.join {
                Some(seed) => {
                    Identity { node_id: join(pool, seed, &config.advertise_addr()).await?, joined: true, cluster: None }
                }
                None => Identity { node_id: config.node_id, joined: false, cluster: None },
            };
            identity.write(&config.data_dir)?;
            identity
        }
    };
    config.node_id = identity.node_id;
    Ok(identity)
}

/// Marks the node a member of its cluster as far as it is known: by this file, or by the
/// data dir's metadata (`in_metadata`), which must not name another.
pub fn mark_cluster(
    identity: &mut Identity,
    data_dir: &Path,
    in_metadata: Option<String>,
    mark: &ClusterMark,
) -> Result<()> {
    match (&identity.cluster, in_metadata) {
        (Some(kept), Some(found)) if *kept != found => {
            return Err(Error::Config(format!(
                "{} says this node is a member of cluster {kept}, but the metadata in {} is cluster {found}'s: \
                 the data dir holds another cluster's data",
                path(data_dir).display(),
                data_dir.display()
            )));
        }
        (None, Some(found)) => {
            identity.cluster = Some(found);
            identity.write(data_dir)?;
        }
        _ => {}
    }
    if let Some(id) = &identity.cluster {
        mark.set(id);
    }
    Ok(())
}

/// How often a node that does not know its cluster's id yet looks for it.
const LEARN_EVERY: Duration = Duration::from_secs(1);

/// Waits until the meta state holds the cluster's id (the first metadata leader makes it),
/// then marks the node a member of that cluster and keeps the id in `identity.toml`.
pub async fn learn_cluster(mut identity: Identity, data_dir: PathBuf, meta: Arc<dyn KvTree>, mark: ClusterMark) {
    while identity.cluster.is_none() {
        match quiver_store::meta::cluster_id(meta.as_ref()) {
            Ok(Some(id)) => {
                if let Err(e) = mark_cluster(&mut identity, &data_dir, Some(id), &mark) {
                    tracing::error!("keeping the cluster id: {e}");
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("reading the cluster id: {e}"),
        }
        tokio::time::sleep(LEARN_EVERY).await;
    }
}

/// Asks the cluster member at `seed` to add this node (at `addr`); answers the new id.
async fn join(pool: &PeerPool, seed: &str, addr: &str) -> Result<u64> {
    let deadline = Instant::now() + JOIN_PATIENCE;
    loop {
        let attempt = async {
            let mut client = AdminServiceClient::new(pool.own_channel(seed)?);
            let reply = client.join(JoinRequest { address: addr.to_string() }).await.map_err(|s| s.to_string())?;
            Ok::<u64, String>(reply.into_inner().node_id)
        };
        match attempt.await {
            Ok(id) => {
                info!(node = id, seed, "joined the cluster");
                return Ok(id);
            }
            Err(e) if Instant::now() < deadline => {
                info!(seed, "waiting to join: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(Error::Config(format!("could not join the cluster through {seed}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_start_fixes_the_id_for_later_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { node_id: 5, data_dir: dir.path().to_path_buf(), ..Config::default() };
        let pool = PeerPool::default();
        let first = Identity { node_id: 5, joined: false, cluster: None };
        assert_eq!(establish(&mut config, &pool).await.unwrap(), first);
        let mut again = Config { node_id: 9, data_dir: dir.path().to_path_buf(), ..Config::default() };
        establish(&mut again, &pool).await.unwrap();
        assert_eq!(again.node_id, 5, "the stored id wins over the flag");
        let moved = Config {
            node_id: 2,
            initial_cluster: vec!["a:1".into(), "b:1".into()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = establish(&mut moved.clone(), &pool).await.unwrap_err().to_string();
        assert!(err.contains("initial_cluster"), "{err}");
    }
}
