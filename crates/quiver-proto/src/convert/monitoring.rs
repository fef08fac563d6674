//! Statistics and drift: windows, targets and reports.

use quiver_core::stats::{
    DriftMetrics, DriftReport, DriftStatus, DriftTarget, FeatureDrift, FeatureStatistics, HistogramBin, Quantile,
    Statistics, StatsWindow, TopValue,
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

/// A window as sent (0 leaves a side open); a window naming nothing is refused.
pub fn stats_window_from_proto(w: &v1::Window) -> Result<StatsWindow> {
    let side = |t: i64| (t != 0).then_some(t);
    match &w.source {
        Some(window::Source::Offline(r)) => {
            Ok(StatsWindow::Offline { from: side(r.from_micros), to: side(r.to_micros) })
        }
        Some(window::Source::Serving(r)) => {
            Ok(StatsWindow::Serving { from: side(r.from_micros), to: side(r.to_micros) })
        }
        Some(window::Source::Dataset(name)) => Ok(StatsWindow::Dataset(name.clone())),
        None => Err(Error::InvalidArgument("name a window: an offline time range, a dataset, or serving".into())),
    }
}

pub fn drift_target_to_proto(t: &DriftTarget) -> get_drift_request::Target {
    match t {
        DriftTarget::FeatureSet(s) => get_drift_request::Target::FeatureSet(s.clone()),
        DriftTarget::Vector(v) => get_drift_request::Target::Vector(v.clone()),
    }
}

pub fn statistics_to_proto(s: &Statistics) -> v1::GetStatisticsResponse {
    v1::GetStatisticsResponse {
        feature_set: s.feature_set.clone(),
        version: s.version,
        rows: s.rows,
        days: s.days,
        features: s.features.iter().map(feature_statistics_to_proto).collect(),
    }
}

fn feature_statistics_to_proto(f: &FeatureStatistics) -> v1::FeatureStatistics {
    v1::FeatureStatistics {
        feature: f.feature.clone(),
        r#type: f.value_type.name().to_string(),
        count: f.count,
        nulls: f.nulls,
        distinct: f.distinct,
        min: f.min,
        max: f.max,
        mean: f.mean,
        stddev: f.stddev,
        quantiles: f.quantiles.iter().map(|q| v1::Quantile { q: q.q, value: q.value }).collect(),
        histogram: f
            .histogram
            .iter()
            .map(|b| v1::HistogramBin { lower: b.lower, upper: b.upper, count: b.count })
            .collect(),
        top_values: f.top_values.iter().map(|t| v1::TopValue { value: t.value.clone(), count: t.count }).collect(),
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

/// `ok`, `warning`, `drift`, or `unknown` (nothing could be compared).
fn drift_status_from_proto(status: &str) -> Result<DriftStatus> {
    let known = DriftStatus::ALL.into_iter().find(|s| s.name() == status);
    known.ok_or_else(|| Error::Internal(format!("unknown drift status '{status}'")))
}

pub fn drift_report_to_proto(r: &DriftReport) -> v1::GetDriftResponse {
    v1::GetDriftResponse {
        status: r.status.name().to_string(),
        features: r.features.iter().map(feature_drift_to_proto).collect(),
    }
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
    fn windows_round_trip_and_an_empty_window_is_refused() {
        let windows = [
            StatsWindow::Offline { from: Some(5), to: None },
            StatsWindow::Serving { from: None, to: Some(9) },
            StatsWindow::Dataset("train".into()),
        ];
        for w in windows {
            assert_eq!(stats_window_from_proto(&stats_window_to_proto(&w)).unwrap(), w);
        }
        let err = stats_window_from_proto(&v1::Window { source: None }).unwrap_err();
        assert!(err.to_string().contains("name a window"), "{err}");
    }

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
        assert_eq!(report.status, DriftStatus::Drift);
        assert_eq!(report.features[0].metrics.map(|m| m.psi), Some(0.3));
        assert_eq!((report.features[1].metrics, report.features[1].status), (None, DriftStatus::Unknown));
        assert_eq!(drift_report_from_proto(drift_report_to_proto(&report)).unwrap(), report);
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
