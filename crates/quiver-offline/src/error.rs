//! The offline crate's error enum; each variant has a stable code.

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
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::Store(_) => "O4001",
            Error::Parquet(_) => "O4002",
            Error::Arrow(_) => "O4003",
            Error::Location { .. } => "O4004",
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
