//! What the monitoring API asks and answers: the window statistics describe, the target of
//! a drift report, and the statistics and drift reports themselves.

use serde::{Serialize, Serializer};

use super::drift::{DriftMetrics, DriftStatus};
use super::numeric::HistogramBin;
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// One entry per feature.
    pub features: Vec<FeatureDrift>,
    /// The worst status over the features; `None` ("unknown") when none could be compared.
    #[serde(serialize_with = "status_or_unknown")]
    pub status: Option<DriftStatus>,
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// `set:feature`.
    pub feature: String,
    /// PSI, KS, Jensen–Shannon, Hellinger, TVD; `None` when a side has no values (`error` says which).
    #[serde(flatten)]
    pub metrics: Option<DriftMetrics>,
    /// The metrics against the feature set's thresholds; `None` ("unknown") without metrics.
    #[serde(serialize_with = "status_or_unknown")]
    pub status: Option<DriftStatus>,
    /// Why the feature could not be compared.
    pub error: Option<String>,
    /// Values in the reference window.
    pub reference_count: u64,
    /// Values in the current window.
    pub current_count: u64,
}

/// Every status a drift report can give, `None` being unknown.
pub const DRIFT_STATUSES: [Option<DriftStatus>; 4] =
    [None, Some(DriftStatus::Ok), Some(DriftStatus::Warning), Some(DriftStatus::Drift)];

/// A drift status by name, as on the wire and in `quiverctl drift`: `ok`, `warning`,
/// `drift`, or `unknown` when nothing could be compared.
pub fn drift_status_name(status: Option<DriftStatus>) -> &'static str {
    match status {
        Some(DriftStatus::Ok) => "ok",
        Some(DriftStatus::Warning) => "warning",
        Some(DriftStatus::Drift) => "drift",
        None => "unknown",
    }
}

fn status_or_unknown<S: Serializer>(status: &Option<DriftStatus>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(drift_status_name(*status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_without_metrics_serializes_as_unknown_with_its_error() {
        let drift = |metrics: Option<DriftMetrics>, status| FeatureDrift {
            feature: "s:f".into(),
            metrics,
            status,
            error: metrics.is_none().then(|| "no statistics on one side".into()),
            reference_count: 10,
            current_count: 0,
        };
        let none = serde_json::to_value(drift(None, None)).unwrap();
        assert_eq!(none["status"], "unknown");
        assert_eq!(none["error"], "no statistics on one side");
        assert!(none.get("psi").is_none(), "{none}");
        let metrics = DriftMetrics { psi: 0.3, ks: None, js_distance: 0.1, hellinger: 0.2, tvd: 0.05 };
        let some = serde_json::to_value(drift(Some(metrics), Some(DriftStatus::Drift))).unwrap();
        assert_eq!(
            (&some["status"], &some["psi"], &some["ks"]),
            (&"drift".into(), &0.3.into(), &serde_json::Value::Null)
        );
    }
}
