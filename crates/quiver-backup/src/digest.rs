//! What vouches for a backup's bytes. Every object is listed in the catalog with its SHA-256
//! (`sha256:<hex>`; catalogs before format 4 used xxh3-128, still read), and the catalog itself
//! carries a digest of its own content: an HMAC-SHA256 under a key derived from the backup key
//! when the backup is encrypted, else a SHA-256. So `verify` and `restore` find an edited
//! catalog (row counts, indexes, object digests), not only damaged objects; without a key, a
//! SHA-256 stops an edit that does not recompute it, which an HMAC stops whatever is edited.

use aws_lc_rs::digest::{Context, SHA256, digest};
use aws_lc_rs::hmac;
use xxhash_rust::xxh3::Xxh3;

use super::seal::BackupKey;

/// A running digest of an object's stored bytes.
#[derive(Clone)]
pub enum Digest {
    Sha256(Context),
    /// Objects of backups made before catalog format 4.
    Xxh3(Box<Xxh3>),
}

/// The digest new objects are listed with.
impl Default for Digest {
    fn default() -> Digest {
        Digest::Sha256(Context::new(&SHA256))
    }
}

impl Digest {
    /// The digest of the kind `expected` (a catalog's `sha256:…` or `xxh3-128:…`) is.
    pub fn like(expected: &str) -> Digest {
        match expected.starts_with("xxh3-128:") {
            true => Digest::Xxh3(Box::new(Xxh3::new())),
            false => Digest::default(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digest::Sha256(context) => context.update(data),
            Digest::Xxh3(hasher) => hasher.update(data),
        }
    }

    /// As the catalog lists it.
    pub fn text(&self) -> String {
        match self {
            Digest::Sha256(context) => format!("sha256:{}", hex(context.clone().finish().as_ref())),
            Digest::Xxh3(hasher) => format!("xxh3-128:{:032x}", hasher.digest128()),
        }
    }
}

/// The digest of a catalog's content `content` (its JSON without the digest).
pub fn catalog(content: &[u8], key: Option<&BackupKey>) -> String {
    match key {
        Some(key) => {
            let mac_key = digest(&SHA256, &[b"quiver catalog mac ".as_slice(), key.bytes()].concat());
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()), content);
            format!("hmac-sha256:{}", hex(tag.as_ref()))
        }
        None => format!("sha256:{}", hex(digest(&SHA256, content).as_ref())),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_keep_their_form() {
        let mut sha = Digest::default();
        sha.update(b"abc");
        assert_eq!(sha.text(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut old = Digest::like("xxh3-128:00");
        old.update(b"abc");
        assert!(old.text().starts_with("xxh3-128:") && old.text().len() == 9 + 32);
        let key = BackupKey::from_bytes(&[7; 32]).unwrap();
        let (plain, keyed) = (catalog(b"{}", None), catalog(b"{}", Some(&key)));
        assert!(plain.starts_with("sha256:") && keyed.starts_with("hmac-sha256:") && plain[7..] != keyed[12..]);
        assert_ne!(catalog(b"{}", Some(&key)), catalog(b"{}", Some(&BackupKey::from_bytes(&[8; 32]).unwrap())));
    }
}
