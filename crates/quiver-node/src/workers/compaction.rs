//! Compaction, run by the metadata leader: when a feature set version has many files for
//! one day, merge them into one file sorted by (entity-key hash, event time, sequence), its
//! row groups' key-hash ranges in its footer (`quiver_offline::sorted`, so the parts of a
//! split training set read only their own), and swap it in with one manifest commit. Replaced files are deleted after a grace period.
//!
//! Rows, sequence numbers and values are carried over unchanged, so retrieval answers the
//! same before and after. A crash before the commit leaves an unlisted file (rewritten
//! under the same name next time); after it, only garbage waiting for its grace period.

use arrow_array::RecordBatch;
use quiver_core::shard_map::META_GROUP;
use quiver_offline::files::{DataFile, ROWS_PER_GROUP, data_path, read_file};
use quiver_offline::sorted::{sort_by_key_hash, write_sorted_file};

use super::Context;
use crate::backup::pins::Holders;
use crate::failpoint;
use quiver_core::table::TableRef;
use quiver_core::time::now_micros;
use quiver_store::command::MetaCommand;
use quiver_store::error::{Error, Result};

pub async fn round(context: Context) -> Result<()> {
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let state = context.meta.latest();
    let min_files = context.config.compaction_min_files;
    let meta = context.groups.group(META_GROUP)?;
    for (table, files) in &state.manifest {
        let mut days: std::collections::BTreeMap<i64, Vec<&DataFile>> = std::collections::BTreeMap::new();
        for f in files {
            // A file joins a compaction only once its statistics are recorded: statistics
            // are kept per source file, and a compacted file is never summarized again.
            if crate::workers::statistics::summarized(meta.data.as_ref(), table, f)? {
                days.entry(f.day).or_default().push(f);
            }
        }
        for (day, group) in days.into_iter().filter(|(_, g)| g.len() >= min_files) {
            compact(&context, table, day, &group).await?;
        }
    }
    collect_garbage(&context).await
}

async fn compact(context: &Context, table: &TableRef, day: i64, files: &[&DataFile]) -> Result<()> {
    let state = context.meta.latest();
    let project = state.registry.project(&table.project)?;
    let fs = project.feature_set(&table.set, Some(table.version))?;
    let entity = project.entity(&fs.entity)?;
    let mut batches = Vec::new();
    for file in files {
        batches.extend(read_file(&context.offline, file, None, None).await?);
    }
    let Some(schema) = batches.first().map(RecordBatch::schema) else { return Ok(()) };
    let merged = arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| Error::Storage(e.to_string()))?;
    let (sorted, hashes) = sort_by_key_hash(&merged, entity, fs)?;
    let (min_seq, max_seq) = (files.iter().map(|f| f.min_seq).min(), files.iter().map(|f| f.max_seq).max());
    // Named for this attempt too (a sequence number reserved for it alone): a later
    // compaction of the same seq range (this file and a late export whose numbers fall in
    // it) must not write over this file, nor name its output as one of its inputs.
    let attempt = context.proposer.reserve_seq(1).await?;
    let name = format!("compact-{}-{}-q{attempt}", min_seq.unwrap_or_default(), max_seq.unwrap_or_default());
    let path = data_path(&table.project, &table.set, table.version, day, &name);
    let keys = entity.join_keys.len();
    let file = write_sorted_file(&context.offline, &path, (&sorted, &hashes), keys, ROWS_PER_GROUP).await?;
    failpoint::hit("compaction-after-write");
    let remove = files.iter().map(|f| f.path.clone()).collect();
    context.proposer.write_meta(MetaCommand::ReplaceFiles { table: table.clone(), remove, add: file }).await?;
    failpoint::hit("compaction-after-commit");
    tracing::info!(table = ?table, day, files = files.len(), rows = sorted.num_rows(), "compacted");
    Ok(())
}

/// Deletes replaced files whose grace period is over and that no backup, existing or under
/// way, may list, then forgets them.
async fn collect_garbage(context: &Context) -> Result<()> {
    let grace = i64::try_from(context.config.compaction_grace_ms).unwrap_or(i64::MAX).saturating_mul(1000);
    let cutoff = now_micros().saturating_sub(grace);
    let meta = context.groups.group(META_GROUP)?;
    let mut holders = Holders::new(meta.data.as_ref(), &context.backups.s3, now_micros())?;
    let mut due = Vec::new();
    for (path, at) in context.meta.latest().garbage.iter() {
        if *at > cutoff || holders.kept_for_a_backup(*at) {
            continue;
        }
        let (held, gone) = holders.of(path).await?;
        for backup in gone {
            context.proposer.write_meta(MetaCommand::UnpinFiles { backup, paths: vec![path.clone()] }).await?;
        }
        if !held {
            due.push(path.clone());
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    for path in &due {
        context.offline.delete(path).await?;
    }
    context.proposer.write_meta(MetaCommand::ForgetGarbage { paths: due }).await.map(drop)
}
