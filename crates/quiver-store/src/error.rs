//! The node's error enum. Domain errors from quiver-core pass through with their codes;
//! the node adds its own for storage, encoding, Raft and configuration.

use quiver_core::Error as CoreError;
use quiver_core::error::CodeEntry;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("encoding: {0}")]
    Codec(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("backup: {0}")]
    Backup(String),
}

impl Error {
    /// Stable code; domain errors keep the code quiver-core gave them.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::Storage(_) => "N3001",
            Error::Codec(_) => "N3002",
            Error::Raft(_) => "N3003",
            Error::Config(_) => "N3004",
            Error::Io { .. } => "N3005",
            Error::Backup(_) => "N3006",
        }
    }

    /// True while a group elects a leader or its leader is out of reach: the same request
    /// may succeed a moment later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Core(CoreError::Unavailable(_) | CoreError::NotLeader { .. } | CoreError::Busy { .. }))
    }

    /// What a client is told: its own errors as they are, the node's troubles as
    /// internal or unavailable, with the node's code in the message.
    pub fn into_core(self) -> CoreError {
        match self {
            Error::Core(e) => e,
            Error::Raft(m) => CoreError::Unavailable(format!("[{}] {m}", "N3003")),
            other => CoreError::Internal(format!("[{}] {other}", other.code())),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

/// The node's own codes. A client sees them inside `Q9001 Internal` or `Q2004 Unavailable`
/// messages (`[N3001] storage: …`), and in the node's log.
pub const CATALOGUE: &[CodeEntry] = &[
    CodeEntry {
        code: "N3001",
        variant: "Storage",
        meaning: "The node's local store (sled) failed, or stored data is not as expected.",
        action: "Check the data directory's disk (space, permissions) and the node's log.",
    },
    CodeEntry {
        code: "N3002",
        variant: "Codec",
        meaning: "Encoding or decoding stored data or an answer failed.",
        action: "Report it with the node's log: it means a bug or damaged data.",
    },
    CodeEntry {
        code: "N3003",
        variant: "Raft",
        meaning: "Raft replication failed (no quorum, a leader change during the request); sent as \
            `Q2004 Unavailable`.",
        action: "Retry; `quiverctl status` shows nodes down and groups without a leader.",
    },
    CodeEntry {
        code: "N3004",
        variant: "Config",
        meaning: "The node's configuration is not valid; the node does not start.",
        action: "Fix the setting the message names (flag, `QUIVER_*` variable or TOML key).",
    },
    CodeEntry {
        code: "N3005",
        variant: "Io",
        meaning: "A file operation of the node failed, such as reading an ingest path.",
        action: "Check the path the message names and its permissions on the node's machine.",
    },
    CodeEntry {
        code: "N3006",
        variant: "Backup",
        meaning: "A backup location could not be reached, or a backup's object is missing, damaged or \
            not what its catalog says; or a restore's data dir is not empty.",
        action: "Check the location and its credentials; `quiverctl backup verify ID` names what is \
            wrong. Restore another backup, or into an empty data dir.",
    },
];

/// The offline store's errors keep the codes their core errors have.
impl From<quiver_offline::Error> for Error {
    fn from(e: quiver_offline::Error) -> Error {
        Error::Core(e.into_core())
    }
}

/// Arrow IPC the node encodes or decodes itself (answers, parts between nodes).
impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Error {
        Error::Codec(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        quiver_proto::status_from_error(&e.into_core())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_the_codes_and_the_doc() {
        let examples = [
            Error::Storage("disk full".into()),
            Error::Codec("bad row".into()),
            Error::Raft("no quorum".into()),
            Error::Config("shards = 0".into()),
            Error::io("reading x.csv", std::io::Error::other("denied")),
            Error::Backup("shard-3.cut is damaged".into()),
        ];
        let examples: Vec<(String, &str)> = examples.iter().map(|e| (format!("{e:?}"), e.code())).collect();
        let doc = include_str!("../../../docs/error-codes.md");
        quiver_core::error::check_catalogue(CATALOGUE, &examples, doc).unwrap_or_else(|e| panic!("{e}"));
        assert!(CATALOGUE.iter().all(|e| e.code.starts_with('N')));
    }
}
