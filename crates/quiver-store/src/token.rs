//! Token secrets: made from the system's random source, shown to their owner once, and
//! kept by the cluster only as a SHA-256 hash (a token has 256 random bits, so a fast hash
//! is as strong as a slow one). The first member of a new cluster writes a cluster-admin
//! token to `<data-dir>/admin.token` for the operator to start from.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// What every token starts with, so a leaked one is recognisable (secret scanners).
const PREFIX: &str = "qvt_";
/// The name of the bootstrap cluster-admin token.
pub const BOOTSTRAP_NAME: &str = "admin";

/// The SHA-256 of a token's secret: how the meta group knows it.
pub type TokenHash = [u8; 32];

/// A new token secret: `qvt_` and 64 hex digits.
pub fn generate() -> Result<String> {
    random_hex(PREFIX)
}

/// `prefix` and 256 bits from the system's random source, in hex.
pub fn random_hex(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Config("the system's random source failed".into()))?;
    Ok(prefix.to_string() + &bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn hash(secret: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.trim().as_bytes()).as_ref());
    out
}

/// Where the bootstrap token is kept.
pub fn bootstrap_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Writes a new bootstrap token, readable by this user only, and answers it.
pub fn write_bootstrap(data_dir: &Path) -> Result<String> {
    let path = bootstrap_path(data_dir);
    let secret = generate()?;
    write_private(&path, &format!("{secret}\n"))?;
    Ok(secret)
}

/// The bootstrap token, when this node wrote one.
pub fn read_bootstrap(data_dir: &Path) -> Result<Option<String>> {
    let path = bootstrap_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `text` to a new file at `path`, readable by this user only, and syncs it; never
/// overwrites one.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let write = || {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_and_hash_the_same_with_or_without_a_newline() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64, "{a}");
        assert_eq!(hash(&a), hash(&format!("{a}\n")));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn the_bootstrap_token_is_private_and_written_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_bootstrap(dir.path()).unwrap(), None);
        let secret = write_bootstrap(dir.path()).unwrap();
        assert_eq!(read_bootstrap(dir.path()).unwrap(), Some(secret));
        let mode = std::fs::metadata(bootstrap_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_bootstrap(dir.path()).is_err(), "never overwritten");
    }
}
