//! What the monitoring API asks and answers: the window statistics describe, the target of
//! a drift report, and the statistics and drift reports themselves. Nodes store monitor
//! runs as `DriftReport`s; the API maps these types to its messages.

use serde::{Deserialize, Serialize};

use super::drift::{DriftMetrics, DriftStatus, DriftThresholds, drift, status};
use super::numeric::HistogramBin;
use super::summary::FeatureSummary;
use crate::ValueType;

/// What statistics describe. Times are microseconds, `[from, to)` in whole UTC days; `None`
/// leaves a side open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsWindow {
    /// Offline rows, by event time.
    Offline {
        /// Start, inclusive.
        from: Option<i64>,
        /// End, exclusive.
        to: Option<i64>,
    },
    /// A saved training dataset.
    Dataset(String),
    /// Values served online, by time served.
    Serving {
        /// Start, inclusive.
        from: Option<i64>,
        /// End, exclusive.
        to: Option<i64>,
    },
}

impl StatsWindow {
    /// A window as people write it: `FROM..TO` (offline rows by event time; dates, RFC 3339
    /// times or µs, either side may be left out), `dataset:NAME`, or `serving[:FROM..TO]`.
    pub fn parse(spec: &str) -> Result<StatsWindow, String> {
        if let Some(name) = spec.strip_prefix("dataset:") {
            return Ok(StatsWindow::Dataset(name.to_string()));
        }
        if spec == "serving" {
            return Ok(StatsWindow::Serving { from: None, to: None });
        }
        if let Some(rest) = spec.strip_prefix("serving:") {
            let (from, to) = crate::time::parse_range(rest)?;
            return Ok(StatsWindow::Serving { from, to });
        }
        let (from, to) = crate::time::parse_range(spec)?;
        Ok(StatsWindow::Offline { from, to })
    }
}

/// What a drift report compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftTarget {
    /// Every feature of a feature set (`name` or `name@version`).
    FeatureSet(String),
    /// The features of a feature vector.
    Vector(String),
}

/// Statistics of every feature of a feature set version over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statistics {
    /// The feature set's name.
    pub feature_set: String,
    /// Its version.
    pub version: u32,
    /// Rows summarized.
    pub rows: u64,
    /// Days with any statistics in the window (0 for a dataset).
    pub days: u32,
    /// One entry per feature, in declaration order.
    pub features: Vec<FeatureStatistics>,
}

/// Statistics of one feature. Numbers describe the values, list lengths for lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureStatistics {
    /// The feature's name.
    pub feature: String,
    /// Its type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Non-null values.
    pub count: u64,
    /// Null values.
    pub nulls: u64,
    /// Estimated distinct values.
    pub distinct: u64,
    /// Smallest value, for numeric features.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Standard deviation.
    pub stddev: Option<f64>,
    /// Estimated quantiles.
    pub quantiles: Vec<Quantile>,
    /// Equal-width histogram.
    pub histogram: Vec<HistogramBin>,
    /// Most frequent values of strings and bools, most frequent first.
    pub top_values: Vec<TopValue>,
}

/// Quantiles, histogram bins and top values statistics show per feature.
const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const HISTOGRAM_BINS: usize = 20;
const TOP_VALUES: usize = 10;

impl FeatureStatistics {
    /// What statistics show of feature `name`'s merged summary.
    pub fn from_summary(name: &str, s: &FeatureSummary) -> FeatureStatistics {
        FeatureStatistics {
            feature: name.to_string(),
            value_type: s.value_type(),
            count: s.count(),
            nulls: s.nulls(),
            distinct: s.distinct(),
            min: s.min(),
            max: s.max(),
            mean: s.mean(),
            stddev: s.stddev(),
            quantiles: QUANTILES.iter().filter_map(|q| s.quantile(*q).map(|value| Quantile { q: *q, value })).collect(),
            histogram: s.histogram(HISTOGRAM_BINS),
            top_values: s
                .top_values()
                .into_iter()
                .take(TOP_VALUES)
                .map(|(value, count)| TopValue { value, count })
                .collect(),
        }
    }
}

/// The value below which a share `q` of the values fall.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantile {
    /// Between 0 and 1.
    pub q: f64,
    /// The estimated quantile.
    pub value: f64,
}

/// A frequent value and how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopValue {
    /// The value, as text.
    pub value: String,
    /// Its estimated count.
    pub count: u64,
}

/// Drift of every feature of a target between a reference and a current window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// One entry per feature.
    pub features: Vec<FeatureDrift>,
    /// The worst status over the features; `Unknown` when none could be compared.
    pub status: DriftStatus,
}

impl DriftReport {
    /// The report of `features`, with the worst status over them.
    pub fn new(features: Vec<FeatureDrift>) -> DriftReport {
        let status = features.iter().map(|f| f.status).max().unwrap_or(DriftStatus::Unknown);
        DriftReport { features, status }
    }
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// `set:feature`.
    pub feature: String,
    /// PSI, KS, Jensen–Shannon, Hellinger, TVD; `None` when the sides could not be compared
    /// (`error` says why).
    pub metrics: Option<DriftMetrics>,
    /// The metrics against the feature set's thresholds; `Unknown` without metrics.
    pub status: DriftStatus,
    /// Why the feature could not be compared.
    pub error: Option<String>,
    /// Values in the reference window.
    pub reference_count: u64,
    /// Values in the current window.
    pub current_count: u64,
}

impl FeatureDrift {
    /// Compares the two sides with `thresholds`; a side without values is reported as
    /// `Unknown` with the reason, not failed.
    pub fn compare(
        feature: String,
        (reference, current): (Option<&FeatureSummary>, Option<&FeatureSummary>),
        thresholds: &DriftThresholds,
    ) -> FeatureDrift {
        let counts = (reference.map_or(0, |s| s.count()), current.map_or(0, |s| s.count()));
        let compared = match (reference, current) {
            (Some(r), Some(c)) => drift(r, c).map_err(|e| e.to_string()),
            _ => Err("no statistics on one side".to_string()),
        };
        let (metrics, status, error) = match compared {
            Ok(m) => (Some(m), status(&m, thresholds), None),
            Err(e) => (None, DriftStatus::Unknown, Some(e)),
        };
        FeatureDrift { feature, metrics, status, error, reference_count: counts.0, current_count: counts.1 }
    }

    /// A feature whose windows could not be read at all.
    pub fn failed(feature: String, error: String) -> FeatureDrift {
        let status = DriftStatus::Unknown;
        FeatureDrift { feature, metrics: None, status, error: Some(error), reference_count: 0, current_count: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Value, ValueType};

    fn summary(values: impl IntoIterator<Item = f64>) -> FeatureSummary {
        let mut s = FeatureSummary::new(ValueType::Float64);
        for v in values {
            s.observe(&Value::Float64(v)).unwrap();
        }
        s
    }

    #[test]
    fn a_feature_without_metrics_reads_as_unknown_with_its_error() {
        let report = DriftReport::new(vec![FeatureDrift::failed("s:f".into(), "no statistics on one side".into())]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "unknown");
        assert_eq!(json["features"][0]["error"], "no statistics on one side");
        assert!(json["features"][0]["metrics"].is_null(), "{json}");
        let back: DriftReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_report_takes_the_worst_status_and_unknown_only_when_nothing_is_known() {
        let same = summary((0..100).map(f64::from));
        let shifted = summary((0..100).map(|v| f64::from(v) + 1000.0));
        let t = DriftThresholds::default();
        let ok = FeatureDrift::compare("s:a".into(), (Some(&same), Some(&same)), &t);
        let drifted = FeatureDrift::compare("s:b".into(), (Some(&same), Some(&shifted)), &t);
        let missing = FeatureDrift::compare("s:c".into(), (Some(&same), None), &t);
        assert_eq!(
            (ok.status, drifted.status, missing.status),
            (DriftStatus::Ok, DriftStatus::Drift, DriftStatus::Unknown)
        );
        assert_eq!(missing.error.as_deref(), Some("no statistics on one side"));
        assert_eq!((missing.reference_count, missing.current_count), (100, 0));
        assert_eq!(DriftReport::new(vec![ok.clone(), missing.clone(), drifted]).status, DriftStatus::Drift);
        assert_eq!(DriftReport::new(vec![missing.clone(), ok]).status, DriftStatus::Ok);
        assert_eq!(DriftReport::new(vec![missing]).status, DriftStatus::Unknown);
    }
}
