//! Who a node is: `<data-dir>/identity.toml`, written on the first start and read back on
//! every later one, so a restart keeps its id whatever the flags say. It says whether the
//! node joined a running cluster (then it never initialises one), and, once known, its
//! cluster's id. How a node comes by them is `quiver-node`'s `identity`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity.toml")
}

impl Identity {
    /// The identity kept in `data_dir`; `None` before the node's first start.
    pub fn read(data_dir: &Path) -> Result<Option<Identity>> {
        let file = path(data_dir);
        match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str(&text).map(Some).map_err(|e| Error::Config(format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", file.display()), e)),
        }
    }

    /// Writes the identity into `data_dir` (created if need be).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let file = path(data_dir);
        let text = toml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&file, text).map_err(|e| Error::io(format!("writing {}", file.display()), e))
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
}
