//! Count, extremes, mean and variance that merge exactly: a month's moments equal the merge of
//! its days' moments up to rounding, so they never need the raw values again.

use serde::{Deserialize, Serialize};

/// Moments of a stream of finite values; the caller keeps NaN and infinities out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    /// Sum of squared deviations from the mean. Kept instead of a sum of squares, which loses
    /// all precision when the mean is large next to the spread (timestamps).
    m2: f64,
}

impl Moments {
    /// Adds one value (Welford's update).
    pub fn observe(&mut self, x: f64) {
        debug_assert!(x.is_finite(), "moments take finite values only, got {x}");
        if self.count == 0 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Combines two streams (Chan, Golub and LeVeque's parallel update).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Population standard deviation (divides by n, as a description of the data seen rather
    /// than an estimate for a wider population).
    pub fn stddev(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2.max(0.0) / self.count as f64).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(values: &[f64]) -> Moments {
        let mut m = Moments::default();
        values.iter().for_each(|&x| m.observe(x));
        m
    }

    #[test]
    fn moments_match_the_textbook_formulas() {
        let m = of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((m.count(), m.min(), m.max()), (8, Some(2.0), Some(9.0)));
        assert_eq!(m.mean(), Some(5.0));
        assert!((m.stddev().unwrap() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn empty_moments_have_no_statistics() {
        let m = Moments::default();
        assert_eq!((m.min(), m.max(), m.mean(), m.stddev()), (None, None, None, None));
    }

    #[test]
    fn variance_survives_a_large_offset() {
        // Microsecond timestamps around 2025 with a spread of a few seconds.
        let base = 1.75e15;
        let m = of(&[base, base + 1e6, base + 2e6, base + 3e6]);
        assert!((m.stddev().unwrap() - 1.118_033_988_749_895e6).abs() < 1.0);
    }

    proptest! {
        #[test]
        fn merged_parts_equal_one_pass(values in prop::collection::vec(-1e6f64..1e6, 0..200), cut in 0usize..200) {
            let cut = cut.min(values.len());
            let mut merged = of(&values[..cut]);
            merged.merge(&of(&values[cut..]));
            let whole = of(&values);
            prop_assert_eq!(merged.count(), whole.count());
            prop_assert_eq!(merged.min(), whole.min());
            prop_assert_eq!(merged.max(), whole.max());
            if let (Some(a), Some(b)) = (merged.mean(), whole.mean()) {
                prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
                let (sa, sb) = (merged.stddev().unwrap(), whole.stddev().unwrap());
                prop_assert!((sa - sb).abs() <= 1e-6 * (1.0 + sb));
            }
        }
    }
}
