//! Statistics and drift queries (see `monitoring`). The node first catches up with the
//! metadata leader, so what it answers includes every summary recorded so far.

use std::collections::BTreeMap;
use std::sync::Arc;

use quiver_core::Error as CoreError;
use quiver_core::online::FeatureSelection;
use quiver_core::registry::Project;
use quiver_core::shard_map::META_GROUP;
use quiver_core::stats::{FeatureStatistics, FeatureSummary, Statistics, StatsWindow};
use quiver_core::table::TableRef;
use quiver_proto::v1::monitoring_service_server::MonitoringService;
use quiver_proto::v1::{
    GetDriftRequest, GetDriftResponse, GetStatisticsRequest, GetStatisticsResponse, get_drift_request,
};
use quiver_proto::{drift_report_to_proto, statistics_to_proto, stats_window_from_proto};
use tonic::{Request, Response, Status};

use super::observed::{admit, observed};
use crate::auth::Call;
use crate::monitoring::{drift_report, window_summaries};
use crate::node::Node;
use quiver_core::access::{Need, Role, personal_in};
use quiver_store::error::Result;

pub struct MonitoringApi {
    pub node: Arc<Node>,
}

fn table_of(project: &Project, set_ref: &str) -> Result<TableRef> {
    let fs = project.feature_set_by_ref(set_ref)?;
    Ok(TableRef::new(&project.name, fs))
}

impl MonitoringApi {
    async fn statistics(&self, call: &Call, req: GetStatisticsRequest) -> Result<GetStatisticsResponse> {
        call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "reading statistics" })?;
        let state = self.node.meta.caught_up().await?;
        let project = state.registry.project(&req.project)?;
        let table = table_of(project, &req.feature_set)?;
        let meta = self.node.groups.group(META_GROUP)?;
        let window = match &req.window {
            Some(w) => stats_window_from_proto(w)?,
            None => StatsWindow::Offline { from: None, to: None },
        };
        let (summaries, days) = window_summaries(meta.data.as_ref(), &table, &window)?;
        let fs = project.feature_set(&table.set, Some(table.version))?;
        // Top values and histograms show personal values.
        call.caller.check_pii_set(&project.name, fs)?;
        call.record_personal_read(&self.node.audit, self.node.id, || Ok(personal_in(fs))).await?;
        let by_name: BTreeMap<_, _> = summaries.columns.into_iter().collect();
        let features = fs
            .features
            .iter()
            .map(|f| match by_name.get(&f.name) {
                Some(summary) => FeatureStatistics::from_summary(&f.name, summary),
                None => FeatureStatistics::from_summary(&f.name, &FeatureSummary::new(f.ty)),
            })
            .collect();
        let statistics =
            Statistics { feature_set: table.set, version: table.version, rows: summaries.rows, days, features };
        Ok(statistics_to_proto(&statistics))
    }

    async fn drift(&self, call: &Call, req: GetDriftRequest) -> Result<GetDriftResponse> {
        call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "reading drift" })?;
        let state = self.node.meta.caught_up().await?;
        let project = state.registry.project(&req.project)?;
        let selection = match &req.target {
            Some(get_drift_request::Target::FeatureSet(set)) => FeatureSelection::Refs(vec![format!("{set}:*")]),
            Some(get_drift_request::Target::Vector(v)) => FeatureSelection::Vector(v.clone()),
            None => return Err(CoreError::InvalidArgument("name a feature set or a feature vector".into()).into()),
        };
        let refs = project.feature_refs(&selection)?;
        // Drift of a personal feature is derived from its values: it needs the grant too.
        call.caller.check_pii(project, &project.resolve(&refs)?)?;
        let (Some(reference), Some(current)) = (&req.reference, &req.current) else {
            return Err(CoreError::InvalidArgument("give both a reference and a current window".into()).into());
        };
        let windows = (&stats_window_from_proto(reference)?, &stats_window_from_proto(current)?);
        let meta = self.node.groups.group(META_GROUP)?;
        Ok(drift_report_to_proto(&drift_report(meta.data.as_ref(), project, &refs, windows)?))
    }
}

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {
    async fn get_statistics(
        &self,
        request: Request<GetStatisticsRequest>,
    ) -> std::result::Result<Response<GetStatisticsResponse>, Status> {
        let call = admit(&self.node, "GetStatistics", &request)?;
        observed(&self.node, &call, self.statistics(&call, request.into_inner())).await
    }

    async fn get_drift(
        &self,
        request: Request<GetDriftRequest>,
    ) -> std::result::Result<Response<GetDriftResponse>, Status> {
        let call = admit(&self.node, "GetDrift", &request)?;
        observed(&self.node, &call, self.drift(&call, request.into_inner())).await
    }
}
