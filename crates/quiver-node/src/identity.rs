//! Who this node is. The id is written to `<data-dir>/identity.toml` on the first start and
//! read back on every later one, so a restart keeps its id whatever the flags say. A node
//! started with `--join` asks the cluster for an id (the metadata leader hands out ids that
//! are never reused) and remembers that it joined, so it never initialises a cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quiver_proto::v1::JoinRequest;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::raft::network::PeerPool;

/// How long a joining node keeps asking while the cluster is unreachable or electing.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: u64,
    /// Joined a running cluster rather than forming one.
    pub joined: bool,
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
                    Some(seed) => Identity { node_id: join(pool, seed, &config.advertise_addr()).await?, joined: true },
                    None => Identity { node_id: config.node_id, joined: false },
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
        assert_eq!(Identity::establish(&mut config, &pool).await.unwrap(), Identity { node_id: 5, joined: false });
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
