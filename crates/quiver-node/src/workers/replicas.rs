//! Shard leaders carry out the scheduler's moves: when the meta state assigns a shard
//! other replicas than its Raft voters, its leader adds the new ones as learners, waits
//! for them to catch up, changes the voters (joint consensus), then confirms the new
//! voters in the meta group, after which removed replicas close their copy.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::BasicNode;
use quiver_core::shard_map::META_GROUP;
use tracing::info;

use super::Context;
use crate::command::MetaCommand;
use crate::error::{Error, Result};

/// How long a leader waits for a new replica to catch up before trying again next round.
const CATCH_UP: Duration = Duration::from_secs(30);

pub async fn round(context: Context) -> Result<()> {
    let state = context.meta.latest();
    for group in context.groups.all() {
        if group.id == META_GROUP || group.leader() != Some(context.me) {
            continue;
        }
        let Ok(shard) = state.shard_map.shard(group.id) else { continue };
        let raft_err = |e: String| Error::Raft(format!("shard {} membership: {e}", group.id));
        let membership = group.raft.metrics().borrow().membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let want: BTreeSet<u64> = shard.replicas.iter().copied().collect();
        if voters != want || membership.get_joint_config().len() > 1 {
            for id in want.iter().filter(|id| membership.get_node(id).is_none()) {
                let addr = state
                    .nodes
                    .get(id)
                    .map(|n| n.addr.clone())
                    .ok_or_else(|| raft_err(format!("node {id} unknown")))?;
                info!(shard = group.id, node = id, "adding a replica; waiting for it to catch up");
                tokio::time::timeout(CATCH_UP, group.raft.add_learner(*id, BasicNode { addr }, true))
                    .await
                    .map_err(|_| raft_err(format!("node {id} did not catch up within {CATCH_UP:?}")))?
                    .map_err(|e| raft_err(e.to_string()))?;
            }
            info!(shard = group.id, voters = ?want, "changing the shard's voters");
            group.raft.change_membership(want.clone(), false).await.map_err(|e| raft_err(e.to_string()))?;
        }
        let mut confirmed = shard.voters.clone();
        confirmed.sort_unstable();
        let now: Vec<u64> = want.into_iter().collect();
        if confirmed != now {
            context.proposer.write_meta(MetaCommand::SetVoters { shard: group.id, voters: now }).await?;
        }
    }
    Ok(())
}
