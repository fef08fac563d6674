//! Statistics and drift over windows of rows: the summaries recorded in the meta group (per
//! offline file, per saved dataset, per sample of served values) merged for the window
//! asked for, never recomputed from raw data. Used by the monitoring API and the monitors
//! worker alike.

use std::collections::BTreeMap;

use quiver_core::Error as CoreError;
use quiver_core::registry::Project;
use quiver_core::stats::{DriftReport, FeatureDrift, FeatureSummary, StatsWindow};
use quiver_core::table::TableRef;
use quiver_core::time::day_range;

use quiver_store::error::Result;
use quiver_store::meta::stats::{self, Origin};
use quiver_store::records::Summaries;
use quiver_store::storage::KvTree;

/// Summaries by feature name.
type ByFeature = BTreeMap<String, FeatureSummary>;

/// Summaries of one feature set version's features over `window`, with the number of days
/// that had any.
pub fn window_summaries(tree: &dyn KvTree, table: &TableRef, window: &StatsWindow) -> Result<(Summaries, u32)> {
    match window {
        StatsWindow::Offline { from, to } => stats::merged(tree, table, Origin::Offline, day_range(*from, *to)),
        StatsWindow::Serving { from, to } => stats::merged(tree, table, Origin::Serving, day_range(*from, *to)),
        StatsWindow::Dataset(name) => {
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
    }
}

/// Drift of each feature of `refs` between two windows, with each feature set's own
/// thresholds (or the defaults), and the worst status over them.
pub fn drift_report(
    tree: &dyn KvTree,
    project: &Project,
    refs: &[String],
    (reference, current): (&StatsWindow, &StatsWindow),
) -> Result<DriftReport> {
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
        features.push(FeatureDrift::compare(format!("{}:{name}", f.set), (r.get(&name), c.get(&name)), &thresholds));
    }
    Ok(DriftReport::new(features))
}
