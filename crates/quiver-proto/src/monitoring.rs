//! Statistics and drift between the wire and `quiver_core::stats`.

use quiver_core::Error;
use quiver_core::stats::{DriftReport, FeatureDrift, FeatureSummary, TimeRange, Window};

use crate::v1;

/// Quantiles, histogram bins and top values a statistics answer shows per feature.
const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const HISTOGRAM_BINS: usize = 20;
const TOP_VALUES: usize = 10;

fn range_from_proto(range: &v1::TimeRange) -> TimeRange {
    // 0 on the wire leaves a side open.
    let side = |t: i64| (t != 0).then_some(t);
    TimeRange { from: side(range.from_micros), to: side(range.to_micros) }
}

fn range_to_proto(range: &TimeRange) -> v1::TimeRange {
    v1::TimeRange { from_micros: range.from.unwrap_or(0), to_micros: range.to.unwrap_or(0) }
}

/// A window as sent; a window naming nothing is refused.
pub fn window_from_proto(window: &v1::Window) -> Result<Window, Error> {
    use v1::window::Source;
    match &window.source {
        Some(Source::Offline(range)) => Ok(Window::Offline(range_from_proto(range))),
        Some(Source::Serving(range)) => Ok(Window::Serving(range_from_proto(range))),
        Some(Source::Dataset(name)) => Ok(Window::Dataset(name.clone())),
        None => Err(Error::InvalidArgument("name a window: an offline time range, a dataset, or serving".into())),
    }
}

pub fn window_to_proto(window: &Window) -> v1::Window {
    use v1::window::Source;
    let source = match window {
        Window::Offline(range) => Source::Offline(range_to_proto(range)),
        Window::Serving(range) => Source::Serving(range_to_proto(range)),
        Window::Dataset(name) => Source::Dataset(name.clone()),
    };
    v1::Window { source: Some(source) }
}

fn feature_drift_to_proto(f: &FeatureDrift) -> v1::FeatureDrift {
    let mut answer = v1::FeatureDrift {
        feature: f.feature.clone(),
        status: f.status.name().to_string(),
        reference_count: f.reference_count,
        current_count: f.current_count,
        error: f.error.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(m) = f.metrics {
        (answer.psi, answer.ks, answer.js_distance, answer.hellinger, answer.tvd) =
            (m.psi, m.ks, m.js_distance, m.hellinger, m.tvd);
    }
    answer
}

pub fn drift_report_to_proto(report: &DriftReport) -> v1::GetDriftResponse {
    v1::GetDriftResponse {
        status: report.status.name().to_string(),
        features: report.features.iter().map(feature_drift_to_proto).collect(),
    }
}

/// What a statistics answer shows of one feature's summary.
pub fn feature_statistics_to_proto(name: &str, s: &FeatureSummary) -> v1::FeatureStatistics {
    v1::FeatureStatistics {
        feature: name.to_string(),
        r#type: s.value_type().name().to_string(),
        count: s.count(),
        nulls: s.nulls(),
        distinct: s.distinct(),
        min: s.min(),
        max: s.max(),
        mean: s.mean(),
        stddev: s.stddev(),
        quantiles: QUANTILES.iter().filter_map(|q| s.quantile(*q).map(|value| v1::Quantile { q: *q, value })).collect(),
        histogram: s
            .histogram(HISTOGRAM_BINS)
            .into_iter()
            .map(|b| v1::HistogramBin { lower: b.lower, upper: b.upper, count: b.count })
            .collect(),
        top_values: s
            .top_values()
            .into_iter()
            .take(TOP_VALUES)
            .map(|(value, count)| v1::TopValue { value, count })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_trip_and_an_empty_window_is_refused() {
        let windows = [
            Window::Offline(TimeRange { from: Some(5), to: None }),
            Window::Serving(TimeRange { from: None, to: Some(9) }),
            Window::Dataset("train".into()),
        ];
        for w in windows {
            assert_eq!(window_from_proto(&window_to_proto(&w)).unwrap(), w);
        }
        let err = window_from_proto(&v1::Window { source: None }).unwrap_err();
        assert!(err.to_string().contains("name a window"), "{err}");
    }
}
