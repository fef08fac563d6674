//! The node's error enum. Domain errors from quiver-core pass through with their codes;
//! the node adds its own for storage, encoding, Raft and configuration.

use quiver_core::Error as CoreError;

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
        }
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

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        quiver_proto::status_from_error(&e.into_core())
    }
}
