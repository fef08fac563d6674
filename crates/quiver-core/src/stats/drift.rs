//! Drift between a reference summary (a training set, a past date range) and a current one.
//!
//! Both summaries are reduced to two probability vectors over the same buckets, and five
//! metrics are computed on them. Numeric distributions use 10 buckets bounded by the
//! reference's deciles, so the reference puts about 10% in each and the current summary's mass
//! in each comes from its own sketch's CDF: two summaries with different ranges stay
//! comparable. String and bool features use the union of both summaries' top values plus an
//! "other" bucket for the rest.

use std::collections::BTreeSet;

use datasketches::tdigest::TDigest;
use serde::{Deserialize, Serialize};

use super::categorical::CategoricalStats;
use super::summary::FeatureSummary;
use crate::value::ValueType;
use crate::{Error, Result};

/// The floor that empty buckets are raised to in [`psi`], so a bucket that one side never saw
/// adds a large but finite term instead of infinity.
pub const PSI_EPSILON: f64 = 1e-4;

/// Reference ranks whose values bound the numeric buckets.
const DECILES: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Quantiles per side at which the KS statistic compares the two CDFs.
const KS_GRID: usize = 100;

/// How far a current summary is from its reference: KS on the two CDFs, the other metrics on
/// the same buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftMetrics {
    /// Population stability index, see [`psi`].
    pub psi: f64,
    /// Kolmogorov–Smirnov statistic: the largest gap between the two CDFs. `None` for string
    /// and bool features, whose values have no order.
    pub ks: Option<f64>,
    /// See [`js_distance`].
    pub js_distance: f64,
    /// See [`hellinger`].
    pub hellinger: f64,
    /// See [`tvd`].
    pub tvd: f64,
}

/// Compares `current` with `reference`, two summaries of the same feature.
///
/// Errors with `InvalidArgument` when either side has no values to compare (a summary of
/// nulls only, or of NaN only), or when the two describe different value types; int32, int64,
/// float32 and float64 compare with each other, as a feature's type may widen between versions.
pub fn drift(reference: &FeatureSummary, current: &FeatureSummary) -> Result<DriftMetrics> {
    let numeric = |t| matches!(t, ValueType::Int32 | ValueType::Int64 | ValueType::Float32 | ValueType::Float64);
    let (rt, ct) = (reference.value_type(), current.value_type());
    if rt != ct && !(numeric(rt) && numeric(ct)) {
        return Err(Error::InvalidArgument(format!("cannot compare a summary of {rt} values with one of {ct} values")));
    }
    // Equal or both numeric types: both sides are categorical, or neither is.
    match (reference.categorical(), current.categorical()) {
        (Some(r), Some(c)) => {
            Ok(categorical_drift(non_empty(r, reference, "reference")?, non_empty(c, current, "current")?))
        }
        _ => numeric_drift(&digest(reference, "reference")?, &digest(current, "current")?),
    }
}

fn no_values(summary: &FeatureSummary, side: &str) -> Error {
    Error::InvalidArgument(format!("cannot compute drift: the {side} summary ({}) has no values", summary.value_type()))
}

fn non_empty<'a>(stats: &'a CategoricalStats, summary: &FeatureSummary, side: &str) -> Result<&'a CategoricalStats> {
    if stats.count() == 0 { Err(no_values(summary, side)) } else { Ok(stats) }
}

fn digest(summary: &FeatureSummary, side: &str) -> Result<TDigest> {
    summary.distribution().and_then(|d| d.frozen()).ok_or_else(|| no_values(summary, side))
}

/// The sketch answers `None` only when empty, and errors only on split points that are not
/// strictly increasing; both are ruled out before these calls.
fn checked<T>(answer: std::result::Result<Option<T>, datasketches::error::Error>) -> Result<T> {
    answer
        .map_err(|e| Error::Internal(format!("drift: {e}")))?
        .ok_or_else(|| Error::Internal("drift: empty sketch".into()))
}

fn sorted_distinct(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

fn numeric_drift(reference: &TDigest, current: &TDigest) -> Result<DriftMetrics> {
    // Deciles repeat for discrete data; a value equal to an edge counts half on each side.
    let edges = sorted_distinct(checked(reference.quantiles(&DECILES))?);
    let p = checked(reference.pmf(&edges))?;
    let q = checked(current.pmf(&edges))?;

    // Both sides' quantiles, plus midpoints so that the jump at a repeated value is seen
    // (the sketch ranks a value equal to one it holds at the middle of its mass).
    let ranks: Vec<f64> = (0..=KS_GRID).map(|i| i as f64 / KS_GRID as f64).collect();
    let points = sorted_distinct([checked(reference.quantiles(&ranks))?, checked(current.quantiles(&ranks))?].concat());
    let midpoints = points.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0);
    let grid = sorted_distinct(points.iter().copied().chain(midpoints).collect());
    let (fr, fc) = (checked(reference.cdf(&grid))?, checked(current.cdf(&grid))?);
    let ks = fr.iter().zip(&fc).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);

    Ok(DriftMetrics { ks: Some(ks), ..metrics(&p, &q) })
}

fn categorical_drift(reference: &CategoricalStats, current: &CategoricalStats) -> DriftMetrics {
    let categories: BTreeSet<String> =
        reference.top_values().into_iter().chain(current.top_values()).map(|(value, _)| value).collect();
    let frequencies = |stats: &CategoricalStats| {
        let total = stats.count() as f64;
        let mut p: Vec<f64> = categories.iter().map(|c| stats.frequency(c) as f64 / total).collect();
        p.push((1.0 - p.iter().sum::<f64>()).max(0.0));
        p
    };
    metrics(&frequencies(reference), &frequencies(current))
}

fn metrics(p: &[f64], q: &[f64]) -> DriftMetrics {
    DriftMetrics {
        psi: psi(p, q),
        ks: None,
        js_distance: js_distance(p, q),
        hellinger: hellinger(p, q),
        tvd: tvd(p, q),
    }
}

/// Population stability index, Σ (qᵢ − pᵢ)·ln(qᵢ/pᵢ), with buckets below [`PSI_EPSILON`]
/// raised to it. Symmetric; 0 for equal vectors, no upper bound.
///
/// # Panics
/// If `p` and `q` differ in length.
pub fn psi(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "psi needs two vectors over the same buckets");
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a.max(PSI_EPSILON), b.max(PSI_EPSILON));
            (b - a) * (b / a).ln()
        })
        .sum()
}

/// Jensen–Shannon distance: the square root of the JS divergence in bits, so it lies in
/// [0, 1] (1 for disjoint distributions) and is a metric.
///
/// # Panics
/// If `p` and `q` differ in length.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "js_distance needs two vectors over the same buckets");
    let kl_to_mean = |x: f64, m: f64| if x > 0.0 { x * (x / m).log2() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let m = (a + b) / 2.0;
            (kl_to_mean(a, m) + kl_to_mean(b, m)) / 2.0
        })
        .sum();
    divergence.clamp(0.0, 1.0).sqrt()
}

/// Hellinger distance, √(½ Σ (√pᵢ − √qᵢ)²), in [0, 1]. Computed from differences rather than
/// as √(1 − Σ √(pᵢqᵢ)), which cancels to noise for close distributions.
///
/// # Panics
/// If `p` and `q` differ in length.
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "hellinger needs two vectors over the same buckets");
    let sum: f64 = p.iter().zip(q).map(|(&a, &b)| (a.max(0.0).sqrt() - b.max(0.0).sqrt()).powi(2)).sum();
    (sum / 2.0).sqrt()
}

/// Total variation distance, ½ Σ |pᵢ − qᵢ|: the largest difference in probability that the two
/// give any set of buckets. In [0, 1].
///
/// # Panics
/// If `p` and `q` differ in length.
pub fn tvd(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "tvd needs two vectors over the same buckets");
    p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
}

/// What [`status`] concludes about a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DriftStatus {
    /// Not computed: a side had no values, or could not be read. Ranks below every other.
    Unknown,
    Ok,
    Warning,
    Drift,
}

impl DriftStatus {
    /// Every status, from the least to the most severe.
    pub const ALL: [DriftStatus; 4] = [DriftStatus::Unknown, DriftStatus::Ok, DriftStatus::Warning, DriftStatus::Drift];

    /// The lowercase name users see: `unknown`, `ok`, `warning`, `drift`.
    pub fn name(self) -> &'static str {
        match self {
            DriftStatus::Unknown => "unknown",
            DriftStatus::Ok => "ok",
            DriftStatus::Warning => "warning",
            DriftStatus::Drift => "drift",
        }
    }
}

/// The levels of one metric at which a feature is reported as warning and as drifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub warning: f64,
    pub drift: f64,
}

impl Threshold {
    /// A NaN metric counts as drift, so that a broken computation is seen.
    fn status(&self, value: f64) -> DriftStatus {
        if value.is_nan() || value >= self.drift {
            DriftStatus::Drift
        } else if value >= self.warning {
            DriftStatus::Warning
        } else {
            DriftStatus::Ok
        }
    }
}

/// Thresholds per metric. A field left out of a config keeps its default:
///
/// | metric      | warning | drift | why                                                  |
/// |-------------|---------|-------|------------------------------------------------------|
/// | psi         | 0.10    | 0.25  | the usual credit-risk rule of thumb                  |
/// | ks          | 0.10    | 0.20  | a 10-point gap between CDFs is already large         |
/// | js_distance | 0.10    | 0.20  | ≈ √(PSI / 5.5) for small shifts: near the PSI levels |
/// | hellinger   | 0.10    | 0.20  | ≈ √(PSI / 8) for small shifts                        |
/// | tvd         | 0.10    | 0.20  | 10% of the mass has moved                            |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftThresholds {
    pub psi: Threshold,
    pub ks: Threshold,
    pub js_distance: Threshold,
    pub hellinger: Threshold,
    pub tvd: Threshold,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        let tenth_fifth = Threshold { warning: 0.1, drift: 0.2 };
        Self {
            psi: Threshold { warning: 0.1, drift: 0.25 },
            ks: tenth_fifth,
            js_distance: tenth_fifth,
            hellinger: tenth_fifth,
            tvd: tenth_fifth,
        }
    }
}

impl DriftThresholds {
    fn named(&self) -> [(&'static str, Threshold); 5] {
        [
            ("psi", self.psi),
            ("ks", self.ks),
            ("js_distance", self.js_distance),
            ("hellinger", self.hellinger),
            ("tvd", self.tvd),
        ]
    }

    /// Checks that each metric has `0 <= warning <= drift`, naming the first that does not.
    pub fn validate(&self) -> Result<()> {
        for (name, t) in self.named() {
            if !(t.warning >= 0.0 && t.warning <= t.drift && t.drift.is_finite()) {
                return Err(Error::InvalidDefinition(format!(
                    "drift thresholds for {name}: need 0 <= warning <= drift, got warning {} and drift {}",
                    t.warning, t.drift
                )));
            }
        }
        Ok(())
    }
}

/// The worst status over the metrics: any metric at or above its `drift` level makes the
/// feature drifted, else any at or above its `warning` level makes it a warning. The metrics
/// describe one shift from different angles, so the most sensitive one decides; KS counts only
/// where it is defined (numeric distributions).
pub fn status(metrics: &DriftMetrics, thresholds: &DriftThresholds) -> DriftStatus {
    let values = [Some(metrics.psi), metrics.ks, Some(metrics.js_distance), Some(metrics.hellinger), Some(metrics.tvd)];
    thresholds
        .named()
        .into_iter()
        .zip(values)
        .filter_map(|((_, threshold), value)| Some(threshold.status(value?)))
        .max()
        .unwrap_or(DriftStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::Rng;
    use crate::value::Value;
    use proptest::prelude::*;

    fn assert_metrics(p: &[f64], q: &[f64], want: [f64; 4]) {
        let got = [psi(p, q), js_distance(p, q), hellinger(p, q), tvd(p, q)];
        for (name, (g, w)) in ["psi", "js_distance", "hellinger", "tvd"].iter().zip(got.iter().zip(want)) {
            assert!((g - w).abs() < 1e-12, "{name}({p:?}, {q:?}) = {g}, want {w}");
        }
    }

    #[test]
    fn two_bucket_metrics_match_hand_computation() {
        // psi: (0.9-0.5)·ln(0.9/0.5) + (0.1-0.5)·ln(0.1/0.5) = 0.235115 + 0.643775
        // js: m = (0.7, 0.3); ½(0.125769 + 0.167817) bits = 0.146793, √ = 0.383136
        // hellinger: √(1 - √0.45 - √0.05) = √0.105573; tvd: ½(0.4 + 0.4)
        assert_metrics(
            &[0.5, 0.5],
            &[0.9, 0.1],
            [0.878_889_830_934_487_8, 0.383_135_879_859_942_24, 0.324_919_696_232_906_3, 0.4],
        );
    }

    #[test]
    fn three_bucket_metrics_match_hand_computation() {
        // psi: 2 · 0.25·ln 2; hellinger: √(1 - (√0.125 + 0.25 + √0.125)) = √(0.75 - √0.5); tvd: ½(0.25 + 0.25)
        let (p, q) = ([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]);
        assert_metrics(&p, &q, [0.5 * 2f64.ln(), 0.247_544_186_882_125_76, (0.75 - 0.5f64.sqrt()).sqrt(), 0.25]);
    }

    #[test]
    fn disjoint_buckets_are_as_far_apart_as_can_be() {
        // psi with empty buckets raised to 1e-4: 2 · (1 - 1e-4) · ln(1e4)
        assert_metrics(&[1.0, 0.0], &[0.0, 1.0], [2.0 * (1.0 - PSI_EPSILON) * 1e4f64.ln(), 1.0, 1.0, 1.0]);
        assert_metrics(&[], &[], [0.0; 4]);
    }

    fn normal_summary(seed: u64, shift: f64) -> FeatureSummary {
        let mut rng = Rng::new(seed);
        let mut s = FeatureSummary::new(ValueType::Float64);
        (0..20_000).for_each(|_| s.observe(&Value::Float64(rng.normal() + shift)).unwrap());
        s
    }

    #[test]
    fn a_summary_compared_with_itself_shows_no_drift() {
        let s = normal_summary(1, 0.0);
        let m = drift(&s, &s).unwrap();
        for value in [m.psi, m.ks.unwrap(), m.js_distance, m.hellinger, m.tvd] {
            assert!(value.abs() < 1e-12, "{m:?}");
        }
        assert_eq!(status(&m, &DriftThresholds::default()), DriftStatus::Ok);
    }

    #[test]
    fn two_samples_of_one_distribution_show_no_drift() {
        let m = drift(&normal_summary(1, 0.0), &normal_summary(2, 0.0)).unwrap();
        for value in [m.psi, m.ks.unwrap(), m.js_distance, m.hellinger, m.tvd] {
            assert!((0.0..0.05).contains(&value), "{m:?}");
        }
        assert_eq!(status(&m, &DriftThresholds::default()), DriftStatus::Ok);
    }

    #[test]
    fn a_one_sigma_shift_is_drift() {
        let m = drift(&normal_summary(1, 0.0), &normal_summary(2, 1.0)).unwrap();
        // Exact KS for N(0,1) against N(1,1): 2Φ(½) - 1 = 0.3829.
        assert!((m.ks.unwrap() - 0.3829).abs() < 0.03, "{m:?}");
        assert!(m.psi > 0.25 && m.tvd > 0.2, "{m:?}");
        assert_eq!(status(&m, &DriftThresholds::default()), DriftStatus::Drift);
    }

    #[test]
    fn different_ranges_are_compared_on_the_reference_deciles() {
        // The current sample lies inside the reference's lowest decile: all its mass is in bucket 1.
        let reference = normal_summary(1, 0.0);
        let mut current = FeatureSummary::new(ValueType::Float64);
        (0..1000).for_each(|i| current.observe(&Value::Float64(-3.0 + f64::from(i) / 1000.0)).unwrap());
        let m = drift(&reference, &current).unwrap();
        assert!((m.tvd - 0.9).abs() < 0.02 && m.ks.unwrap() > 0.85, "{m:?}");
    }

    #[test]
    fn disjoint_constant_features_have_a_ks_of_one() {
        let constant = |v| {
            let mut s = FeatureSummary::new(ValueType::Int64);
            (0..100).for_each(|_| s.observe(&Value::Int64(v)).unwrap());
            s
        };
        let m = drift(&constant(0), &constant(1)).unwrap();
        assert_eq!(m.ks, Some(1.0));
        assert_eq!(status(&m, &DriftThresholds::default()), DriftStatus::Drift);
        assert_eq!(drift(&constant(3), &constant(3)).unwrap().psi, 0.0);
    }

    fn categorical(counts: &[(&str, usize)]) -> FeatureSummary {
        let mut s = FeatureSummary::new(ValueType::String);
        for (value, n) in counts {
            (0..*n).for_each(|_| s.observe(&Value::String(value.to_string())).unwrap());
        }
        s
    }

    #[test]
    fn categorical_drift_comes_from_value_frequencies() {
        let reference = categorical(&[("a", 500), ("b", 300), ("c", 200)]);
        // Frequencies (a, b, c, other) go from (0.5, 0.3, 0.2, 0) to (0.2, 0.3, 0.5, 0):
        // psi = 0.3·ln(2.5) + 0.3·ln(2.5) = 0.549774, tvd = 0.3.
        let m = drift(&reference, &categorical(&[("a", 20), ("b", 30), ("c", 50)])).unwrap();
        assert_eq!(m.ks, None);
        assert!((m.psi - 0.6 * 2.5f64.ln()).abs() < 1e-12 && (m.tvd - 0.3).abs() < 1e-12, "{m:?}");
        assert!((m.js_distance - 0.309_540_953_677_148_07).abs() < 1e-12, "{m:?}");
        assert!((m.hellinger - 0.259_893_185_686_589_65).abs() < 1e-12, "{m:?}");
        assert_eq!(status(&m, &DriftThresholds::default()), DriftStatus::Drift);

        let same_shares = drift(&reference, &categorical(&[("c", 2), ("a", 5), ("b", 3)])).unwrap();
        assert_eq!((same_shares.psi, same_shares.tvd), (0.0, 0.0));
    }

    #[test]
    fn a_value_only_the_current_side_has_is_its_own_bucket() {
        let m = drift(&categorical(&[("a", 90), ("b", 10)]), &categorical(&[("a", 90), ("new", 10)])).unwrap();
        assert!((m.tvd - 0.1).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn boolean_drift_compares_the_shares_of_true_and_false() {
        let flags = |trues: usize, falses: usize| {
            let mut s = FeatureSummary::new(ValueType::Bool);
            let values = std::iter::repeat_n(true, trues).chain(std::iter::repeat_n(false, falses));
            values.for_each(|b| s.observe(&Value::Bool(b)).unwrap());
            s
        };
        let m = drift(&flags(50, 50), &flags(90, 10)).unwrap();
        assert!((m.psi - 0.878_889_830_934_487_8).abs() < 1e-12 && (m.tvd - 0.4).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn drift_needs_values_on_both_sides_and_comparable_types() {
        let values = normal_summary(1, 0.0);
        let nulls = FeatureSummary::new(ValueType::Float64);
        let mut nans = FeatureSummary::new(ValueType::Float64);
        nans.observe(&Value::Float64(f64::NAN)).unwrap();
        let says = |result: Result<DriftMetrics>, word: &str| {
            matches!(&result, Err(Error::InvalidArgument(m)) if m.contains(word)) || panic!("{result:?} lacks '{word}'")
        };
        assert!(says(drift(&nulls, &values), "reference"));
        assert!(says(drift(&values, &nans), "current"));
        assert!(says(drift(&values, &categorical(&[("a", 1)])), "string"));
        assert!(says(drift(&FeatureSummary::new(ValueType::Bytes), &values), "bytes"));
        let mut ints = FeatureSummary::new(ValueType::Int32);
        (0..10).for_each(|i| ints.observe(&Value::Int32(i)).unwrap());
        assert!(drift(&ints, &values).is_ok());
        assert!(says(drift(&FeatureSummary::new(ValueType::Bool), &FeatureSummary::new(ValueType::Bool)), "reference"));
    }

    #[test]
    fn status_is_the_worst_over_the_metrics() {
        let t = DriftThresholds::default();
        let calm = DriftMetrics { psi: 0.05, ks: Some(0.05), js_distance: 0.05, hellinger: 0.05, tvd: 0.05 };
        assert_eq!(status(&calm, &t), DriftStatus::Ok);
        assert_eq!(status(&DriftMetrics { psi: 0.1, ..calm }, &t), DriftStatus::Warning);
        assert_eq!(status(&DriftMetrics { tvd: 0.2, ..calm }, &t), DriftStatus::Drift);
        assert_eq!(status(&DriftMetrics { ks: Some(0.15), hellinger: 0.3, ..calm }, &t), DriftStatus::Drift);
        assert_eq!(status(&DriftMetrics { ks: None, ..calm }, &t), DriftStatus::Ok);
        assert_eq!(status(&DriftMetrics { js_distance: f64::NAN, ..calm }, &t), DriftStatus::Drift);
    }

    #[test]
    fn thresholds_left_out_of_a_config_keep_their_defaults() {
        let t: DriftThresholds = serde_json::from_str(r#"{"psi": {"warning": 0.2, "drift": 0.3}}"#).unwrap();
        assert_eq!(t.psi, Threshold { warning: 0.2, drift: 0.3 });
        assert_eq!((t.ks, t.tvd), (DriftThresholds::default().ks, Threshold { warning: 0.1, drift: 0.2 }));
        assert_eq!(DriftThresholds::default().psi, Threshold { warning: 0.1, drift: 0.25 });
        assert!(serde_json::from_str::<DriftThresholds>(r#"{"chi2": {"warning": 1, "drift": 2}}"#).is_err());
        assert!(t.validate().is_ok());
        let inverted = DriftThresholds { hellinger: Threshold { warning: 0.3, drift: 0.2 }, ..t };
        assert!(matches!(inverted.validate(), Err(Error::InvalidDefinition(m)) if m.contains("hellinger")));
        assert_eq!(serde_json::to_string(&DriftStatus::Warning).unwrap(), r#""warning""#);
    }

    fn distribution(len: usize) -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.0f64..1.0, len).prop_map(|w| {
            let total: f64 = w.iter().sum();
            w.iter().map(|x| if total > 0.0 { x / total } else { 1.0 / w.len() as f64 }).collect()
        })
    }

    proptest! {
        #[test]
        fn divergences_are_symmetric_bounded_and_zero_only_between_equals(
            (p, q) in (1usize..12).prop_flat_map(|n| (distribution(n), distribution(n)))
        ) {
            for f in [psi, js_distance, hellinger, tvd] {
                prop_assert!((f(&p, &q) - f(&q, &p)).abs() < 1e-12);
                prop_assert!(f(&p, &p).abs() < 1e-12);
                prop_assert!(f(&p, &q) >= 0.0);
            }
            for f in [js_distance, hellinger, tvd] {
                prop_assert!(f(&p, &q) <= 1.0 + 1e-12);
            }
        }
    }
}
