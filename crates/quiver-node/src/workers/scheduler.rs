//! The metadata leader's scheduler: every node follows the meta log, up to three active
//! nodes vote in it, shard operations in flight are followed to their end, shards get their
//! replicas on active nodes in balance and their leaders spread (one step at a time, by the
//! rules of `quiver_core::placement`, carried out by the shard's leader, see `replicas`),
//! and a drained node leaves once it hosts nothing. Decisions go through the meta group;
//! nothing here is remembered between rounds, so a new metadata leader carries on where
//! the old one stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use quiver_core::placement::{REPLICAS, next_leader_transfer, next_move};
use quiver_core::shard_map::{META_GROUP, Shard};
use quiver_core::shard_ops::{OpKind, Outcome, ShardOp};
use tracing::{info, warn};

use super::Context;
use crate::groups::Group;
use crate::raft::network::PeerPool;
use quiver_core::time::now_micros;
use quiver_store::command::MetaCommand;
use quiver_store::config::ShardingConfig;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace;
use quiver_store::meta::MetaState;
use quiver_store::storage::KvTree;

/// A learner this many entries or fewer behind the leader is caught up enough to vote.
const CAUGHT_UP_ENTRIES: u64 = 100;
/// A leadership transfer not done by then has failed; the old leader goes on leading.
const TRANSFER_DEADLINE_MICROS: i64 = 30_000_000;
/// A replica move whose target has been silent this long (or `replace_dead_after`, if
/// shorter) is rolled back.
const MOVE_GIVE_UP: Duration = Duration::from_secs(60);
/// An operator's replica move not done by then is abandoned and rolled back.
const MOVE_DEADLINE_MICROS: i64 = 600_000_000;

pub async fn round(context: Context) -> Result<()> {
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let state = context.meta.latest();
    if state.shard_map.shards.is_empty() {
        return Ok(());
    }
    let meta = context.groups.group(META_GROUP)?;
    let cluster = context.proposer.cluster_id().await?;
    // Placement goes on whatever the offline store answers.
    if let Err(e) =
        crate::offline::shared::mark(&context.proposer, meta.data.as_ref(), &context.offline, &cluster).await
    {
        warn!("marking the offline store as the cluster's: {e}");
    }
    let nodes = Nodes::now(&context, &meta, &state)?;
    follow_and_vote(&meta, &state, &nodes).await?;
    for op in &state.ops {
        if let Some(outcome) = outcome(op, &state, &nodes) {
            info!(op = op.id, kind = %op.kind, ?outcome, "shard operation ended");
            context.proposer.write_meta(MetaCommand::FinishOp { id: op.id, outcome }).await?;
        } else if let Some(why) = overdue(op, &context.sharding, meta.data.as_ref())? {
            warn!(op = op.id, kind = %op.kind, "{why}");
            context.proposer.write_meta(MetaCommand::AbandonOp { id: op.id, why }).await?;
        }
    }
    place(&context, &state, &nodes).await?;
    forget_drained(&context, &meta, &state).await
}

/// The nodes placement works with this round.
struct Nodes {
    /// Active nodes not taken for dead: replicas are spread over these.
    placeable: Vec<u64>,
    /// Active nodes that answer now and keep up: replicas and leaderships go only to these.
    live: Vec<u64>,
    /// Nodes silent for longer than a move waits for its target.
    gone: Vec<u64>,
}

impl Nodes {
    fn now(context: &Context, meta: &Group, state: &MetaState) -> Result<Nodes> {
        let active = state.active_nodes();
        let dead_after = context.sharding.replace_dead_after()?;
        let silent = |id: &u64| *id != context.me && context.pool.silent_for(*id) > dead_after;
        let placeable = active.iter().copied().filter(|id| !silent(id)).collect();
        let live = keeping_up(meta, &context.pool, &active);
        let give_up = dead_after.min(MOVE_GIVE_UP);
        let gone = state.nodes.keys().copied().filter(|id| *id != context.me && context.pool.silent_for(*id) > give_up);
        Ok(Nodes { placeable, live, gone: gone.collect() })
    }
}

/// How operation `op` ended, or `None` while it is under way.
fn outcome(op: &ShardOp, state: &MetaState, nodes: &Nodes) -> Option<Outcome> {
    let shard = |id| state.shard_map.shard(id).ok();
    match op.kind {
        OpKind::TransferLeader { shard: id, to } => match shard(id) {
            None => Some(Outcome::Failed(format!("shard {id} no longer exists"))),
            Some(s) if s.leader == Some(to) => Some(Outcome::Done),
            Some(_) if now_micros() - op.started_at > TRANSFER_DEADLINE_MICROS => Some(Outcome::Failed(format!(
                "node {to} did not take over within {} s; the old leader goes on leading",
                TRANSFER_DEADLINE_MICROS / 1_000_000
            ))),
            Some(_) => None,
        },
        OpKind::MoveReplica { shard: id, to, .. } => match shard(id) {
            None => Some(Outcome::Failed(format!("shard {id} no longer exists"))),
            Some(s) if s.moving() => None,
            Some(s) if s.voters.contains(&to) => Some(Outcome::Done),
            Some(s) => Some(Outcome::Failed(format!("shard {id} ended on nodes {:?}", s.voters))),
        },
        // A split ends when its shard's leader commits it (`CommitSplit`).
        OpKind::Split { shard: id, .. } => {
            shard(id).is_none().then(|| Outcome::Failed(format!("shard {id} no longer exists")))
        }
        // A merge ends when the lower shard's leader commits it (`CommitMerge`).
        OpKind::Merge { left, right } => match (shard(left), shard(right)) {
            (Some(_), Some(_)) => None,
            _ => Some(Outcome::Failed(format!("shard {left} or {right} no longer exists"))),
        },
        OpKind::Rebalance => {
            let alone = state.ops.iter().all(|o| o.kind == OpKind::Rebalance);
            let active = state.active_nodes();
            // Leaders still unreported (a shard electing one) could not be placed yet.
            let done = alone
                && state.shard_map.shards.iter().all(|s| s.leader.is_some() && !s.moving())
                && next_move(&state.shard_map, &nodes.placeable, &nodes.live).is_none()
                && next_leader_transfer(&state.shard_map, &active).is_none();
            done.then_some(Outcome::Done)
        }
    }
}

/// Why operation `op` is abandoned now, if it is past its deadline: an operator's replica
/// move not done in time, a merge not claimed by its lower shard in time (`tree` is this
/// node's meta state tree, which holds the claims).
fn overdue(op: &ShardOp, sharding: &ShardingConfig, tree: &dyn KvTree) -> Result<Option<String>> {
    if let OpKind::MoveReplica { shard, to, .. } = op.kind {
        let late = now_micros().saturating_sub(op.started_at) > MOVE_DEADLINE_MICROS;
        return Ok(late.then(|| {
            let minutes = MOVE_DEADLINE_MICROS / 60_000_000;
            format!("node {to} did not catch up with shard {shard} within {minutes} minutes: the move is rolled back")
        }));
    }
    let OpKind::Merge { left, right } = op.kind else { return Ok(None) };
    let deadline = i64::try_from(sharding.merge_deadline_ms).unwrap_or(i64::MAX).saturating_mul(1_000);
    if now_micros().saturating_sub(op.started_at) <= deadline || tree.get(&keyspace::merge_claim(op.id))?.is_some() {
        return Ok(None);
    }
    Ok(Some(format!(
        "shard {left} did not begin absorbing shard {right} within {} s (its rows not yet exported, or its replica \
         behind): the merge is abandoned and shard {right} serves its range again",
        sharding.merge_deadline_ms / 1_000
    )))
}

/// One placement step: a move to a node gone silent is rolled back (its learner would never
/// catch up, and the shard would hold up every other step); else, when nothing else is under
/// way, a replica move (replacing replicas of nodes taken for dead), then (when leaders are
/// balanced by themselves, or a rebalance was asked for) a leadership transfer.
async fn place(context: &Context, state: &MetaState, nodes: &Nodes) -> Result<()> {
    for shard in state.shard_map.shards.iter().filter(|s| s.moving()) {
        if let Some(to) = shard.replicas.iter().find(|r| !shard.voters.contains(r) && nodes.gone.contains(r)) {
            warn!(shard = shard.id, to, "rolling a replica move back: its target is silent");
            let command = MetaCommand::RollBackMove { shard: shard.id, conf_ver: shard.epoch.conf_ver };
            context.proposer.write_meta(command).await?;
            return Ok(());
        }
    }
    let busy = state.ops.iter().any(|op| op.kind != OpKind::Rebalance);
    if busy || state.shard_map.shards.iter().any(Shard::moving) {
        return Ok(());
    }
    if let Some(step) = next_move(&state.shard_map, &nodes.placeable, &nodes.live) {
        let conf_ver = state.shard_map.shard(step.shard)?.epoch.conf_ver;
        info!(shard = step.shard, replicas = ?step.replicas, "placement: moving a replica");
        let command = MetaCommand::SetReplicas { shard: step.shard, replicas: step.replicas, conf_ver };
        context.proposer.write_meta(command).await?;
        return Ok(());
    }
    let asked = state.ops.iter().any(|op| op.kind == OpKind::Rebalance);
    // Leadership goes only to nodes that keep up with the meta log: not to one that is down.
    if (context.sharding.balance_leaders || asked)
        && let Some(t) = next_leader_transfer(&state.shard_map, &nodes.live)
    {
        info!(shard = t.shard, to = t.to, "placement: moving a leadership");
        let kind = OpKind::TransferLeader { shard: t.shard, to: t.to };
        context.proposer.write_meta(MetaCommand::StartOp { kind, requested: false }).await?;
    }
    Ok(())
}

fn raft_err(e: impl std::fmt::Display) -> Error {
    Error::Raft(format!("meta membership: {e}"))
}

/// The nodes of `active` this metadata leader sees holding its log (to `CAUGHT_UP_ENTRIES`)
/// and answering it: a node that went down holds the log it had while the log stays still.
fn keeping_up(meta: &Group, pool: &PeerPool, active: &[u64]) -> Vec<u64> {
    let m = meta.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or_default();
    let lease = Duration::from_millis(meta.raft.config().election_timeout_max);
    let matched = |id: &u64| m.replication.as_ref().and_then(|r| r.get(id).copied().flatten()).map(|l| l.index);
    let up = |id: &u64| matched(id).is_some_and(|i| i + CAUGHT_UP_ENTRIES >= last) && pool.answered_within(*id, lease);
    active.iter().copied().filter(|id| *id == m.id || up(id)).collect()
}

/// Adds every cluster node to the meta group as a learner, and keeps its voters at up to
/// three active nodes not taken for dead, promoting only live learners that have caught up.
async fn follow_and_vote(meta: &Group, state: &MetaState, nodes: &Nodes) -> Result<()> {
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
    // A voter taken for dead gives its vote to a live node that follows the log.
    let mut want: BTreeSet<u64> = voters.iter().filter(|v| nodes.placeable.contains(v)).copied().collect();
    for id in nodes.live.iter().filter(|id| members.contains(id) && caught_up(id)) {
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
