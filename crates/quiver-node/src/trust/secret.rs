//! The cluster secret: how a member proves itself to another member when the cluster runs
//! without TLS. It is 256 random bits, made when a cluster forms, kept in
//! `<data-dir>/cluster.secret` (0600), sent by members in the `x-quiver-member` header of
//! every RPC between nodes, and compared in constant time. A node that joins, or a member of
//! an initial cluster of several, is given the file (`--cluster-secret FILE`); the members
//! of a new cluster may all be given one path that does not exist yet: the first to start
//! makes it, atomically, and the others read it. With TLS on, members prove themselves by
//! their certificates instead (`member`), and no secret is made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};

use quiver_store::config::Config;
use quiver_store::error::{Error, Result};

/// The header a member's RPC carries the secret in.
pub const HEADER: &str = "x-quiver-member";
/// What every cluster secret starts with, so a leaked one is recognisable.
const PREFIX: &str = "qvs_";

/// A cluster secret; its `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl ClusterSecret {
    fn generate() -> Result<ClusterSecret> {
        Ok(ClusterSecret(super::token::random_hex(PREFIX)?.into()))
    }

    fn parse(text: &str, origin: &Path) -> Result<ClusterSecret> {
        let text = text.trim();
        let hex = text.strip_prefix(PREFIX).unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Config(format!(
                "{} does not hold a cluster secret (qvs_ and 64 hex digits, as a node writes it)",
                origin.display()
            )));
        }
        Ok(ClusterSecret(text.into()))
    }

    /// Does `presented` (a header's bytes) equal the secret? In constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), presented).is_ok()
    }

    /// The header value members send.
    #[allow(clippy::expect_used, reason = "made of ASCII letters and digits only (`parse`, `generate`)")]
    pub fn header(&self) -> MetadataValue<Ascii> {
        MetadataValue::try_from(&*self.0).expect("a cluster secret is ASCII")
    }
}

fn own_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.secret")
}

/// The secret this node proves its membership with, made or taken on its first start; `None`
/// with TLS on.
pub fn establish(config: &Config) -> Result<Option<ClusterSecret>> {
    if config.tls.enabled() {
        return Ok(None);
    }
    let own = own_path(&config.data_dir);
    let given = config.cluster_secret.as_deref();
    if let Some(secret) = read(&own)? {
        if let Some(path) = given
            && let Some(other) = read(path)?
            && other.0 != secret.0
        {
            return Err(Error::Config(format!(
                "{} differs from the cluster secret in {}: a member keeps the secret it started with",
                path.display(),
                own.display()
            )));
        }
        return Ok(Some(secret));
    }
    let forms = config.join.is_none();
    let secret = match given {
        Some(path) => match read(path)? {
            Some(secret) => secret,
            None if forms => create_shared(path)?,
            None => {
                return Err(Error::Config(format!(
                    "--cluster-secret {} does not exist: a joining node needs the cluster's secret, which its \
                     first member wrote to <data-dir>/cluster.secret",
                    path.display()
                )));
            }
        },
        None if forms && config.initial_cluster.len() <= 1 => ClusterSecret::generate()?,
        None => {
            return Err(Error::Config(
                "the members of a cluster without TLS prove themselves with a shared secret: give every member \
                 --cluster-secret FILE (a path that does not exist yet is made by the first member to start; \
                 copy it to the other machines), or TLS certificates (--tls-cert, --tls-key, --tls-ca)"
                    .into(),
            ));
        }
    };
    write_private(&own, &secret)?;
    Ok(Some(secret))
}

/// The secret in `path`, if the file exists.
fn read(path: &Path) -> Result<Option<ClusterSecret>> {
    match std::fs::read_to_string(path) {
        Ok(text) => ClusterSecret::parse(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading the cluster secret {}", path.display()), e)),
    }
}

/// Makes a new secret at `path` unless another member made one first: written beside it,
/// then linked into place, which fails when the path exists.
fn create_shared(path: &Path) -> Result<ClusterSecret> {
    let secret = ClusterSecret::generate()?;
    let staged = path.with_extension(format!("new-{}", std::process::id()));
    write_private(&staged, &secret)?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| Error::Config(format!("{} vanished while being read", path.display())))
        }
        Err(e) => Err(Error::io(format!("creating the cluster secret {}", path.display()), e)),
    }
}

fn write_private(path: &Path, secret: &ClusterSecret) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    super::token::write_private(path, &format!("{}\n", secret.0))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(dir: &Path, name: &str) -> Config {
        Config { data_dir: dir.join(name), ..Config::default() }
    }

    #[test]
    fn a_single_node_makes_its_secret_once_and_keeps_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "n1");
        let first = establish(&c).unwrap().unwrap();
        assert_eq!(establish(&c).unwrap().unwrap().0, first.0, "read back on a restart");
        let mode = std::fs::metadata(own_path(&c.data_dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.matches(first.0.as_bytes()) && !first.matches(b"qvs_0"));
        assert_eq!(format!("{first:?}"), "ClusterSecret(…)", "never shown");
    }

    #[test]
    fn members_share_the_file_the_first_made_and_a_joiner_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("cluster.secret");
        let members = vec!["a:1".to_string(), "b:1".to_string()];
        let mut a = config(dir.path(), "a");
        a.initial_cluster = members.clone();
        let err = establish(&a).unwrap_err().to_string();
        assert!(err.contains("--cluster-secret"), "several members need a shared secret: {err}");
        a.cluster_secret = Some(shared.clone());
        let mut b = config(dir.path(), "b");
        b.initial_cluster = members;
        b.cluster_secret = Some(shared.clone());
        let (sa, sb) = (establish(&a).unwrap().unwrap(), establish(&b).unwrap().unwrap());
        assert_eq!(sa.0, sb.0);
        let mut joiner = config(dir.path(), "c");
        joiner.join = Some("a:1".into());
        joiner.cluster_secret = Some(dir.path().join("missing"));
        assert!(establish(&joiner).unwrap_err().to_string().contains("does not exist"));
        joiner.cluster_secret = Some(shared);
        assert_eq!(establish(&joiner).unwrap().unwrap().0, sa.0);
        std::fs::write(dir.path().join("bad"), "qvs_12").unwrap();
        let mut wrong = config(dir.path(), "d");
        wrong.cluster_secret = Some(dir.path().join("bad"));
        assert!(establish(&wrong).unwrap_err().to_string().contains("does not hold a cluster secret"));
    }

    #[test]
    fn with_tls_members_use_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), "n1");
        c.tls.cert = Some("n.pem".into());
        assert!(establish(&c).unwrap().is_none());
        assert!(!own_path(&c.data_dir).exists());
    }
}
