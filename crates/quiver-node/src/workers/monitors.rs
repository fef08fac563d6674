//! Monitors: on the metadata leader, each feature set with a `monitoring` reference gets
//! its latest `window` of offline rows compared with the reference every `every`; the
//! drift report is recorded in the meta group (newest shown by the dashboard). When a run
//! is due is read from the last recorded run, so a new metadata leader keeps the schedule.

use quiver_core::shard_map::META_GROUP;
use quiver_core::spec::MonitorReference;
use quiver_core::stats::{DriftReport, FeatureDrift, StatsWindow};
use quiver_core::table::TableRef;
use quiver_core::time::MICROS_PER_SEC;

use super::Context;
use crate::monitoring::drift_report;
use quiver_core::time::now_micros;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;
use quiver_store::meta::stats::monitor_runs;

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
            let every = monitoring.every_secs()? as i64 * MICROS_PER_SEC;
            if monitor_runs(tree.as_ref(), &table, 1)?.first().is_some_and(|(at, _)| now - at < every) {
                continue;
            }
            let reference = match reference {
                MonitorReference::Dataset(name) => StatsWindow::Dataset(name),
                MonitorReference::Range(from, to) => StatsWindow::Offline { from, to },
            };
            let since = now - monitoring.window_secs()? as i64 * MICROS_PER_SEC;
            let current = StatsWindow::Offline { from: Some(since), to: Some(now) };
            let refs = [format!("{}@{}:*", fs.name, fs.version)];
            // A reference that cannot be read (a dataset not saved yet) is a recorded outcome too.
            let report = drift_report(tree.as_ref(), project, &refs, (&reference, &current)).unwrap_or_else(|e| {
                DriftReport::new(vec![FeatureDrift::failed(format!("{}:*", fs.name), e.to_string())])
            });
            tracing::info!(set = %fs.name, status = report.status.name(), "monitor ran");
            context.proposer.write_meta(MetaCommand::RecordMonitorRun { table, at: now, report }).await?;
        }
    }
    Ok(())
}
