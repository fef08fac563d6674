//! Export: rows written online reach the offline store. On each shard this node leads:
//! read the oldest queued rows → write Parquet files named for this attempt → commit them to
//! the manifest together with the shard's export mark (the point of no return) →
//! `ExportAck` through Raft trims the queue through the committed mark.
//!
//! A crash anywhere loses nothing (the queue is trimmed only after the commit) and
//! duplicates nothing (a range at or below the mark is never committed again; a commit whose
//! ack was lost is acknowledged on the next round without writing anything). Two leaders of
//! one shard may export at once for a while (a deposed one has not noticed yet): each
//! attempt writes files of its own names, so the loser's never replace the winner's, and the
//! loser trims nothing (its range may reach past what the winner committed).

use std::collections::BTreeMap;

use quiver_core::Value;
use quiver_core::key::decode_entity_key;
use quiver_core::row::WriteSeq;
use quiver_offline::convert::values_to_array;
use quiver_offline::files::{data_path, write_file};
use quiver_offline::ingest::{SourceRows, day_batches};
use quiver_offline::schema::columns;
use tracing::{debug, info};

use super::Context;
use crate::failpoint;
use crate::groups::Group;
use crate::shard::export_order::{self, ExportWait};
use crate::shard::{QueuedRow, read_queue};
use quiver_core::table::TableRef;
use quiver_store::command::Command;
use quiver_store::command::ShardCommand;
use quiver_store::error::{Error, Result};
use quiver_store::meta::ExportRange;

pub async fn round(context: Context) -> Result<()> {
    let batch_rows = context.config.export_batch_rows;
    for group in context.groups.all() {
        if group.id != quiver_core::shard_map::META_GROUP && context.groups.leads(group.id) {
            while export_once(&context, &group, batch_rows).await? >= batch_rows {}
        }
    }
    Ok(())
}

/// Exports the oldest queued rows of one shard, `limit` or a few more to end an entry;
/// returns how many it handled.
pub async fn export_once(context: &Context, group: &Group, limit: usize) -> Result<usize> {
    let mut queue = read_queue(group.data.as_ref(), limit)?;
    if queue.is_empty() {
        return Ok(0);
    }
    // The marks as the metadata leader knows them: a commit made by a previous leader of this
    // shard must be seen here, or its files would be written again under the same names.
    let state = context.meta.caught_up().await?;
    let mark = state.export_marks.get(&group.id).copied();
    // Rows of keys this shard took over may wait for another shard's older rows of them.
    let waits = export_order::waits(group.data.as_ref())?;
    let met = |w: &ExportWait| {
        state.shard_map.shard(w.shard).is_err() || state.export_marks.get(&w.shard).is_some_and(|m| *m >= w.through)
    };
    let seqs: Vec<WriteSeq> = queue.iter().map(|(seq, _)| *seq).collect();
    queue.truncate(export_order::exportable(&seqs, &waits, met));
    let (Some((from, _)), Some((through, _))) = (queue.first(), queue.last()) else {
        debug!(shard = group.id, "exports wait for older rows of the same keys in another shard");
        return Ok(0);
    };
    let (from, through) = (*from, *through);
    if let Some(mark) = mark.filter(|m| *m >= from) {
        // Committed before, but the acknowledgement was lost: trim without writing again.
        ack(context, group.id, mark).await?;
        return Ok(queue.iter().filter(|(seq, _)| *seq <= mark).count());
    }
    failpoint::delay("export").await;
    let mut by_table: BTreeMap<TableRef, Vec<QueuedRow>> = BTreeMap::new();
    for (_, queued) in queue.iter().cloned() {
        by_table.entry(queued.table.clone()).or_default().push(queued);
    }
    // Named for the cluster too: a cluster restored from a backup continues its source's log
    // positions, and must not write its files over the source's in a shared offline store.
    let cluster = context.proposer.cluster_id().await?;
    let first_seq = context.proposer.reserve_seq(queue.len() as u64).await?;
    let state = context.meta.latest();
    let mut files = Vec::new();
    let mut next_seq = first_seq;
    for (table, rows) in &by_table {
        let project = state.registry.project(&table.project)?;
        let fs = project.feature_set(&table.set, Some(table.version))?;
        let entity = project.entity(&fs.entity)?;
        let source = source_rows(entity, fs, rows)?;
        // Named for the attempt (its first sequence number, reserved for it alone), not only
        // for the range: another attempt may hold fewer or more rows from the same start.
        let name = format!("export-{}-s{}-{}-{}-q{first_seq}", &cluster[..12], group.id, from.log_index, from.pos);
        for (day, batch) in day_batches(&source, entity, fs, next_seq).map_err(|e| Error::from(e.into_core()))? {
            let path = data_path(&table.project, &table.set, table.version, day, &name);
            let file = write_file(&context.offline, &path, &batch, entity.join_keys.len())
                .await
                .map_err(|e| Error::from(e.into_core()))?;
            files.push((table.clone(), file));
        }
        next_seq += rows.len() as u64;
    }
    failpoint::hit("export-after-write");
    let Some(first_table) = by_table.keys().next().cloned() else { return Ok(0) };
    let source = (first_table, format!("export:s{}:{}-{}", group.id, from.log_index, from.pos));
    let range = ExportRange { shard: group.id, from, through };
    if !context.proposer.commit_files(files, source, Some(range)).await? {
        // Committed by another leader of this shard, or by this attempt whose answer was
        // lost: the next round acknowledges the mark that was committed, whichever it is.
        info!(shard = group.id, from = ?from, "export range committed before; the queue is trimmed through the mark");
        return Ok(0);
    }
    failpoint::hit("export-after-commit");
    ack(context, group.id, through).await?;
    failpoint::hit("export-after-ack");
    Ok(queue.len())
}

async fn ack(context: &Context, shard: u64, through: WriteSeq) -> Result<()> {
    context.proposer.propose(shard, Command::Shard(ShardCommand::ExportAck { through })).await.map(drop)
}

/// Queued rows of one table as columns in the feature set's order.
fn source_rows(
    entity: &quiver_core::registry::Entity,
    fs: &quiver_core::registry::FeatureSet,
    rows: &[QueuedRow],
) -> Result<SourceRows> {
    let cols = columns(entity, fs);
    let mut values: Vec<Vec<Value>> = vec![Vec::with_capacity(rows.len()); cols.len()];
    for queued in rows {
        let key = decode_entity_key(&queued.row.key, &entity.join_keys)?;
        let mut row = key.into_iter().chain([Value::Timestamp(queued.row.event_ts)]);
        for column in values.iter_mut().take(entity.join_keys.len() + 1) {
            column.push(row.next().unwrap_or_default());
        }
        for (i, column) in values.iter_mut().skip(entity.join_keys.len() + 1).enumerate() {
            column.push(queued.row.values.get(i).cloned().unwrap_or_default());
        }
    }
    let columns = values.iter().zip(&cols).map(|(v, (_, ty, _))| values_to_array(v, *ty)).collect();
    Ok(SourceRows { columns, rows: rows.len(), first_row: 0 })
}
