//! Statistics and drift: windows, targets and reports.

use quiver_core::stats::{
    DRIFT_STATUSES, DriftMetrics, DriftReport, DriftStatus, DriftTarget, FeatureDrift, FeatureStatistics, HistogramBin,
    Quantile, Statistics, StatsWindow, TopValue, drift_status_name,
};
use quiver_core::{Error, Result};

use crate::v1;
use crate::v1::{get_drift_request, window};

pub fn stats_window_to_proto(w: &StatsWindow) -> v1::Window {
    let range = |from: &Option<i64>, to: &Option<i64>| v1::TimeRange {
        from_micros: from.unwrap_or_default(),
        to_micros: to.unwrap_or_default(),
    };
    let source = match w {
        StatsWindow::Offline { from, to } => window::Source::Offline(range(from, to)),
        StatsWindow::Dataset(name) => window::Source::Dataset(name.clone()),
        StatsWindow::Serving { from, to } => window::Source::Serving(range(from, to)),
    };
    v1::Window { source: Some(source) }
}

pub fn drift_target_to_proto(t: &DriftTarget) -> get_drift_request::Target {
    match t {
        DriftTarget::FeatureSet(s) => get_drift_request::Target::FeatureSet(s.clone()),
        DriftTarget::Vector(v) => get_drift_request::Target::Vector(v.clone()),
    }
}

pub fn statistics_from_proto(s: v1::GetStatisticsResponse) -> Result<Statistics> {
    Ok(Statistics {
        feature_set: s.feature_set,
        version: s.version,
        rows: s.rows,
        days: s.days,
        features: s.features.into_iter().map(feature_statistics_from_proto).collect::<Result<_>>()?,
    })
}

fn feature_statistics_from_proto(f: v1::FeatureStatistics) -> Result<FeatureStatistics> {
    let value_type = f.r#type.parse().map_err(|e| Error::Internal(format!("statistics of {}: {e}", f.feature)))?;
    Ok(FeatureStatistics {
        feature: f.feature,
        value_type,
        count: f.count,
        nulls: f.nulls,
        distinct: f.distinct,
        min: f.min,
        max: f.max,
        mean: f.mean,
        stddev: f.stddev,
        quantiles: f.quantiles.into_iter().map(|q| Quantile { q: q.q, value: q.value }).collect(),
        histogram: f
            .histogram
            .into_iter()
            .map(|b| HistogramBin { lower: b.lower, upper: b.upper, count: b.count })
            .collect(),
        top_values: f.top_values.into_iter().map(|t| TopValue { value: t.value, count: t.count }).collect(),
    })
}

/// `ok`, `warning`, `drift`, or `unknown` (`None`: nothing could be compared).
fn drift_status_from_proto(status: &str) -> Result<Option<DriftStatus>> {
    let known = DRIFT_STATUSES.into_iter().find(|s| drift_status_name(*s) == status);
    known.ok_or_else(|| Error::Internal(format!("unknown drift status '{status}'")))
}

pub fn drift_report_from_proto(r: v1::GetDriftResponse) -> Result<DriftReport> {
    Ok(DriftReport {
        features: r.features.into_iter().map(feature_drift_from_proto).collect::<Result<_>>()?,
        status: drift_status_from_proto(&r.status)?,
    })
}

/// A feature with an error carries no metrics.
fn feature_drift_from_proto(f: v1::FeatureDrift) -> Result<FeatureDrift> {
    let error = (!f.error.is_empty()).then_some(f.error);
    let metrics = error.is_none().then_some(DriftMetrics {
        psi: f.psi,
        ks: f.ks,
        js_distance: f.js_distance,
        hellinger: f.hellinger,
        tvd: f.tvd,
    });
    Ok(FeatureDrift {
        status: drift_status_from_proto(&f.status)?,
        feature: f.feature,
        metrics,
        error,
        reference_count: f.reference_count,
        current_count: f.current_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keep_open_sides_open() {
        let w = stats_window_to_proto(&StatsWindow::Serving { from: Some(5), to: None });
        assert_eq!(w.source, Some(window::Source::Serving(v1::TimeRange { from_micros: 5, to_micros: 0 })));
        let d = stats_window_to_proto(&StatsWindow::Dataset("train".into()));
        assert_eq!(d.source, Some(window::Source::Dataset("train".into())));
    }

    #[test]
    fn drift_reports_read_statuses_and_features_without_metrics() {
        let report = v1::GetDriftResponse {
            features: vec![
                v1::FeatureDrift { feature: "s:a".into(), psi: 0.3, status: "drift".into(), ..Default::default() },
                v1::FeatureDrift {
                    feature: "s:b".into(),
                    status: "unknown".into(),
                    error: "no statistics on one side".into(),
                    ..Default::default()
                },
            ],
            status: "drift".into(),
        };
        let report = drift_report_from_proto(report).unwrap();
        assert_eq!(report.status, Some(DriftStatus::Drift));
        assert_eq!(report.features[0].metrics.map(|m| m.psi), Some(0.3));
        assert_eq!((report.features[1].metrics, report.features[1].status), (None, None));
        assert_eq!(report.features[1].error.as_deref(), Some("no statistics on one side"));
        let odd = v1::GetDriftResponse { status: "fine".into(), ..Default::default() };
        assert!(drift_report_from_proto(odd).is_err());
    }

    #[test]
    fn statistics_read_their_value_types() {
        let feature = |ty: &str| v1::FeatureStatistics { feature: "f".into(), r#type: ty.into(), ..Default::default() };
        let stats = |ty| v1::GetStatisticsResponse { features: vec![feature(ty)], ..Default::default() };
        let read = statistics_from_proto(stats("list<float32>")).unwrap();
        assert_eq!(read.features[0].value_type, quiver_core::ValueType::Float32List);
        assert!(statistics_from_proto(stats("decimal")).is_err());
    }
}
