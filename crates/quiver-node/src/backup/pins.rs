//! Offline files a backup lists but did not copy stay in the offline store: garbage
//! collection asks here before deleting one. A pin (meta tree, `keyspace::backup_pin`)
//! holds its file while the pinning backup's catalog exists; a pin whose backup is gone
//! (deleted, or never completed) no longer does.

use std::collections::HashMap;

use quiver_offline::store::S3Settings;

use super::{catalog, format};
use crate::codec::decode;
use crate::error::Result;
use crate::keyspace::backup_pins;
use crate::storage::KvTree;

/// Which backups pinning offline files still exist, remembered over one collection round.
pub struct Holders<'a> {
    meta: &'a dyn KvTree,
    s3: &'a S3Settings,
    exists: HashMap<(String, String), bool>,
}

impl<'a> Holders<'a> {
    pub fn new(meta: &'a dyn KvTree, s3: &'a S3Settings) -> Holders<'a> {
        Holders { meta, s3, exists: HashMap::new() }
    }

    /// The backups pinning `path`: whether any still exists, and those that do not.
    /// A location that cannot be read counts as holding the file.
    pub async fn of(&mut self, path: &str) -> Result<(bool, Vec<String>)> {
        let prefix = backup_pins(path);
        let mut held = false;
        let mut gone = Vec::new();
        let pins: Vec<_> = self.meta.scan_prefix(&prefix).collect::<Result<_>>()?;
        for (key, value) in pins {
            let backup = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let location: String = decode(&value)?;
            let key = (location.clone(), backup.clone());
            let exists = match self.exists.get(&key) {
                Some(exists) => *exists,
                None => {
                    let found = match catalog::open(&location, self.s3) {
                        Ok(store) => format::read_catalog(&store, &backup).await.map(|c| c.is_some()),
                        Err(e) => Err(e),
                    };
                    let exists = found.unwrap_or_else(|e| {
                        tracing::warn!(backup, location, "keeping a file a backup may need: {e}");
                        true
                    });
                    self.exists.insert(key, exists);
                    exists
                }
            };
            match exists {
                true => held = true,
                false => gone.push(backup),
            }
        }
        Ok((held, gone))
    }
}
