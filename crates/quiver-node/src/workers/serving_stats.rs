//! Serving logs reach the meta group: each node records the summaries of the values its
//! online reads served (see `serving_log`) every `serving_flush_ms`.

use super::Context;
use quiver_core::time::now_micros;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;

/// Records what this node gathered since the last flush; a record that cannot be written
/// is put back to be tried again.
pub async fn flush(context: Context) -> Result<()> {
    for (table, day, stats) in context.serving.drain() {
        // Node id and time make the record's key unique, so records never overwrite each other.
        let command = MetaCommand::RecordServingStats {
            table: table.clone(),
            day,
            node: context.me,
            seq: now_micros() as u64,
            stats,
        };
        if let Err(e) = context.proposer.write_meta(command.clone()).await {
            if let MetaCommand::RecordServingStats { stats, .. } = command {
                context.serving.restore(table, day, stats);
            }
            return Err(e);
        }
    }
    Ok(())
}
