//! The one error enum of quiver-core. Every variant has a stable code that crosses the wire,
//! so clients can match on it without parsing messages.

use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    #[error("unknown project '{0}'")]
    UnknownProject(String),
    #[error("unknown entity '{0}'")]
    UnknownEntity(String),
    #[error("unknown feature set '{0}'")]
    UnknownFeatureSet(String),
    #[error("unknown feature '{0}'")]
    UnknownFeature(String),
    #[error("unknown feature vector '{0}'")]
    UnknownVector(String),
    /// A definition (YAML or API) that cannot be applied.
    #[error("invalid definition: {0}")]
    InvalidDefinition(String),
    /// A row of a write that does not fit its feature set; `row` counts from 1.
    #[error("row {row}, field '{field}': {reason}")]
    InvalidRow { row: usize, field: String, reason: String },
    /// An entity key of a read that does not fit its entity; `entity` counts from 1.
    #[error("entity {entity}, join key '{key}': {reason}")]
    InvalidEntityKey { entity: usize, key: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("request too large: {0}")]
    TooLarge(String),
    #[error("not the leader of group {group}{}", leader.as_ref().map(|l| format!("; leader is {l}")).unwrap_or_default())]
    NotLeader { group: u64, leader: Option<String> },
    #[error("shard {0} is not hosted here")]
    ShardNotFound(u64),
    /// The request named a shard epoch other than the one this node has applied: the
    /// shard's range or replicas changed; refresh the shard map.
    #[error("shard {shard} is at epoch {}.{}; refresh the shard map", current.version, current.conf_ver)]
    EpochMismatch { shard: u64, current: crate::epoch::Epoch },
    /// The request was sent to a shard whose range does not hold one of its keys.
    #[error("entity {entity} does not belong to shard {shard}; refresh the shard map")]
    KeyNotInShard { shard: u64, entity: usize },
    /// Too much work in flight; retry after the given pause.
    #[error("busy: {reason}; retry after {retry_after_ms} ms")]
    Busy { reason: String, retry_after_ms: u64 },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable code for this kind of error; never reuse or renumber a code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownProject(_) => "Q1001",
            Error::UnknownEntity(_) => "Q1002",
            Error::UnknownFeatureSet(_) => "Q1003",
            Error::UnknownFeature(_) => "Q1004",
            Error::UnknownVector(_) => "Q1005",
            Error::InvalidDefinition(_) => "Q1101",
            Error::InvalidRow { .. } => "Q1201",
            Error::InvalidEntityKey { .. } => "Q1202",
            Error::InvalidArgument(_) => "Q1203",
            Error::TooLarge(_) => "Q1204",
            Error::NotLeader { .. } => "Q2001",
            Error::ShardNotFound(_) => "Q2002",
            Error::Busy { .. } => "Q2003",
            Error::Unavailable(_) => "Q2004",
            Error::EpochMismatch { .. } => "Q2005",
            Error::KeyNotInShard { .. } => "Q2006",
            Error::Internal(_) => "Q9001",
        }
    }

    /// True for errors that name bad input: retrying the same request cannot succeed.
    pub fn is_user_error(&self) -> bool {
        self.code().starts_with("Q1")
    }

    pub fn row(row: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidRow { row, field: field.into(), reason: reason.into() }
    }
}
