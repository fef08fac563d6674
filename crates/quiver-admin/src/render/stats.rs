//! Statistics and drift reports.

use quiver_client::{DriftMetrics, DriftReport, FeatureStatistics, Statistics};

use super::format::table;

fn number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

fn quantile(f: &FeatureStatistics, q: f64) -> Option<f64> {
    f.quantiles.iter().find(|x| (x.q - q).abs() < 1e-9).map(|x| x.value)
}

pub fn statistics_table(s: &Statistics) -> String {
    let mut out = format!("{}@{}: {} rows over {} days\n", s.feature_set, s.version, s.rows, s.days);
    let rows: Vec<Vec<String>> = s
        .features
        .iter()
        .map(|f| {
            let top = f.top_values.iter().take(3).map(|t| format!("{}:{}", t.value, t.count)).collect::<Vec<_>>();
            vec![
                f.feature.clone(),
                f.value_type.to_string(),
                f.count.to_string(),
                f.nulls.to_string(),
                f.distinct.to_string(),
                number(f.min),
                number(f.mean),
                number(f.stddev),
                number(quantile(f, 0.5)),
                number(quantile(f, 0.99)),
                number(f.max),
                if top.is_empty() { "-".into() } else { top.join(" ") },
            ]
        })
        .collect();
    let headers =
        ["FEATURE", "TYPE", "COUNT", "NULLS", "DISTINCT", "MIN", "MEAN", "STDDEV", "P50", "P99", "MAX", "TOP"];
    out += &table(&headers, &rows);
    out
}

pub fn drift_table(r: &DriftReport) -> String {
    let rows: Vec<Vec<String>> = r
        .features
        .iter()
        .map(|f| {
            let metric = |pick: fn(&DriftMetrics) -> Option<f64>| {
                f.metrics.as_ref().and_then(pick).map_or_else(|| "-".into(), |v| format!("{v:.4}"))
            };
            let status = f.status.name();
            vec![
                f.feature.clone(),
                metric(|m| Some(m.psi)),
                metric(|m| m.ks),
                metric(|m| Some(m.js_distance)),
                metric(|m| Some(m.hellinger)),
                metric(|m| Some(m.tvd)),
                format!("{}/{}", f.reference_count, f.current_count),
                f.error.as_ref().map_or_else(|| status.to_string(), |e| format!("{status} ({e})")),
            ]
        })
        .collect();
    let headers = ["FEATURE", "PSI", "KS", "JS", "HELLINGER", "TVD", "REF/CUR", "STATUS"];
    format!("{}overall: {}\n", table(&headers, &rows), r.status.name())
}

#[cfg(test)]
mod tests {
    use quiver_client::{DriftStatus, FeatureDrift};

    use super::*;

    #[test]
    fn a_feature_without_metrics_shows_dashes_and_why() {
        let report = DriftReport {
            features: vec![FeatureDrift {
                feature: "s:f".into(),
                metrics: None,
                status: DriftStatus::Unknown,
                error: Some("no statistics on one side".into()),
                reference_count: 4,
                current_count: 0,
            }],
            status: DriftStatus::Unknown,
        };
        let text = drift_table(&report);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..7], ["s:f", "-", "-", "-", "-", "-", "4/0"]);
        assert!(text.contains("unknown (no statistics on one side)") && text.ends_with("overall: unknown\n"), "{text}");
        let drifted = DriftReport { status: DriftStatus::Drift, ..report };
        assert!(drift_table(&drifted).ends_with("overall: drift\n"));
    }
}
