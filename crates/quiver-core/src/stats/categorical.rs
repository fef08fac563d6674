//! Value frequencies of a string or boolean feature, in a bounded Misra–Gries sketch.
//!
//! The sketch tracks at most 192 values. While a stream has fewer distinct values every count is
//! exact; past that, the sketch subtracts a common amount from all counters when it is full (the
//! "offset"), so a tracked count is a lower bound that is short by at most the offset. Merging
//! adds the other sketch's counters and offset and purges as a single stream would: these are
//! mergeable summaries (Agarwal et al., 2012), so after any tree of merges the error of every
//! count stays at most 3.5/256 ≈ 1.4% of the merged number of values.

use std::cmp::Reverse;

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use serde::{Deserialize, Serialize};

use super::sketch_image;

/// Number of values that [`CategoricalStats::top_values`] reports.
pub const TOP_VALUES: usize = 100;

/// Map size of the frequent-items sketch; it tracks up to 3/4 of it.
const MAX_MAP_SIZE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoricalStats {
    #[serde(with = "sketch_image")]
    frequent: FrequentItemsSketch<String>,
}

impl Default for CategoricalStats {
    #[allow(
        clippy::expect_used,
        reason = "a constant argument the sketch takes, checked by every test that builds one"
    )]
    fn default() -> Self {
        Self { frequent: FrequentItemsSketch::new(MAX_MAP_SIZE).expect("MAX_MAP_SIZE is a power of two") }
    }
}

impl CategoricalStats {
    pub(crate) fn observe(&mut self, value: &str) {
        self.frequent.update_ref(value);
    }

    pub(crate) fn merge(&mut self, other: &CategoricalStats) {
        self.frequent.merge(&other.frequent);
    }

    /// Non-null values seen.
    pub fn count(&self) -> u64 {
        self.frequent.total_weight()
    }

    /// The most frequent values, most frequent first (ties by value), at most [`TOP_VALUES`].
    /// Counts are lower bounds, short by at most [`CategoricalStats::max_error`].
    pub fn top_values(&self) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self
            .frequent
            .frequent_items(ErrorType::NoFalseNegatives)
            .into_iter()
            .map(|row| (row.item().clone(), row.lower_bound()))
            .filter(|(_, count)| *count > 0)
            .collect();
        rows.sort_by(|a, b| (Reverse(a.1), &a.0).cmp(&(Reverse(b.1), &b.0)));
        rows.truncate(TOP_VALUES);
        rows
    }

    /// How far below the truth any count may be; 0 while counts are exact.
    pub fn max_error(&self) -> u64 {
        self.frequent.maximum_error()
    }

    /// The lower-bound count of one value (0 if untracked).
    pub(crate) fn frequency(&self, value: &str) -> u64 {
        self.frequent.lower_bound(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::Rng;

    #[test]
    fn few_values_are_counted_exactly_and_ordered() {
        let mut s = CategoricalStats::default();
        for (value, n) in [("b", 30), ("a", 50), ("c", 30)] {
            (0..n).for_each(|_| s.observe(value));
        }
        let top = s.top_values();
        assert_eq!(top, vec![("a".into(), 50), ("b".into(), 30), ("c".into(), 30)]);
        assert_eq!((s.count(), s.max_error()), (110, 0));
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail_within_the_error_bound() {
        let mut parts = vec![CategoricalStats::default(); 4];
        let mut rng = Rng::new(11);
        let mut truth = std::collections::HashMap::<String, u64>::new();
        for i in 0..40_000u64 {
            // 30% "hot", 10% "warm", the rest spread over 20 000 rare values.
            let value = match rng.uniform() {
                u if u < 0.3 => "hot".to_string(),
                u if u < 0.4 => "warm".to_string(),
                _ => format!("rare-{}", rng.next_u64() % 20_000),
            };
            parts[(i % 4) as usize].observe(&value);
            *truth.entry(value).or_default() += 1;
        }
        let mut merged = parts[0].clone();
        parts[1..].iter().for_each(|p| merged.merge(p));
        let bound = (merged.count() as f64 * 3.5 / MAX_MAP_SIZE as f64) as u64;
        assert!(merged.max_error() > 0 && merged.max_error() <= bound, "error {} > {bound}", merged.max_error());
        let top = merged.top_values();
        assert_eq!((top[0].0.as_str(), top[1].0.as_str()), ("hot", "warm"));
        for (value, count) in &top {
            let true_count = truth[value];
            assert!(
                *count <= true_count && true_count - count <= merged.max_error(),
                "{value}: {count} vs {true_count}"
            );
        }
    }
}
