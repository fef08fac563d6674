//! What a drift query or a monitor run concludes: the windows compared, each feature's
//! metrics and status, and the worst status over them. Nodes store monitor runs in this
//! form; the API maps it to its messages.

use serde::{Deserialize, Serialize};

use super::drift::{DriftMetrics, DriftStatus, DriftThresholds, drift, status};
use super::summary::FeatureSummary;
use crate::time::{DAY_MICROS, day_of};

/// A half-open time range `[from, to)` in µs; an open side is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl TimeRange {
    /// The whole UTC days covering the range, as `[first, end)` day numbers.
    pub fn days(&self) -> (i64, i64) {
        let from = self.from.map_or(i64::MIN / 2, day_of);
        let to = self.to.map_or(i64::MAX / 2, |t| day_of(t.saturating_add(DAY_MICROS - 1)));
        (from, to)
    }
}

/// The rows whose statistics are compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    /// Offline rows with event times in the range.
    Offline(TimeRange),
    /// The sample of values served online in the range.
    Serving(TimeRange),
    /// A saved training dataset.
    Dataset(String),
}

/// The drift of one feature between two windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// `set:feature`.
    pub feature: String,
    pub reference_count: u64,
    pub current_count: u64,
    /// `None` when the two sides could not be compared (see `error`).
    pub metrics: Option<DriftMetrics>,
    pub status: DriftStatus,
    pub error: Option<String>,
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
        FeatureDrift { feature, reference_count: counts.0, current_count: counts.1, metrics, status, error }
    }

    /// A feature whose windows could not be read at all.
    pub fn failed(feature: String, error: String) -> FeatureDrift {
        FeatureDrift {
            feature,
            reference_count: 0,
            current_count: 0,
            metrics: None,
            status: DriftStatus::Unknown,
            error: Some(error),
        }
    }
}

/// Drift of some features and the worst status over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub status: DriftStatus,
    pub features: Vec<FeatureDrift>,
}

impl DriftReport {
    pub fn new(features: Vec<FeatureDrift>) -> DriftReport {
        let status = features.iter().map(|f| f.status).max().unwrap_or(DriftStatus::Unknown);
        DriftReport { status, features }
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
    fn days_cover_the_range_and_open_sides_are_unbounded() {
        let range = TimeRange { from: Some(DAY_MICROS + 1), to: Some(3 * DAY_MICROS + 1) };
        assert_eq!(range.days(), (1, 4));
        let exact = TimeRange { from: Some(DAY_MICROS), to: Some(3 * DAY_MICROS) };
        assert_eq!(exact.days(), (1, 3));
        let before_1970 = TimeRange { from: Some(-1), to: Some(0) };
        assert_eq!(before_1970.days(), (-1, 0));
        let open = TimeRange::default().days();
        assert!(open.0 < -1_000_000 && open.1 > 1_000_000);
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
