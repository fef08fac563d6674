//! Statistics: on the metadata leader, every committed offline file is summarized once
//! (per feature: counts, moments, quantile sketch, distinct estimate, top values) and the
//! summaries recorded in the meta group, where queries merge them for any range of days.
//! Files made by compaction hold rows already summarized in their sources, and compaction
//! waits for its sources' statistics, so nothing is counted twice or missed.

use quiver_core::shard_map::META_GROUP;
use quiver_offline::files::{DataFile, read_file};
use quiver_offline::stats::summarize;

use super::Context;
use quiver_core::table::TableRef;
use quiver_store::command::MetaCommand;
use quiver_store::error::{Error, Result};
use quiver_store::meta::stats;
use quiver_store::records::Summaries;
use quiver_store::storage::KvTree;

/// Compaction writes files named `compact-…`; their rows were summarized in their sources.
fn is_compacted(file: &DataFile) -> bool {
    file.path.rsplit('/').next().is_some_and(|name| name.starts_with("compact-"))
}

/// True when the file's rows are in the recorded statistics.
pub fn summarized(tree: &dyn KvTree, table: &TableRef, file: &DataFile) -> Result<bool> {
    Ok(is_compacted(file) || stats::has_file(tree, table, file.day, &file.path)?)
}

pub async fn round(context: Context) -> Result<()> {
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let state = context.meta.latest();
    let meta = context.groups.group(META_GROUP)?;
    for (table, files) in &state.manifest {
        let Ok(fs) =
            state.registry.project(&table.project).and_then(|p| p.feature_set(&table.set, Some(table.version)))
        else {
            continue;
        };
        let columns: Vec<_> = fs.features.iter().map(|f| (f.name.clone(), f.ty)).collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        for file in files {
            // Every pending file in one round, as long as this node still leads.
            if !context.groups.leads(META_GROUP) {
                return Ok(());
            }
            if summarized(meta.data.as_ref(), table, file)? {
                continue;
            }
            let offline = |e: quiver_offline::Error| Error::from(e.into_core());
            let batches = read_file(&context.offline, file, Some(&names), None).await.map_err(offline)?;
            let summaries = summarize(&batches, &columns).map_err(offline)?;
            context.metrics.rows_summarized.inc_by(file.rows);
            let stats = Summaries { rows: file.rows, columns: summaries };
            let path = file.path.clone();
            context
                .proposer
                .write_meta(MetaCommand::RecordFileStats { table: table.clone(), day: file.day, path, stats })
                .await?;
        }
    }
    Ok(())
}
