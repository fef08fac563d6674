//! Feature statistics and drift, merged on the node from recorded summaries.

use quiver_core::stats::{DriftReport, DriftTarget, Statistics, StatsWindow};
use quiver_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// Statistics of every feature of a feature set (`name` or `name@version`) over a window:
    /// offline rows by event time, a saved dataset, or values served online.
    pub async fn statistics(&self, project: &str, feature_set: &str, window: &StatsWindow) -> Result<Statistics> {
        let request = v1::GetStatisticsRequest {
            project: project.into(),
            feature_set: feature_set.into(),
            window: Some(quiver_proto::stats_window_to_proto(window)),
        };
        let reply = self.monitoring.clone().get_statistics(request).await.map_err(Error::from)?;
        Ok(quiver_proto::statistics_from_proto(reply.into_inner())?)
    }

    /// Per feature drift metrics (PSI, KS, Jensen–Shannon, Hellinger, TVD) and status between
    /// a reference and a current window, against each feature set's thresholds.
    pub async fn drift(
        &self,
        project: &str,
        target: &DriftTarget,
        reference: &StatsWindow,
        current: &StatsWindow,
    ) -> Result<DriftReport> {
        let request = v1::GetDriftRequest {
            project: project.into(),
            target: Some(quiver_proto::drift_target_to_proto(target)),
            reference: Some(quiver_proto::stats_window_to_proto(reference)),
            current: Some(quiver_proto::stats_window_to_proto(current)),
        };
        let reply = self.monitoring.clone().get_drift(request).await.map_err(Error::from)?;
        Ok(quiver_proto::drift_report_from_proto(reply.into_inner())?)
    }
}
