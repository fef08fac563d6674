//! The client's error enum: the node's typed errors come back as `Server`, with the same
//! variants and codes as on the node.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached.
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The node answered with a Quiver error. Not also given as the error's source, which
    /// would print its message a second time in an error chain (`{:#}`).
    #[error("{} [{}]", .0, .0.code())]
    Server(quiver_core::Error),
    /// A gRPC failure that carries no Quiver error (a proxy, a broken connection).
    #[error("rpc failed: {0}")]
    Rpc(tonic::Status),
}

impl Error {
    /// Stable code: the node's code for server errors, `C0001`/`C0002` for the client's own.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "C0001",
            Error::Rpc(_) => "C0002",
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

impl From<quiver_core::Error> for Error {
    fn from(e: quiver_core::Error) -> Error {
        Error::Server(e)
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
