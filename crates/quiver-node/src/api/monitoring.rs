//! Statistics and drift queries: summaries recorded in the meta group (per offline file,
//! per saved dataset, per sample of served values) merged for the window asked for, never
//! recomputed from raw data. The node first catches up with the metadata leader, so what
//! it answers includes every summary recorded so far.

use std::collections::BTreeMap;
use std::sync::Arc;

use quiver_core::Error as CoreError;
use quiver_core::registry::Project;
use quiver_core::stats::{DriftStatus, DriftThresholds, FeatureSummary, drift, status};
use quiver_proto::v1::monitoring_service_server::MonitoringService;
use quiver_proto::v1::{
    FeatureDrift, FeatureStatistics, GetDriftRequest, GetDriftResponse, GetStatisticsRequest, GetStatisticsResponse,
    HistogramBin, Quantile, TimeRange, TopValue, Window, get_drift_request, window,
};
use tonic::{Request, Response, Status};

use super::observed::observed;
use crate::error::Result;
use crate::meta::stats::{self, Origin, Summaries};
use crate::node::Node;
use crate::storage::KvTree;
use quiver_core::table::TableRef;

const DAY_MICROS: i64 = 86_400_000_000;
const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const HISTOGRAM_BINS: usize = 20;
const TOP_VALUES: usize = 10;

/// Summaries by feature name.
type ByFeature = BTreeMap<String, FeatureSummary>;

pub struct MonitoringApi {
    pub node: Arc<Node>,
}

/// Whole UTC days covering `[from, to)`; an open side is unbounded.
fn days(range: &TimeRange) -> (i64, i64) {
    let from = if range.from_micros == 0 { i64::MIN / 2 } else { range.from_micros.div_euclid(DAY_MICROS) };
    let to =
        if range.to_micros == 0 { i64::MAX / 2 } else { (range.to_micros + DAY_MICROS - 1).div_euclid(DAY_MICROS) };
    (from, to)
}

/// Summaries of one feature set version's features over `window`, by feature name, with
/// the number of days that had any.
pub fn window_summaries(tree: &dyn KvTree, table: &TableRef, window: &Window) -> Result<(Summaries, u32)> {
    match &window.source {
        Some(window::Source::Offline(range)) => stats::merged(tree, table, Origin::Offline, days(range)),
        Some(window::Source::Serving(range)) => stats::merged(tree, table, Origin::Serving, days(range)),
        Some(window::Source::Dataset(name)) => {
            let dataset = stats::dataset(tree, &table.project, name)?.ok_or_else(|| {
                CoreError::InvalidArgument(format!("no dataset '{name}' in project {}", table.project))
            })?;
            // Datasets keep `set:feature`; this table's features are those of its set.
            let prefix = format!("{}:", table.set);
            let columns: Vec<_> = dataset
                .columns
                .into_iter()
                .filter_map(|(key, s)| key.strip_prefix(&prefix).map(|f| (f.to_string(), s)))
                .collect();
            if columns.is_empty() {
                let none = format!("dataset '{name}' holds no feature of {}", table.set);
                return Err(CoreError::InvalidArgument(none).into());
            }
            Ok((Summaries { rows: dataset.rows, columns }, 0))
        }
        None => {
            Err(CoreError::InvalidArgument("name a window: an offline time range, a dataset, or serving".into()).into())
        }
    }
}

fn feature_statistics(name: &str, s: &FeatureSummary) -> FeatureStatistics {
    FeatureStatistics {
        feature: name.to_string(),
        r#type: s.value_type().name().to_string(),
        count: s.count(),
        nulls: s.nulls(),
        distinct: s.distinct(),
        min: s.min(),
        max: s.max(),
        mean: s.mean(),
        stddev: s.stddev(),
        quantiles: QUANTILES.iter().filter_map(|q| s.quantile(*q).map(|value| Quantile { q: *q, value })).collect(),
        histogram: s
            .histogram(HISTOGRAM_BINS)
            .into_iter()
            .map(|b| HistogramBin { lower: b.lower, upper: b.upper, count: b.count })
            .collect(),
        top_values: s
            .top_values()
            .into_iter()
            .take(TOP_VALUES)
            .map(|(value, count)| TopValue { value, count })
            .collect(),
    }
}

fn table_of(project: &Project, set_ref: &str) -> Result<TableRef> {
    let fs = project.feature_set_by_ref(set_ref)?;
    Ok(TableRef::new(&project.name, fs))
}

/// Drift of one feature between two summaries; a side without values is reported, not failed.
fn feature_drift(
    name: String,
    (reference, current): (Option<&FeatureSummary>, Option<&FeatureSummary>),
    thresholds: &DriftThresholds,
) -> FeatureDrift {
    let counts = (reference.map_or(0, |s| s.count()), current.map_or(0, |s| s.count()));
    let mut answer =
        FeatureDrift { feature: name, reference_count: counts.0, current_count: counts.1, ..Default::default() };
    let metrics = match (reference, current) {
        (Some(r), Some(c)) => drift(r, c),
        _ => Err(CoreError::InvalidArgument("no statistics on one side".into())),
    };
    match metrics {
        Ok(m) => {
            answer.status = status_name(status(&m, thresholds)).into();
            (answer.psi, answer.ks, answer.js_distance, answer.hellinger, answer.tvd) =
                (m.psi, m.ks, m.js_distance, m.hellinger, m.tvd);
        }
        Err(e) => {
            answer.status = "unknown".into();
            answer.error = e.to_string();
        }
    }
    answer
}

fn status_name(s: DriftStatus) -> &'static str {
    match s {
        DriftStatus::Ok => "ok",
        DriftStatus::Warning => "warning",
        DriftStatus::Drift => "drift",
    }
}

impl MonitoringApi {
    async fn statistics(&self, req: GetStatisticsRequest) -> Result<GetStatisticsResponse> {
        let state = self.node.meta.caught_up().await?;
        let project = state.registry.project(&req.project)?;
        let table = table_of(project, &req.feature_set)?;
        let meta = self.node.groups.group(quiver_core::shard_map::META_GROUP)?;
        let window = req.window.unwrap_or(Window { source: Some(window::Source::Offline(TimeRange::default())) });
        let (summaries, days) = window_summaries(meta.data.as_ref(), &table, &window)?;
        let fs = project.feature_set(&table.set, Some(table.version))?;
        let by_name: BTreeMap<_, _> = summaries.columns.into_iter().collect();
        let features = fs
            .features
            .iter()
            .map(|f| {
                feature_statistics(&f.name, &by_name.get(&f.name).cloned().unwrap_or_else(|| FeatureSummary::new(f.ty)))
            })
            .collect();
        Ok(GetStatisticsResponse {
            feature_set: table.set,
            version: table.version,
            rows: summaries.rows,
            days,
            features,
        })
    }

    async fn drift(&self, req: GetDriftRequest) -> Result<GetDriftResponse> {
        let state = self.node.meta.caught_up().await?;
        let project = state.registry.project(&req.project)?;
        let refs = match &req.target {
            Some(get_drift_request::Target::FeatureSet(set)) => vec![format!("{set}:*")],
            Some(get_drift_request::Target::Vector(v)) => project.vector(v)?.features.clone(),
            None => return Err(CoreError::InvalidArgument("name a feature set or a feature vector".into()).into()),
        };
        let (Some(reference), Some(current)) = (&req.reference, &req.current) else {
            return Err(CoreError::InvalidArgument("give both a reference and a current window".into()).into());
        };
        let meta = self.node.groups.group(quiver_core::shard_map::META_GROUP)?;
        drift_report(meta.data.as_ref(), project, &refs, (reference, current))
    }
}

/// Drift of each feature of `refs` between two windows, with each feature set's own
/// thresholds (or the defaults), and the worst status over them.
pub fn drift_report(
    tree: &dyn KvTree,
    project: &Project,
    refs: &[String],
    (reference, current): (&Window, &Window),
) -> Result<GetDriftResponse> {
    let mut windows: BTreeMap<TableRef, (ByFeature, ByFeature)> = BTreeMap::new();
    let mut features = Vec::new();
    for f in project.resolve(refs)? {
        let fs = project.feature_set(&f.set, Some(f.version))?;
        let table = TableRef::new(&project.name, fs);
        if !windows.contains_key(&table) {
            let r = window_summaries(tree, &table, reference)?.0.columns.into_iter().collect();
            let c = window_summaries(tree, &table, current)?.0.columns.into_iter().collect();
            windows.insert(table.clone(), (r, c));
        }
        let thresholds = fs.monitoring.as_ref().map(|m| m.thresholds).unwrap_or_default();
        let (r, c) = &windows[&table];
        let name = f.reference.rsplit(':').next().unwrap_or_default().to_string();
        features.push(feature_drift(format!("{}:{name}", f.set), (r.get(&name), c.get(&name)), &thresholds));
    }
    let rank = |s: &str| ["unknown", "ok", "warning", "drift"].iter().position(|x| *x == s).unwrap_or(0);
    let worst = features.iter().map(|f| rank(&f.status)).max().unwrap_or(0);
    let status = ["unknown", "ok", "warning", "drift"][worst].to_string();
    Ok(GetDriftResponse { features, status })
}

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {
    async fn get_statistics(
        &self,
        request: Request<GetStatisticsRequest>,
    ) -> std::result::Result<Response<GetStatisticsResponse>, Status> {
        observed(&self.node, "GetStatistics", self.statistics(request.into_inner())).await
    }

    async fn get_drift(
        &self,
        request: Request<GetDriftRequest>,
    ) -> std::result::Result<Response<GetDriftResponse>, Status> {
        observed(&self.node, "GetDrift", self.drift(request.into_inner())).await
    }
}
