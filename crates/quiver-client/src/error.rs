//! The client's error enum: the node's typed errors come back as `Server`, with the same
//! variants and codes as on the node.

/// What the client's calls return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached.
    #[error("cannot reach {endpoint}: {message}")]
    Transport {
        /// The node's address.
        endpoint: String,
        /// What the connection attempt said.
        message: String,
    },
    /// The node answered with a Quiver error.
    #[error("{} [{}]", .0, .0.code())]
    Server(#[from] quiver_core::Error),
    /// A gRPC failure that carries no Quiver error (a proxy, a broken connection).
    #[error("rpc failed: {0}")]
    Rpc(tonic::Status),
    /// Arrow data could not be encoded for a request (a spine) or decoded from an answer.
    #[error("arrow data: {0}")]
    Arrow(String),
}

impl Error {
    /// Stable code: the node's code for server errors, `C0001`–`C0003` for the client's own.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "C0001",
            Error::Rpc(_) => "C0002",
            Error::Arrow(_) => "C0003",
            Error::Server(e) => e.code(),
        }
    }

    /// The Quiver error the node sent, if any.
    pub fn server_error(&self) -> Option<&quiver_core::Error> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        match quiver_proto::error_from_status(&status) {
            Some(e) => Error::Server(e),
            None => Error::Rpc(status),
        }
    }
}
