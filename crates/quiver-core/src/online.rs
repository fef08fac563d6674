//! What an online read asks for and answers: which features, how consistent the answer must
//! be, and each value with its event time and freshness.

use crate::Value;
pub use crate::registry::FeatureSelection;
use crate::row::Freshness;

/// What an online read must reflect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Every write acknowledged before the read (the shard leader confirms it still leads).
    #[default]
    Linearizable,
    /// Whatever the replica asked has applied: cheaper, may lag; the answer bounds its age.
    Stale,
}

/// One value of an online answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureValue {
    /// `Value::Null` unless the status is `Present`.
    pub value: Value,
    /// Event time of the stored row, microseconds; `None` when no row was found.
    pub event_ts: Option<i64>,
    /// Whether a row was found, and whether it is within the feature set's TTL.
    pub status: Freshness,
}

/// The answer to an online read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OnlineFeatures {
    /// Column names, `set:feature` (`set@version:feature` where a version was named).
    pub features: Vec<String>,
    /// One row per requested entity, in request order; values in `features` order.
    pub rows: Vec<Vec<FeatureValue>>,
    /// Stale reads: an upper bound on the answer's age in milliseconds (the largest of the
    /// replicas that answered); 0 for linearizable reads.
    pub staleness_bound_ms: u64,
}
