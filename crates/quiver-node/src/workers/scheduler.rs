//! The metadata leader's scheduler: every node follows the meta log, up to three active
//! nodes vote in it, shards get their replicas on active nodes in balance (one move at a
//! time, carried out by the shard's leader, see `replicas`), and a drained node leaves once
//! it hosts nothing. Decisions go through the meta group; nothing here is remembered
//! between rounds, so a new metadata leader carries on where the old one stopped.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, ChangeMembers};
use quiver_core::shard_map::{META_GROUP, REPLICAS, Shard};
use tracing::info;

use super::Context;
use crate::command::MetaCommand;
use crate::error::{Error, Result};
use crate::groups::Group;
use crate::meta::MetaState;

/// A learner this many entries or fewer behind the leader is caught up enough to vote.
const CAUGHT_UP_ENTRIES: u64 = 100;

pub async fn round(context: Context) -> Result<()> {
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let state = context.meta.latest();
    if state.shard_map.shards.is_empty() {
        return Ok(());
    }
    let meta = context.groups.group(META_GROUP)?;
    follow_and_vote(&meta, &state).await?;
    if !state.shard_map.shards.iter().any(Shard::moving)
        && let Some(step) = state.shard_map.next_move(&state.active_nodes())
    {
        let conf_ver = state.shard_map.shard(step.shard)?.epoch.conf_ver;
        info!(shard = step.shard, replicas = ?step.replicas, "placement: moving a replica");
        context
            .proposer
            .write_meta(MetaCommand::SetReplicas { shard: step.shard, replicas: step.replicas, conf_ver })
            .await?;
    }
    forget_drained(&context, &meta, &state).await
}

fn raft_err(e: impl std::fmt::Display) -> Error {
    Error::Raft(format!("meta membership: {e}"))
}

/// Adds every cluster node to the meta group as a learner, and keeps its voters at up to
/// three active nodes, promoting only learners that have caught up.
async fn follow_and_vote(meta: &Group, state: &MetaState) -> Result<()> {
    let metrics = meta.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    for n in state.nodes.values().filter(|n| !members.contains(&n.id)) {
        info!(node = n.id, addr = %n.addr, "adding node to the meta group as a learner");
        meta.raft.add_learner(n.id, BasicNode { addr: n.addr.clone() }, false).await.map_err(raft_err)?;
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or_default();
    let matched: BTreeMap<u64, u64> =
        metrics.replication.iter().flatten().map(|(id, log)| (*id, log.map_or(0, |l| l.index))).collect();
    let caught_up = |id: &u64| voters.contains(id) || matched.get(id).is_some_and(|m| m + CAUGHT_UP_ENTRIES >= last);
    let active = state.active_nodes();
    let mut want: BTreeSet<u64> = voters.iter().filter(|v| active.contains(v)).copied().collect();
    for id in active.iter().filter(|id| members.contains(id) && caught_up(id)) {
        if want.len() >= REPLICAS {
            break;
        }
        want.insert(*id);
    }
    if !want.is_empty() && (want != voters || membership.get_joint_config().len() > 1) {
        info!(voters = ?want, "changing the meta group's voters");
        // Voters that leave stay learners: a drained node follows the meta log until it is forgotten.
        meta.raft.change_membership(want, true).await.map_err(raft_err)?;
    }
    Ok(())
}

/// A draining node that hosts no replica and no longer votes leaves the meta group and
/// the node list.
async fn forget_drained(context: &Context, meta: &Group, state: &MetaState) -> Result<()> {
    let membership = meta.raft.metrics().borrow().membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    for n in state.nodes.values().filter(|n| n.draining) {
        if voters.contains(&n.id) || state.shard_map.shards.iter().any(|s| s.hosted_by(n.id)) {
            continue;
        }
        if membership.get_node(&n.id).is_some() {
            let gone = ChangeMembers::RemoveNodes(BTreeSet::from([n.id]));
            meta.raft.change_membership(gone, false).await.map_err(raft_err)?;
        }
        context.proposer.write_meta(MetaCommand::ForgetNode { id: n.id }).await?;
        info!(node = n.id, "drained node removed from the cluster");
    }
    Ok(())
}
