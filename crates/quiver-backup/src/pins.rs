//! Offline files a backup lists but did not copy stay in the offline store: garbage
//! collection asks here before deleting one. A pin (meta tree, `keyspace::backup_pin`)
//! holds its file while the pinning backup's catalog exists, or while that backup is still
//! under way; a pin whose backup is gone (deleted, or never completed) no longer does.
//!
//! A backup under way (`keyspace::backup_under_way`, from `BeginBackupCut` to its
//! `RecordBackup`) may list any file that was in the manifest at its cut, which compaction
//! may have replaced since: every file that became garbage after the backup began cutting is
//! kept until it ends. One that never ends (its node died) holds nothing after a day.

use std::collections::HashMap;

use quiver_offline::store::S3Settings;

use super::{catalog, format};
use crate::codec::load;
use crate::error::Result;
use crate::keyspace::{BACKUP_UNDER_WAY, backup_pins};
use crate::meta::BACKUP_UNDER_WAY_MAX_MICROS as UNDER_WAY_MAX_MICROS;
use crate::storage::KvTree;

/// How far apart two metadata leaders' clocks may be: garbage times and a backup's start are
/// stamped by whichever led then.
const CLOCK_SKEW_MICROS: i64 = 60_000_000;

/// Which backups pinning offline files still exist, remembered over one collection round.
pub struct Holders<'a> {
    meta: &'a dyn KvTree,
    s3: &'a S3Settings,
    exists: HashMap<(String, String), bool>,
    /// Backups under way, and when each began cutting.
    under_way: HashMap<String, i64>,
}

impl<'a> Holders<'a> {
    /// The holders as of `now` (the metadata leader's clock).
    pub fn new(meta: &'a dyn KvTree, s3: &'a S3Settings, now: i64) -> Result<Holders<'a>> {
        let mut under_way = HashMap::new();
        for kv in meta.scan_prefix(&[BACKUP_UNDER_WAY]) {
            let (key, value) = kv?;
            let began: i64 = load(&value)?;
            if began >= now.saturating_sub(UNDER_WAY_MAX_MICROS) {
                under_way.insert(String::from_utf8_lossy(&key[1..]).into_owned(), began);
            }
        }
        Ok(Holders { meta, s3, exists: HashMap::new(), under_way })
    }

    /// Whether a file that became garbage at `at` may still be listed by a backup under way.
    pub fn kept_for_a_backup(&self, at: i64) -> bool {
        self.under_way.values().any(|began| at >= began.saturating_sub(CLOCK_SKEW_MICROS))
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
            let location: String = load(&value)?;
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
            match exists || self.under_way.contains_key(&backup) {
                true => held = true,
                false => gone.push(backup),
            }
        }
        Ok((held, gone))
    }
}
