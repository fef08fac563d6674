//! Backups as the API shows them: the progress of one being made, and the record of one made.

use serde::{Deserialize, Serialize};

/// How far a backup (or restore) has got; the last report of a finished one has `done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupProgress {
    pub id: String,
    /// What it is doing, in words ("cutting 9 groups", "copying offline files").
    pub phase: String,
    pub objects_done: u64,
    pub objects_total: u64,
    /// Bytes written to the backup location so far.
    pub bytes: u64,
    /// Online rows read so far; in the last report, the online rows the backup holds (those
    /// of shards an incremental backup took unchanged from the one it builds on included).
    pub rows: u64,
    pub done: bool,
}

/// A backup that completed, as the cluster remembers it (for status and the dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub location: String,
    /// µs since the Unix epoch.
    pub finished_at: i64,
    /// Bytes the backup needs, those of the backups it builds on included.
    pub bytes: u64,
    pub rows: u64,
    /// Built on an earlier backup in the same location.
    pub incremental: bool,
    /// Made by the `[backup]` schedule rather than asked for.
    pub scheduled: bool,
}
