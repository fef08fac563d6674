//! What the offline store's API takes and answers: spine formats, ingest and materialize
//! progress, manifest files and saved training datasets.

use serde::{Deserialize, Serialize};

/// How a spine's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineFormat {
    /// A header line, then one row per line. Join keys are typed by their entities, the
    /// time column read as timestamps, every other column typed as a CSV reader infers it.
    Csv,
    /// A Parquet file, read with its own schema.
    Parquet,
}

/// Where an ingest stands; the last report has `done` set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IngestProgress {
    /// Rows read so far.
    pub rows: u64,
    /// Source bytes read so far.
    pub bytes: u64,
    /// Source bytes in all.
    pub total_bytes: u64,
    /// Source files read.
    pub files_done: u64,
    /// Source files in all.
    pub files_total: u64,
    /// Sources ingested before with the same content: skipped, nothing added.
    pub duplicates: Vec<String>,
    /// Input columns the feature set does not declare: ignored.
    pub warnings: Vec<String>,
    /// Set on the final report.
    pub done: bool,
    /// Parquet files committed to the offline store.
    pub files_written: u64,
    /// Rows read and checked so far: every source is, before any file is written.
    pub rows_checked: u64,
}

/// Where a materialization stands; the last report has `done` set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MaterializeProgress {
    /// Offline files read.
    pub files_done: u64,
    /// Offline files in the window.
    pub files_total: u64,
    /// Offline rows read.
    pub rows_read: u64,
    /// Entities whose latest row was written online.
    pub entities_written: u64,
    /// Set on the final report.
    pub done: bool,
}

/// A committed Parquet file of a feature set version (an entry of the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFile {
    /// Location in the offline store: `project/feature_set/v{version}/{yyyy-mm-dd}/*.parquet`.
    pub path: String,
    /// The UTC day of its events, in days since the Unix epoch.
    pub day: i64,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Earliest event time, microseconds.
    pub min_ts: i64,
    /// Latest event time, microseconds.
    pub max_ts: i64,
}

/// A training set saved in the offline store, with what it was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// The name given with `save_as`.
    pub name: String,
    /// Location of its Parquet file in the offline store.
    pub path: String,
    /// The feature vector asked for, if one was.
    pub vector: Option<String>,
    /// The resolved feature references, `set:feature`.
    pub features: Vec<String>,
    /// `set@version` of every feature set joined.
    pub feature_sets: Vec<String>,
    /// Where the spine came from (a file name).
    pub spine: String,
    /// Rows in the training set.
    pub rows: u64,
    /// Size of its file in bytes.
    pub bytes: u64,
    /// Earliest spine time, microseconds.
    pub spine_from: i64,
    /// Latest spine time, microseconds.
    pub spine_to: i64,
    /// When it was saved, microseconds.
    pub created_at: i64,
}
