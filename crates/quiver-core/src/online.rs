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

impl OnlineFeatures {
    /// The value of feature `name` for the `row`th entity: `name` as in `features`
    /// (`set:feature`), or the feature's name alone when only one set has it.
    pub fn get(&self, row: usize, name: &str) -> Option<&FeatureValue> {
        let column = self.features.iter().position(|f| f == name).or_else(|| {
            let mut short = self.features.iter().enumerate().filter(|(_, f)| f.rsplit(':').next() == Some(name));
            match (short.next(), short.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })?;
        self.rows.get(row)?.get(column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_found_by_its_full_name_or_by_a_name_no_other_set_shares() {
        let value = |v: i64| FeatureValue { value: Value::Int64(v), event_ts: Some(1), status: Freshness::Present };
        let answer = OnlineFeatures {
            features: vec!["a:trips".into(), "a:rate".into(), "b:rate".into()],
            rows: vec![vec![value(1), value(2), value(3)]],
            staleness_bound_ms: 0,
        };
        assert_eq!(answer.get(0, "trips").map(|v| &v.value), Some(&Value::Int64(1)));
        assert_eq!(answer.get(0, "b:rate").map(|v| &v.value), Some(&Value::Int64(3)));
        assert_eq!(answer.get(0, "rate"), None, "two sets have it: ambiguous");
        assert_eq!(answer.get(1, "trips"), None, "no such row");
    }
}
