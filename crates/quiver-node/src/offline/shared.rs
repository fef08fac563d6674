//! One offline store per cluster. A member that kept its own (`<data-dir>/offline`, the
//! default, on every node of a cluster) would fail every training set on files another
//! node exported, so it stops instead, saying what to pass.
//!
//! The metadata leader writes `clusters/<cluster id>` into its store, then records in the
//! meta group that it did (`MarkOfflineStore`). Every member, once its meta state holds
//! that record for its cluster, looks for the object in its own store: there, it goes on;
//! not there, it stops with the reason. A cluster whose leader has not marked its store yet
//! (one started before this check, or restored with a new id) is marked by its next round.

use std::time::Duration;

use quiver_offline::store::OfflineStore;
use tracing::warn;

use crate::halt::Halt;
use crate::proposer::Proposer;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;
use quiver_store::meta::{cluster_id, offline_mark};
use quiver_store::storage::KvTree;

/// How often a member looks until its store is known to be the cluster's.
const LOOK_EVERY: Duration = Duration::from_secs(1);

fn mark_path(cluster: &str) -> String {
    format!("clusters/{cluster}")
}

/// On the metadata leader: marks the store as cluster `cluster`'s, unless recorded already.
pub async fn mark(proposer: &Proposer, meta: &dyn KvTree, store: &OfflineStore, cluster: &str) -> Result<()> {
    if offline_mark(meta)?.as_deref() == Some(cluster) {
        return Ok(());
    }
    let note = format!("the offline store of Quiver cluster {cluster}: every member of it reads and writes here\n");
    store.put(&mark_path(cluster), note.into()).await?;
    proposer.write_meta(MetaCommand::MarkOfflineStore { cluster: cluster.to_string() }).await?;
    Ok(())
}

/// On every member: waits until the meta state records the cluster's mark, then stops the
/// node (`halt`) when its own store does not hold it.
pub async fn check(meta: std::sync::Arc<dyn KvTree>, store: OfflineStore, halt: Halt) {
    loop {
        match missing_mark(meta.as_ref(), &store).await {
            Ok(Some(false)) => return,
            Ok(Some(true)) => return halt.set(not_shared(&store)),
            Ok(None) => {}
            Err(e) => warn!("checking that the offline store is the cluster's: {e}"),
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Whether the recorded mark is missing from `store`; `None` while nothing is recorded.
async fn missing_mark(meta: &dyn KvTree, store: &OfflineStore) -> Result<Option<bool>> {
    let (Some(cluster), Some(marked)) = (cluster_id(meta)?, offline_mark(meta)?) else { return Ok(None) };
    if marked != cluster {
        return Ok(None);
    }
    let found = store.exists(&mark_path(&cluster)).await?;
    Ok(Some(!found))
}

fn not_shared(store: &OfflineStore) -> String {
    format!(
        "this node's offline store ({}) is not its cluster's: the metadata leader's holds the cluster's mark and \
         this one does not. Every member must use the same offline store: start each with the same \
         --offline-store (a directory all of them see, or s3://bucket/prefix)",
        store.location()
    )
}
