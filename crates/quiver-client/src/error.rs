//! The client's error enum: the node's typed errors come back as `Server`, with the same
//! variants and codes as on the node.

/// What the client's calls return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed. More kinds may come: match with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node could not be reached.
    #[error("cannot reach {endpoint}: {message}")]
    Transport {
        /// The node's address.
        endpoint: String,
        /// What the connection attempt said.
        message: String,
    },
    /// The node answered with a Quiver error. Not also given as the error's source, which
    /// would print its message a second time in an error chain (`{:#}`).
    #[error("{} [{}]", .0, .0.code())]
    Server(quiver_core::Error),
    /// A gRPC failure that carries no Quiver error (a proxy, a broken connection).
    #[error("rpc failed: {0}")]
    Rpc(tonic::Status),
    /// Arrow data could not be encoded for a request (a spine) or decoded from an answer.
    #[error("arrow data: {0}")]
    Arrow(String),
    /// A wait the caller set a limit on ran past it; what was waited for goes on.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// Stable code: the node's code for server errors, `C0001`–`C0004` for the client's own.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "C0001",
            Error::Rpc(_) => "C0002",
            Error::Arrow(_) => "C0003",
            Error::Timeout(_) => "C0004",
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

/// The client's own codes; a server error keeps the node's code.
pub const CATALOGUE: &[quiver_core::error::CodeEntry] = &[
    quiver_core::error::CodeEntry {
        code: "C0001",
        variant: "Transport",
        meaning: "The client could not reach the node.",
        action: "Check `--endpoint` (`QUIVER_ENDPOINT`) and that the node runs: `GET /health` on its HTTP port.",
    },
    quiver_core::error::CodeEntry {
        code: "C0002",
        variant: "Rpc",
        meaning: "A gRPC call failed without a Quiver error (a proxy, a broken connection, a timeout).",
        action: "Retry; check the network path to the node.",
    },
    quiver_core::error::CodeEntry {
        code: "C0003",
        variant: "Arrow",
        meaning: "Arrow data could not be encoded for a request (a spine) or decoded from an answer.",
        action: "Check the spine's columns and types; a decoding failure of an answer is a bug to report.",
    },
    quiver_core::error::CodeEntry {
        code: "C0004",
        variant: "Timeout",
        meaning: "A wait the caller limited (following a shard operation) ran past its limit; the work goes on.",
        action: "Follow it further with `quiverctl shards`, or wait with a longer `--timeout`.",
    },
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_the_codes_and_the_doc() {
        let examples = [
            Error::Transport { endpoint: "http://127.0.0.1:7070".into(), message: "refused".into() },
            Error::Rpc(tonic::Status::unavailable("proxy down")),
            Error::Arrow("column 'ts' is not a timestamp".into()),
            Error::Timeout("shard operation 3 still under way after 60s".into()),
        ];
        let examples: Vec<(String, &str)> = examples.iter().map(|e| (format!("{e:?}"), e.code())).collect();
        let doc = include_str!("../../../docs/error-codes.md");
        quiver_core::error::check_catalogue(CATALOGUE, &examples, doc).unwrap_or_else(|e| panic!("{e}"));
        assert!(CATALOGUE.iter().all(|e| e.code.starts_with('C')));
    }
}
