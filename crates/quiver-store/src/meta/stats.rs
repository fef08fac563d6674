//! Feature statistics in the meta group's tree, beside (not inside) the in-memory meta
//! state: summaries are large and read only by statistics queries, so they live under
//! their own keys (see `keyspace`) and are merged on read for any range of days.

use std::collections::BTreeMap;
use std::ops::Bound;

use quiver_core::stats::{DriftReport, FeatureDrift, FeatureSummary};
use quiver_core::table::TableRef;

use crate::codec::load;
use crate::error::Result;
pub use crate::keyspace::Origin;
use crate::keyspace::{self, stats_day, stats_day_start, stats_prefix};
use crate::records::Summaries;
use crate::storage::KvTree;

/// The latest `limit` monitor runs of `table`, newest first.
pub fn monitor_runs(tree: &dyn KvTree, table: &TableRef, limit: usize) -> Result<Vec<(i64, DriftReport)>> {
    let prefix = keyspace::monitor_runs(table);
    let end = [prefix.as_slice(), &[0xff; 9]].concat();
    tree.scan((Bound::Included(prefix.clone()), Bound::Excluded(end)))
        .rev()
        .take(limit)
        .map(|kv| {
            let (key, value) = kv?;
            // Runs recorded before reports had their own encoding still count for the schedule.
            let report = load(&value).unwrap_or_else(|e| {
                DriftReport::new(vec![FeatureDrift::failed("*".into(), format!("unreadable report: {e}"))])
            });
            Ok((keyspace::monitor_run_time(&key, prefix.len()).unwrap_or_default(), report))
        })
        .collect()
}

/// Merges every record of `table` from `origin` with day in `[from_day, to_day)`; also
/// answers the number of days that had any.
pub fn merged(
    tree: &dyn KvTree,
    table: &TableRef,
    origin: Origin,
    (from_day, to_day): (i64, i64),
) -> Result<(Summaries, u32)> {
    let prefix = stats_prefix(origin, table);
    let (start, end) = (stats_day_start(&prefix, from_day), stats_day_start(&prefix, to_day));
    let mut merged: BTreeMap<String, FeatureSummary> = BTreeMap::new();
    let mut rows = 0;
    let mut days = std::collections::BTreeSet::new();
    for kv in tree.scan((Bound::Included(start), Bound::Excluded(end))) {
        let (key, value) = kv?;
        days.insert(stats_day(&key, prefix.len()));
        let record: Summaries = load(&value)?;
        rows += record.rows;
        merge_into(&mut merged, record.columns)?;
    }
    Ok((Summaries { rows, columns: merged.into_iter().collect() }, days.len() as u32))
}

/// The days of `table` that have records from `origin`, in order.
pub fn days(tree: &dyn KvTree, table: &TableRef, origin: Origin) -> Result<Vec<i64>> {
    let prefix = stats_prefix(origin, table);
    let mut days = Vec::new();
    for kv in tree.scan_prefix(&prefix) {
        let (key, _) = kv?;
        let day = stats_day(&key, prefix.len()).unwrap_or_default();
        if days.last() != Some(&day) {
            days.push(day);
        }
    }
    Ok(days)
}

pub fn merge_into(into: &mut BTreeMap<String, FeatureSummary>, columns: Vec<(String, FeatureSummary)>) -> Result<()> {
    for (name, summary) in columns {
        match into.get_mut(&name) {
            // A feature whose type changed within a version cannot happen; a failed merge
            // is an internal error rather than a silently wrong answer.
            Some(existing) => existing.merge(&summary)?,
            None => {
                into.insert(name, summary);
            }
        }
    }
    Ok(())
}

pub fn dataset(tree: &dyn KvTree, project: &str, name: &str) -> Result<Option<Summaries>> {
    tree.get(&keyspace::dataset_stats(project, name))?.map(|b| load(&b)).transpose()
}

pub fn has_file(tree: &dyn KvTree, table: &TableRef, day: i64, path: &str) -> Result<bool> {
    Ok(tree.get(&keyspace::file_stats(table, day, path))?.is_some())
}
