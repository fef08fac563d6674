//! Who this node is. The id is written to `<data-dir>/identity.toml` on the first start and
//! read back on every later one, so a restart keeps its id whatever the flags say. A node
//! started with `--join` asks the cluster for an id (the metadata leader hands out ids that
//! are never reused) and remembers that it joined, so it never initialises a cluster. Once
//! the node knows its cluster's id it is kept here too: a member of another cluster is then
//! refused (`trust::member::ClusterMark`), and a data dir whose metadata names another cluster
//! does not start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_proto::v1::JoinRequest;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::raft::network::PeerPool;
use crate::storage::KvTree;
use crate::trust::member::ClusterMark;

/// How long a joining node keeps asking while the cluster is unreachable or electing.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: u64,
    /// Joined a running cluster rather than forming one.
    pub joined: bool,
    /// The id of the cluster, once the node has learned it (absent in files of earlier
    /// versions, and until the first metadata leader has made one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity.toml")
}

impl Identity {
    /// Writes the identity into `data_dir` (created if need be).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let file = path(data_dir);
        let text = toml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&file, text).map_err(|e| Error::io(format!("writing {}", file.display()), e))
    }

    /// Reads the stored identity, or makes one on the first start; sets `config.node_id`.
    pub async fn establish(config: &mut Config, pool: &PeerPool) -> Result<Identity> {
        let file = path(&config.data_dir);
        let identity = match std::fs::read_to_string(&file) {
            Ok(text) => {
                let stored: Identity =
                    toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
                if !config.initial_cluster.is_empty() && !stored.joined && stored.node_id != config.node_id {
                    return Err(Error::Config(format!(
                        "{} says this is node {}, but its place in initial_cluster makes it node {}; \
                         keep the list's order as it was when the cluster formed",
                        file.display(),
                        stored.node_id,
                        config.node_id
                    )));
                }
                stored
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = match &config.join {
                    Some(seed) => Identity {
                        node_id: join(pool, seed, &config.advertise_addr()).await?,
                        joined: true,
                        cluster: None,
                    },
                    None => Identity { node_id: config.node_id, joined: false, cluster: None },
                };
                identity.write(&config.data_dir)?;
                identity
            }
            Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
        };
        config.node_id = identity.node_id;
        Ok(identity)
    }
}

impl Identity {
    /// Marks the node a member of its cluster as far as it is known: by this file, or by the
    /// data dir's metadata (`in_metadata`), which must not name another.
    pub fn mark_cluster(&mut self, data_dir: &Path, in_metadata: Option<String>, mark: &ClusterMark) -> Result<()> {
        match (&self.cluster, in_metadata) {
            (Some(kept), Some(found)) if *kept != found => {
                return Err(Error::Config(format!(
                    "{} says this node is a member of cluster {kept}, but the metadata in {} is cluster {found}'s:                      the data dir holds another cluster's data",
                    path(data_dir).display(),
                    data_dir.display()
                )));
            }
            (None, Some(found)) => {
                self.cluster = Some(found);
                self.write(data_dir)?;
            }
            _ => {}
        }
        if let Some(id) = &self.cluster {
            mark.set(id);
        }
        Ok(())
    }
}

/// How often a node that does not know its cluster's id yet looks for it.
const LEARN_EVERY: Duration = Duration::from_secs(1);

/// Waits until the meta state holds the cluster's id (the first metadata leader makes it),
/// then marks the node a member of that cluster and keeps the id in `identity.toml`.
pub async fn learn_cluster(mut identity: Identity, data_dir: PathBuf, meta: Arc<dyn KvTree>, mark: ClusterMark) {
    while identity.cluster.is_none() {
        match crate::meta::cluster_id(meta.as_ref()) {
            Ok(Some(id)) => {
                if let Err(e) = identity.mark_cluster(&data_dir, Some(id), &mark) {
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

    #[test]
    fn identity_files_of_either_version_read_and_the_cluster_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        // As versions before the cluster id wrote it.
        std::fs::write(path(dir.path()), "node_id = 3\njoined = true\n").unwrap();
        let old: Identity = toml::from_str(&std::fs::read_to_string(path(dir.path())).unwrap()).unwrap();
        assert_eq!(old, Identity { node_id: 3, joined: true, cluster: None });
        let known = Identity { cluster: Some("5f0c".into()), ..old };
        known.write(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(path(dir.path())).unwrap(),
            "node_id = 3\njoined = true\ncluster = \"5f0c\"\n"
        );
    }

    #[tokio::test]
    async fn the_first_start_fixes_the_id_for_later_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { node_id: 5, data_dir: dir.path().to_path_buf(), ..Config::default() };
        let pool = PeerPool::default();
        let first = Identity { node_id: 5, joined: false, cluster: None };
        assert_eq!(Identity::establish(&mut config, &pool).await.unwrap(), first);
        let mut again = Config { node_id: 9, data_dir: dir.path().to_path_buf(), ..Config::default() };
        Identity::establish(&mut again, &pool).await.unwrap();
        assert_eq!(again.node_id, 5, "the stored id wins over the flag");
        let moved = Config {
            node_id: 2,
            initial_cluster: vec!["a:1".into(), "b:1".into()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = Identity::establish(&mut moved.clone(), &pool).await.unwrap_err().to_string();
        assert!(err.contains("initial_cluster"), "{err}");
    }
}
