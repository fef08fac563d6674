//! The audit log's entries: who did what, when, from where, and how it ended. Nodes record
//! them through the meta group (definition and token changes, membership, sharding and
//! backup operations, refused requests, reads of personal features), so they survive the
//! loss of any node; `quiverctl audit` and the dashboard read them back.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Microseconds since the epoch, by the clock of the node that served the request.
    pub at: i64,
    /// The token's name; `anonymous` with authentication off, `unauthenticated` for a
    /// request without a valid token.
    pub actor: String,
    /// The caller's address, as the node saw it.
    pub from: String,
    /// The node that served the request.
    pub node: u64,
    /// The request: its RPC or page (`Apply`, `CreateToken`, `GetOnlineFeatures`…).
    pub action: String,
    /// The project it was about, if one.
    pub project: Option<String>,
    /// What about it: the operation asked for, or the personal features read.
    pub detail: String,
    /// `ok`, or the error's code and message.
    pub outcome: String,
}

/// Which entries to read back, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub project: Option<String>,
    /// Entries at or after this time (microseconds).
    pub since: Option<i64>,
    pub actor: Option<String>,
    /// At most this many, the newest of those that match; 0: the default of 1000.
    pub limit: usize,
}

impl AuditQuery {
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.project.as_ref().is_none_or(|p| entry.project.as_ref() == Some(p))
            && self.since.is_none_or(|t| entry.at >= t)
            && self.actor.as_ref().is_none_or(|a| *a == entry.actor)
    }

    pub fn limit(&self) -> usize {
        if self.limit == 0 { 1000 } else { self.limit }
    }
}
