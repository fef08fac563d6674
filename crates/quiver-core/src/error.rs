//! The one error enum of quiver-core. Every variant has a stable code that crosses the wire,
//! so clients can match on it without parsing messages.

use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// More variants may come: outside this crate, match with a `_` arm, or on [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown project '{0}'")]
    UnknownProject(String),
    #[error("unknown entity '{0}'")]
    UnknownEntity(String),
    #[error("unknown feature set '{0}'")]
    UnknownFeatureSet(String),
    /// A feature its set does not have: `feature` as named (`set:feature`), `known` the
    /// set's features.
    #[error("unknown feature '{feature}' (the set has: {})", known.join(", "))]
    UnknownFeature { feature: String, known: Vec<String> },
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
    /// The request needs every member on a release some do not run yet (an upgrade to
    /// finish before it is finalized).
    #[error("members behind: {0}")]
    MembersBehind(String),
    /// No token, or one the cluster does not accept (unknown, expired, revoked).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid token that may not do what was asked (role, project, PII grant).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The token sent more requests than its rate allows.
    #[error("rate limited: {reason}; retry after {retry_after_ms} ms")]
    RateLimited { reason: String, retry_after_ms: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an error is: what a caller branches on (fix the request, retry,
/// authenticate) and the gRPC status code it travels with. Every error has one; a new kind
/// would be a breaking change, so this enum is matched exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorKind {
    /// A named project, entity, feature set, feature or vector does not exist.
    NotFound,
    /// The request is wrong as sent: a definition, row, key or argument.
    InvalidArgument,
    /// Too large, or too many requests: send less, or later.
    ResourceExhausted,
    /// The request reached a node or shard that does not serve it now (a routing client
    /// refreshes its map and retries).
    FailedPrecondition,
    /// Busy or unreachable for a moment: retry.
    Unavailable,
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials without the right.
    PermissionDenied,
    /// A fault of the server's own.
    Internal,
}

impl Error {
    /// The kind of failure, for branching without naming every variant.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownProject(_)
            | Error::UnknownEntity(_)
            | Error::UnknownFeatureSet(_)
            | Error::UnknownFeature { .. }
            | Error::UnknownVector(_) => ErrorKind::NotFound,
            Error::InvalidDefinition(_)
            | Error::InvalidRow { .. }
            | Error::InvalidEntityKey { .. }
            | Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::TooLarge(_) | Error::RateLimited { .. } => ErrorKind::ResourceExhausted,
            Error::NotLeader { .. }
            | Error::ShardNotFound(_)
            | Error::EpochMismatch { .. }
            | Error::KeyNotInShard { .. }
            | Error::MembersBehind(_) => ErrorKind::FailedPrecondition,
            Error::Busy { .. } | Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Stable code for this kind of error; never reuse or renumber a code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownProject(_) => "Q1001",
            Error::UnknownEntity(_) => "Q1002",
            Error::UnknownFeatureSet(_) => "Q1003",
            Error::UnknownFeature { .. } => "Q1004",
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
            Error::MembersBehind(_) => "Q2007",
            Error::Unauthenticated(_) => "Q3001",
            Error::PermissionDenied(_) => "Q3002",
            Error::RateLimited { .. } => "Q3003",
            Error::Internal(_) => "Q9001",
        }
    }

    /// True for errors that name bad input or a caller's lack of rights: retrying the same
    /// request cannot succeed (or, rate limited, not yet).
    pub fn is_user_error(&self) -> bool {
        self.code().starts_with("Q1") || self.code().starts_with("Q3")
    }

    pub fn row(row: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidRow { row, field: field.into(), reason: reason.into() }
    }

    /// One error of every variant, with sample fields: for tests that must cover every code
    /// (the catalogue's, the gRPC round trip's).
    pub fn examples() -> Vec<Error> {
        use crate::shard_map::Epoch;
        vec![
            Error::UnknownProject("rides".into()),
            Error::UnknownEntity("rider".into()),
            Error::UnknownFeatureSet("driver_stats@3".into()),
            Error::UnknownFeature { feature: "driver_stats:speed".into(), known: vec!["conv_rate".into()] },
            Error::UnknownVector("driver_model_v9".into()),
            Error::InvalidDefinition("feature of s 'a' is declared twice".into()),
            Error::row(3, "conv_rate", "'high' is not a valid float64"),
            Error::InvalidEntityKey { entity: 2, key: "driver_id".into(), reason: "'x' is not a valid int64".into() },
            Error::InvalidArgument("the spine has no column 'event_timestamp'".into()),
            Error::TooLarge("100001 rows in one write; the limit is 100000, split the input".into()),
            Error::NotLeader { group: 3, leader: Some("127.0.0.1:7071".into()) },
            Error::ShardNotFound(4),
            Error::Busy { reason: "too many writes in flight".into(), retry_after_ms: 50 },
            Error::Unavailable("[N3003] no leader for group 2".into()),
            Error::EpochMismatch { shard: 5, current: Epoch { version: 2, conf_ver: 3 } },
            Error::KeyNotInShard { shard: 6, entity: 1 },
            Error::MembersBehind("node 3 runs 0.1.0; upgrade it to 0.2.0 or later first".into()),
            Error::Unauthenticated("token 'ci' expired at 2026-11-30T00:00:00Z".into()),
            Error::PermissionDenied("token 'ci' is a viewer of project 'fraud': writing rows needs a writer".into()),
            Error::RateLimited { reason: "token 'ci' is over 100 requests/s".into(), retry_after_ms: 10 },
            Error::Internal("[N3001] storage: disk full".into()),
        ]
    }
}

/// One stable error code: what it means and what the user should do. Each crate lists its
/// codes in a `CATALOGUE`; `docs/error-codes.md` shows them, and tests keep both equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeEntry {
    pub code: &'static str,
    /// The variant of the crate's error enum that has the code.
    pub variant: &'static str,
    pub meaning: &'static str,
    pub action: &'static str,
}

const RETRIED: &str = "Nothing: the client refreshes its shard map or follows the leader and retries, \
    bounded. If it persists, `quiverctl status` shows groups without a leader or nodes down.";

/// The codes of [`Error`]: `Q1…` bad requests (retrying the same one cannot succeed),
/// `Q2…` routing and availability (retry), `Q3…` access, `Q9…` faults inside the node.
pub const CATALOGUE: &[CodeEntry] = &[
    CodeEntry {
        code: "Q1001",
        variant: "UnknownProject",
        meaning: "The request names a project that has no definitions.",
        action: "Check the name with `quiverctl list`; pick one with `--project` or `QUIVER_PROJECT`.",
    },
    CodeEntry {
        code: "Q1002",
        variant: "UnknownEntity",
        meaning: "A definition or request names an entity the project does not declare.",
        action: "Check the name with `quiverctl list`, or declare it under `entities:` and apply.",
    },
    CodeEntry {
        code: "Q1003",
        variant: "UnknownFeatureSet",
        meaning: "The project has no feature set of that name (or no such version, `name@N`).",
        action: "Check the name and versions with `quiverctl list` and `quiverctl describe feature-set`.",
    },
    CodeEntry {
        code: "Q1004",
        variant: "UnknownFeature",
        meaning: "A feature reference, or a column of a row, is not a feature of its feature set.",
        action: "Check it with `quiverctl describe feature-set`; a new feature is added by applying the \
            definition with it.",
    },
    CodeEntry {
        code: "Q1005",
        variant: "UnknownVector",
        meaning: "The project has no feature vector of that name.",
        action: "Check the name with `quiverctl list`, or define it under `feature_vectors:` and apply.",
    },
    CodeEntry {
        code: "Q1101",
        variant: "InvalidDefinition",
        meaning: "A definition cannot be applied (a bad name, type or TTL, a duplicate, changed join \
            keys); nothing of the file was applied.",
        action: "Fix the definition the message names and apply the file again.",
    },
    CodeEntry {
        code: "Q1201",
        variant: "InvalidRow",
        meaning: "A row does not fit its feature set: a missing join key or event time, a wrong type, \
            an unparseable value, an event time too far in the future. The whole request was refused \
            and nothing was stored.",
        action: "Fix the named row (counted from 1) and field, and send the whole input again.",
    },
    CodeEntry {
        code: "Q1202",
        variant: "InvalidEntityKey",
        meaning: "An entity key of a read does not fit its entity: a join key missing, unknown or of \
            the wrong type.",
        action: "Give every join key of the features read, typed as `quiverctl describe entity` shows.",
    },
    CodeEntry {
        code: "Q1203",
        variant: "InvalidArgument",
        meaning: "An argument or input file cannot be used: a bad path, format or option, a missing or \
            mistyped column, a spine without its time column.",
        action: "Fix the argument or file the message names.",
    },
    CodeEntry {
        code: "Q1204",
        variant: "TooLarge",
        meaning: "The request exceeds a limit (rows per write, entities per read).",
        action: "Split it into requests under the limit the message gives.",
    },
    CodeEntry {
        code: "Q2001",
        variant: "NotLeader",
        meaning: "The node is not the leader of the group that must serve the request.",
        action: RETRIED,
    },
    CodeEntry {
        code: "Q2002",
        variant: "ShardNotFound",
        meaning: "The node does not host the shard the request was sent to.",
        action: RETRIED,
    },
    CodeEntry {
        code: "Q2003",
        variant: "Busy",
        meaning: "The node has too much work in flight.",
        action: "Retry after the pause the message gives (the client does, bounded); send less at once if \
            it persists.",
    },
    CodeEntry {
        code: "Q2004",
        variant: "Unavailable",
        meaning: "The node cannot serve the request now: a group without a leader or quorum, Raft \
            replication failed, or the node is stopping.",
        action: "Retry later; `quiverctl status` and `GET /health` show groups without a leader and nodes down.",
    },
    CodeEntry {
        code: "Q2005",
        variant: "EpochMismatch",
        meaning: "The request was routed by a shard epoch the node no longer has: the shard's range or \
            replicas changed.",
        action: RETRIED,
    },
    CodeEntry {
        code: "Q2006",
        variant: "KeyNotInShard",
        meaning: "An entity was sent to a shard whose hash range does not hold it (a stale shard map).",
        action: RETRIED,
    },
    CodeEntry {
        code: "Q2007",
        variant: "MembersBehind",
        meaning: "The request needs every member of the cluster on this release or a later one, and the \
            message names those that are not (finalizing an upgrade).",
        action: "Upgrade the members it names (`quiverctl status` shows each node's release), then retry.",
    },
    CodeEntry {
        code: "Q3001",
        variant: "Unauthenticated",
        meaning: "The request carried no token, or one the cluster does not accept: unknown, expired or \
            revoked (the message says which).",
        action: "Pass a valid token (`quiverctl --token` or `QUIVER_TOKEN`, `ClientBuilder::token`); an admin \
            makes one with `quiverctl token create`.",
    },
    CodeEntry {
        code: "Q3002",
        variant: "PermissionDenied",
        meaning: "The token is valid but may not do this: another project, a lower role, no PII grant for a \
            personal feature, or a cluster admin's operation. The message names what was needed.",
        action: "Use a token with that role on that project (`quiverctl token list` shows them), or ask an \
            admin for one.",
    },
    CodeEntry {
        code: "Q3003",
        variant: "RateLimited",
        meaning: "The token sent more requests per second, or bytes per request, than the node's `[limits]` \
            allow.",
        action: "Retry after the pause the message gives; send fewer or smaller requests, or raise the limits.",
    },
    CodeEntry {
        code: "Q9001",
        variant: "Internal",
        meaning: "A fault inside the node; the message starts with the node's own code (`N…`, `O…`).",
        action: "Look that code up below and in the node's log (`QUIVER_LOG=debug` for more); report it if it \
            persists.",
    },
];

/// A catalogue as the Markdown table `docs/error-codes.md` holds.
pub fn catalogue_table(catalogue: &[CodeEntry]) -> String {
    let mut table = String::from("| code | variant | meaning | what to do |\n|---|---|---|---|\n");
    for e in catalogue {
        table += &format!("| {} | `{}` | {} | {} |\n", e.code, e.variant, e.meaning, e.action);
    }
    table
}

/// Checks a crate's catalogue against its error enum and the documentation: codes unique and
/// of the crate's one letter, every example's `(Debug text, code)` under its variant, every
/// entry shown by an example, and `doc` holding the catalogue's table. For each crate's tests.
pub fn check_catalogue(catalogue: &[CodeEntry], examples: &[(String, &str)], doc: &str) -> Result<(), String> {
    let mut codes: Vec<&str> = catalogue.iter().map(|e| e.code).collect();
    codes.sort_unstable();
    if let Some(w) = codes.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("code {} is listed twice", w[0]));
    }
    let letter = |code: &str| code.chars().next();
    if let Some(other) = catalogue.iter().find(|e| letter(e.code) != letter(catalogue[0].code)) {
        return Err(format!("{} does not start with the crate's letter of {}", other.code, catalogue[0].code));
    }
    for (debug, code) in examples {
        let variant: String = debug.chars().take_while(char::is_ascii_alphanumeric).collect();
        match catalogue.iter().find(|e| e.variant == variant) {
            Some(e) if e.code == *code => {}
            Some(e) => return Err(format!("{variant} has code {code}; the catalogue says {}", e.code)),
            None => return Err(format!("{variant} ({code}) is missing from the catalogue")),
        }
    }
    if let Some(e) = catalogue.iter().find(|e| !examples.iter().any(|(_, code)| *code == e.code)) {
        return Err(format!("no example of {} ({}): a variant that no longer exists?", e.variant, e.code));
    }
    let table = catalogue_table(catalogue);
    if !doc.contains(&table) {
        return Err(format!("docs/error-codes.md must hold this table, as it is:\n{table}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = include_str!("../../../docs/error-codes.md");

    /// Every variant of `Error`, by name, as serde knows them.
    fn variants() -> Vec<String> {
        let err = serde_json::from_str::<Error>("\"?\"").unwrap_err().to_string();
        let listed = err.split("expected one of").nth(1).unwrap_or_default();
        listed.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    #[test]
    fn the_catalogue_has_every_variant_once_and_matches_the_codes_and_the_doc() {
        let mut names = variants();
        assert!(names.len() > 10, "{names:?}");
        names.sort();
        let mut listed: Vec<String> = CATALOGUE.iter().map(|e| e.variant.to_string()).collect();
        listed.sort();
        assert_eq!(listed, names, "one catalogue entry per variant");
        let mut examples: Vec<String> = Error::examples()
            .iter()
            .map(|e| format!("{e:?}").chars().take_while(char::is_ascii_alphanumeric).collect())
            .collect();
        examples.sort();
        assert_eq!(examples, names, "one example per variant");
        let examples: Vec<(String, &str)> = Error::examples().iter().map(|e| (format!("{e:?}"), e.code())).collect();
        check_catalogue(CATALOGUE, &examples, DOC).unwrap_or_else(|e| panic!("{e}"));
        assert!(CATALOGUE.iter().all(|e| e.code.starts_with('Q')));
    }

    #[test]
    fn no_code_is_documented_twice_across_crates() {
        let mut codes: Vec<&str> = DOC
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split(" |").next())
            .filter(|c| c.len() == 5 && c[1..].bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let all = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all, "{codes:?}");
        for letter in ["Q", "N", "O", "C"] {
            assert!(codes.iter().any(|c| c.starts_with(letter)), "no {letter} codes in the doc");
        }
    }

    #[test]
    fn the_check_finds_a_duplicate_a_wrong_code_and_a_stale_doc() {
        let entry = |code, variant| CodeEntry { code, variant, meaning: "m", action: "a" };
        let catalogue = [entry("Q0001", "A"), entry("Q0002", "B")];
        let examples = vec![("A(1)".to_string(), "Q0001"), ("B { x: 1 }".to_string(), "Q0002")];
        let doc = catalogue_table(&catalogue);
        assert_eq!(check_catalogue(&catalogue, &examples, &doc), Ok(()));
        let twice = [entry("Q0001", "A"), entry("Q0001", "B")];
        assert!(check_catalogue(&twice, &examples, &doc).unwrap_err().contains("twice"));
        let wrong = vec![("A(1)".to_string(), "Q0002"), ("B".to_string(), "Q0002")];
        assert!(check_catalogue(&catalogue, &wrong, &doc).unwrap_err().contains("A has code Q0002"));
        assert!(check_catalogue(&catalogue, &examples[..1], &doc).unwrap_err().contains("no example of B"));
        let stale = doc.replace("| m |", "| old |");
        assert!(check_catalogue(&catalogue, &examples, &stale).unwrap_err().contains("must hold this table"));
        let mixed = [entry("Q0001", "A"), entry("N0002", "B")];
        assert!(check_catalogue(&mixed, &examples, &doc).unwrap_err().contains("letter"));
    }
}
