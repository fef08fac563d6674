//! Automatic splits (`[sharding] split_above_rows`): each shard leader counts its rows now
//! and then, and asks for a split of a shard that holds more than the limit, as the
//! placement rule's operation (an operator's request goes first). The split itself is the
//! one `quiverctl shard split` makes, at the median key.

use quiver_core::shard_map::META_GROUP;
use quiver_core::shard_ops::OpKind;
use tracing::info;

use super::Context;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;
use quiver_store::keyspace::{self, ROW};

pub async fn round(context: Context) -> Result<()> {
    let limit = context.sharding.split_above_rows;
    if limit == 0 {
        return Ok(());
    }
    let state = context.meta.latest();
    for group in context.groups.all() {
        let busy = state.ops.iter().any(|op| op.kind.shards().contains(&group.id));
        if group.id == META_GROUP || busy || !context.groups.leads(group.id) {
            continue;
        }
        // Counting stops past the limit: the cost is bounded by it, whatever the shard holds.
        // Rows a split gave away and not swept yet are not counted.
        let Some(range) = group.range.as_ref() else { continue };
        let owned = |key: &[u8]| keyspace::row_hash(key).is_some_and(|h| range.covers(h));
        let rows = group.data.scan_prefix(&[ROW]).filter(|kv| kv.as_ref().is_ok_and(|(k, _)| owned(k)));
        let rows = rows.take(limit as usize + 1).count() as u64;
        if rows > limit {
            info!(shard = group.id, limit, "shard over its row limit: asking for a split");
            let kind = OpKind::Split { shard: group.id, at: 0, child: 0 };
            context.proposer.write_meta(MetaCommand::StartOp { kind, requested: false }).await?;
        }
    }
    Ok(())
}
