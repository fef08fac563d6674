//! The offline crate's error enum; each variant has a stable code.

use quiver_core::error::CodeEntry;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input data or requests, with the domain error that names the fault.
    #[error(transparent)]
    Core(#[from] quiver_core::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("offline store location '{location}': {reason}")]
    Location { location: String, reason: String },
    #[error("spilling a retrieval to {path}: {source}")]
    Spill { path: String, source: std::io::Error },
}

/// The offline store's own codes. A client sees them inside `Q9001 Internal` messages
/// (`[O4001] object store: …`), and in the node's log.
pub const CATALOGUE: &[CodeEntry] = &[
    CodeEntry {
        code: "O4001",
        variant: "Store",
        meaning: "The offline store (a directory or S3) refused or failed a request.",
        action: "Check the store's location, its credentials (`[s3]` or `AWS_*`) and that it can be reached.",
    },
    CodeEntry {
        code: "O4002",
        variant: "Parquet",
        meaning: "A Parquet file of the offline store could not be read or written.",
        action: "Check the store's files and the node's log; report it if the file was written by Quiver.",
    },
    CodeEntry {
        code: "O4003",
        variant: "Arrow",
        meaning: "An Arrow operation on offline data failed (a cast, a concatenation).",
        action: "Report it with the node's log and the input that caused it.",
    },
    CodeEntry {
        code: "O4004",
        variant: "Location",
        meaning: "The offline store location cannot be used (a bad URL or scheme).",
        action: "Give a directory, `s3://bucket/prefix` or `memory://` as `--offline-store`.",
    },
    CodeEntry {
        code: "O4005",
        variant: "Spill",
        meaning: "A retrieval larger than its memory could not write or read its spill files.",
        action: "Check that `[offline] spill_dir` (default `<data-dir>/spill`) is writable and has room, or raise `[offline] retrieval_memory`.",
    },
];

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::Store(_) => "O4001",
            Error::Parquet(_) => "O4002",
            Error::Arrow(_) => "O4003",
            Error::Location { .. } => "O4004",
            Error::Spill { .. } => "O4005",
        }
    }

    /// What a client is told: input faults as they are, storage faults as internal errors.
    pub fn into_core(self) -> quiver_core::Error {
        match self {
            Error::Core(e) => e,
            other => quiver_core::Error::Internal(format!("[{}] {other}", other.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_the_codes_and_the_doc() {
        let examples = [
            Error::Store(object_store::Error::Generic { store: "S3", source: "refused".into() }),
            Error::Parquet(parquet::errors::ParquetError::General("bad footer".into())),
            Error::Arrow(arrow_schema::ArrowError::CastError("x".into())),
            Error::Location { location: "ftp://x".into(), reason: "unsupported scheme".into() },
            Error::Spill { path: "/x".into(), source: std::io::Error::other("full") },
        ];
        let examples: Vec<(String, &str)> = examples.iter().map(|e| (format!("{e:?}"), e.code())).collect();
        let doc = include_str!("../../../docs/error-codes.md");
        quiver_core::error::check_catalogue(CATALOGUE, &examples, doc).unwrap_or_else(|e| panic!("{e}"));
        assert!(CATALOGUE.iter().all(|e| e.code.starts_with('O')));
    }
}
