//! Monitors: on the metadata leader, each feature set with a `monitoring` reference gets
//! its latest `window` of offline rows compared with the reference every `every`; the
//! drift report is recorded in the meta group (newest shown by the dashboard). When a run
//! is due is read from the last recorded run, so a new metadata leader keeps the schedule.

use quiver_core::shard_map::META_GROUP;
use quiver_core::spec::MonitorReference;
use quiver_proto::Message;
use quiver_proto::v1::{TimeRange, Window, window};

use super::Context;
use crate::api::monitoring::drift_report;
use crate::command::MetaCommand;
use crate::error::Result;
use crate::meta::stats::monitor_runs;
use crate::raft::now_micros;
use quiver_core::table::TableRef;

pub async fn round(context: Context) -> Result<()> {
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let state = context.meta.latest();
    let tree = context.groups.group(META_GROUP)?.data.clone();
    let now = now_micros();
    for project in state.registry.projects.values() {
        for fs in project.feature_sets.values().filter_map(|versions| versions.last()) {
            let Some(monitoring) = &fs.monitoring else { continue };
            let Some(reference) = monitoring.reference()? else { continue };
            let table = TableRef::new(&project.name, fs);
            let every = monitoring.every_secs()? as i64 * 1_000_000;
            if monitor_runs(tree.as_ref(), &table, 1)?.first().is_some_and(|(at, _)| now - at < every) {
                continue;
            }
            let reference = Window {
                source: Some(match reference {
                    MonitorReference::Dataset(name) => window::Source::Dataset(name),
                    MonitorReference::Range(from, to) => window::Source::Offline(TimeRange {
                        from_micros: from.unwrap_or_default(),
                        to_micros: to.unwrap_or_default(),
                    }),
                }),
            };
            let since = now - monitoring.window_secs()? as i64 * 1_000_000;
            let current =
                Window { source: Some(window::Source::Offline(TimeRange { from_micros: since, to_micros: now })) };
            let refs = [format!("{}@{}:*", fs.name, fs.version)];
            // A reference that cannot be read (a dataset not saved yet) is a recorded outcome too.
            let report = match drift_report(tree.as_ref(), project, &refs, (&reference, &current)) {
                Ok(report) => report,
                Err(e) => quiver_proto::v1::GetDriftResponse {
                    status: "unknown".into(),
                    features: vec![quiver_proto::v1::FeatureDrift {
                        feature: format!("{}:*", fs.name),
                        status: "unknown".into(),
                        error: e.to_string(),
                        ..Default::default()
                    }],
                },
            };
            tracing::info!(set = %fs.name, status = %report.status, "monitor ran");
            context
                .proposer
                .write_meta(MetaCommand::RecordMonitorRun { table, at: now, report: report.encode_to_vec() })
                .await?;
        }
    }
    Ok(())
}
