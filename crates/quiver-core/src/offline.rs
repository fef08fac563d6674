//! What the offline store's API takes and answers: spine formats, ingest and materialize
//! progress, manifest files and saved training datasets.

/// How a spine's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineFormat {
    /// A header line, then one row per line. Join keys are typed by their entities, the
    /// time column read as timestamps, every other column kept as text.
    Csv,
    /// A Parquet file, read with its own schema.
    Parquet,
}
