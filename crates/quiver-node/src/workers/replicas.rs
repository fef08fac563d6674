//! Shard leaders keep the meta group told and carry out what it decided, each round:
//! - they report that they lead (with their term), so clients get leader hints and the
//!   leader placement rule sees where leaders are;
//! - they hand leadership over when an operation asks for it (see `transfer`);
//! - they split their shard when an operation asks for it: an entry that starts every
//!   replica copying the moving rows (`shard::staging`), once the copy here is done the
//!   split's entry (`shard::split`), then the split is committed to the shard map
//!   (`CommitSplit`);
//! - they take their part in a merge (`shard::merge`): the upper shard freezes, the lower
//!   one absorbs its rows, grows over its range and commits the merge (`CommitMerge`);
//! - when the meta state assigns a shard other replicas than its Raft voters, they add the
//!   new ones as learners, wait for them to catch up, change the voters (joint consensus),
//!   then confirm the new voters in the meta group, after which removed replicas close
//!   their copy.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use quiver_core::placement::split_point;
use quiver_core::shard_map::{META_GROUP, Shard};
use quiver_core::shard_ops::{OpKind, Outcome};
use tracing::{info, warn};

use super::Context;
use crate::groups::Group;
use crate::shard::merge::{self, CARRIED};
use crate::shard::read_queue;
use crate::shard::staging::Progress;
use crate::transfer::transfer_leadership;
use quiver_store::command::{Command, MetaCommand, ShardCommand};
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{self, ROW};
use quiver_store::meta::MetaState;
use quiver_store::storage::KvTree;

/// How long a leader waits for a new replica to catch up before trying again next round.
const CATCH_UP: Duration = Duration::from_secs(30);

pub async fn round(context: Context) -> Result<()> {
    let state = context.meta.latest();
    let led: Vec<_> = context
        .groups
        .all()
        .into_iter()
        .filter(|g| g.id != META_GROUP && g.leader() == Some(context.me))
        .filter_map(|g| Some((state.shard_map.shard(g.id).ok()?, g)))
        .collect();
    report_leadership(&context, &led).await?;
    for (shard, group) in led {
        if !hand_over(&context, &group, &state).await? {
            split(&context, &group, shard, &state).await?;
            merge(&context, &group, &state).await?;
            change_replicas(&context, &group, shard, &state).await?;
        }
    }
    Ok(())
}

/// Carries out a split of this shard, when one is asked for. The point is chosen once and
/// recorded in the operation before the split is proposed (`SetSplitPoint`), so proposing
/// the split again after a crash or a change of leader proposes the same one: applied
/// twice, it changes nothing.
async fn split(context: &Context, group: &Group, shard: &Shard, state: &MetaState) -> Result<()> {
    let asked = state.ops.iter().find_map(|op| match op.kind {
        OpKind::Split { shard: id, at, child } if id == group.id => Some((op.id, at, child)),
        _ => None,
    });
    let Some((op, at, child)) = asked else { return Ok(()) };
    let at = match group.range.as_ref().and_then(|r| r.get()) {
        // Applied here already (a leader before this one died before committing it, or an
        // operation of an earlier version): the point is where the range now ends.
        Some((start, end)) if start == shard.start && end < shard.end => end + 1,
        _ if at != 0 => at,
        _ => {
            // A read of every row: off the runtime's threads, which serve requests meanwhile.
            let (tree, start, end) = (group.data.clone(), shard.start, shard.end);
            let median = tokio::task::spawn_blocking(move || median_point(tree.as_ref(), start, end))
                .await
                .map_err(|e| Error::Storage(format!("choosing a split point: {e}")))??;
            context.proposer.write_meta(MetaCommand::SetSplitPoint { op, at: median }).await?;
            crate::failpoint::hit("split-after-choosing");
            // The point recorded: this one, or an earlier leader's.
            let recorded = context.meta.caught_up().await?.ops.iter().find_map(|o| match o.kind {
                OpKind::Split { at, .. } if o.id == op && at != 0 => Some(at),
                _ => None,
            });
            let Some(at) = recorded else { return Ok(()) };
            at
        }
    };
    if !staged(context, group, op, (at, shard.end), child).await? {
        return Ok(());
    }
    info!(shard = group.id, at = format!("{at:#018x}"), child, "splitting");
    let command = ShardCommand::Split { start: shard.start, end: shard.end, at, child };
    if !propose_step(context, group, op, command).await? {
        return Ok(());
    }
    crate::failpoint::hit("split-before-commit");
    context.proposer.write_meta(MetaCommand::CommitSplit { op, shard: group.id, at, child }).await?;
    Ok(())
}

/// Whether the rows that move to `child` are copied ahead of the split here; if not, starts
/// or waits for that copy (checked again next round). True once the shard split here too.
async fn staged(context: &Context, group: &Group, op: u64, moving: (u64, u64), child: u64) -> Result<bool> {
    let (Some(staging), Some(range)) = (&group.staging, &group.range) else { return Ok(true) };
    if range.get().is_some_and(|(_, end)| end < moving.0) {
        return Ok(true);
    }
    match staging.progress(moving, child) {
        Progress::Done => Ok(true),
        Progress::Copying => Ok(false),
        Progress::Absent => {
            info!(shard = group.id, child, "copying the rows that move ahead of a split");
            let prepare = ShardCommand::PrepareSplit { at: moving.0, child };
            propose_step(context, group, op, prepare).await?;
            crate::failpoint::hit("split-copying");
            Ok(false)
        }
    }
}

/// Tells the meta group, in one entry, which shards this node leads where it does not
/// know it yet.
async fn report_leadership(context: &Context, led: &[(&Shard, Arc<Group>)]) -> Result<()> {
    let terms: Vec<(u64, u64)> = led
        .iter()
        .map(|(shard, group)| (shard, group.raft.metrics().borrow().current_term))
        .filter(|(shard, term)| shard.leader != Some(context.me) || shard.leader_term != *term)
        .map(|(shard, term)| (shard.id, term))
        .collect();
    if !terms.is_empty() {
        context.proposer.write_meta(MetaCommand::ReportLeader { leader: context.me, terms }).await?;
    }
    Ok(())
}

/// Carries out a transfer of this shard's leadership, when one is asked for; true when
/// leadership moved away.
async fn hand_over(context: &Context, group: &Group, state: &MetaState) -> Result<bool> {
    let transfer = state.ops.iter().find_map(|op| match op.kind {
        OpKind::TransferLeader { shard, to } if shard == group.id && to != context.me => Some((op.id, to)),
        _ => None,
    });
    let Some((id, to)) = transfer else { return Ok(false) };
    let voters: BTreeSet<u64> = group.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    // A target that is down would only hold the shard's requests while it is waited for.
    let lease = Duration::from_millis(group.raft.config().election_timeout_max);
    let why = match state.nodes.get(&to).filter(|_| voters.contains(&to)) {
        None => format!("node {to} is no longer a voter of shard {}", group.id),
        Some(_) if !context.pool.answered_within(to, lease) => {
            format!("node {to} has not answered shard {}'s leader for over {lease:?}; it goes on leading", group.id)
        }
        Some(node) => {
            info!(shard = group.id, to, "handing leadership over");
            return match transfer_leadership(group, to, &node.addr, &context.pool).await {
                Ok(()) => Ok(true),
                // Tried again next round, until the operation's deadline.
                Err(e) => {
                    warn!("{e}");
                    Ok(false)
                }
            };
        }
    };
    context.proposer.write_meta(MetaCommand::FinishOp { id, outcome: Outcome::Failed(why) }).await?;
    Ok(false)
}

/// The median of the hashes of the shard's keys (`placement::split_point`), leaving out
/// rows given away and not swept yet.
fn median_point(tree: &dyn KvTree, start: u64, end: u64) -> Result<u64> {
    let mut hashes = Vec::new();
    for kv in tree.scan_prefix(&[ROW]) {
        hashes.extend(keyspace::row_hash(&kv?.0).filter(|h| (start..=end).contains(h)));
    }
    Ok(split_point(start, end, &mut hashes))
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Rows and request ids per `Absorb` entry of a merge.
const ABSORB_CHUNK: usize = 1_000;

/// Carries out this shard's part of a merge, when one is asked for: the upper shard
/// freezes; the lower one, once its replica here of the upper one is frozen and exported
/// (else next round), absorbs its rows, grows over its range and commits the merge.
/// Every step may run again after a crash or a change of leader: it changes nothing twice.
async fn merge(context: &Context, group: &Group, state: &MetaState) -> Result<()> {
    let asked = state.ops.iter().find_map(|op| match op.kind {
        OpKind::Merge { left, right } if left == group.id || right == group.id => Some((op.id, left, right)),
        _ => None,
    });
    let Some((op, left, right)) = asked else { return thaw_if_abandoned(context, group).await };
    if group.id == right {
        if group.range.as_ref().is_some_and(|r| r.get().is_some()) {
            info!(shard = right, into = left, "freezing for a merge");
            propose_step(context, group, op, ShardCommand::Freeze).await?;
        }
        return Ok(());
    }
    let Some(upper) = context.groups.get(right) else { return Ok(()) };
    // The replica here must have applied the freeze (not merely own nothing, as a split's
    // child waiting for its rows does): it then holds every row the shard took.
    if !merge::is_frozen(upper.data.as_ref())? || !read_queue(upper.data.as_ref(), 1)?.is_empty() {
        return Ok(());
    }
    let upper_range = state.shard_map.shard(right)?;
    // The point of no return: from here the merge is finished, never abandoned.
    context.proposer.write_meta(MetaCommand::ClaimMerge { op }).await?;
    info!(shard = left, from = right, "absorbing a frozen neighbour");
    for space in CARRIED {
        let mut after = None;
        loop {
            let (pairs, last) = chunk_after(upper.data.as_ref(), space, after.as_deref(), upper_range)?;
            let Some(last) = last else { break };
            after = Some(last);
            if !pairs.is_empty() && !propose_step(context, group, op, ShardCommand::Absorb { pairs }).await? {
                return Ok(());
            }
        }
    }
    if let Some(pair) = merge::carried_waits(right, upper.data.as_ref())?
        && !propose_step(context, group, op, ShardCommand::Absorb { pairs: vec![pair] }).await?
    {
        return Ok(());
    }
    let grow = ShardCommand::Grow { start: upper_range.start, end: upper_range.end };
    if !propose_step(context, group, op, grow).await? {
        return Ok(());
    }
    context.proposer.write_meta(MetaCommand::CommitMerge { op, left, right }).await?;
    Ok(())
}

/// Thaws this shard if it is frozen for a merge that was abandoned. Decided on the meta
/// state as the metadata leader has it, not this node's view, which may not show the merge
/// yet: the shard is still in the map and no merge of it is under way.
async fn thaw_if_abandoned(context: &Context, group: &Group) -> Result<()> {
    if !merge::is_frozen(group.data.as_ref())? {
        return Ok(());
    }
    let state = context.meta.caught_up().await?;
    let merging = state
        .ops
        .iter()
        .any(|op| matches!(op.kind, OpKind::Merge { left, right } if right == group.id || left == group.id));
    if merging || state.shard_map.shard(group.id).is_err() {
        return Ok(());
    }
    info!(shard = group.id, "thawing: its merge was abandoned");
    group.propose(Command::Shard(ShardCommand::Thaw)).await.map(drop)
}

/// The pairs among the next `ABSORB_CHUNK` keys of key space `space` after key `after`
/// (from the start), leaving out rows outside `range` (given away by a split, not swept
/// yet); and the last key read, `None` at the end of the space.
fn chunk_after(tree: &dyn KvTree, space: u8, after: Option<&[u8]>, range: &Shard) -> Result<(Pairs, Option<Vec<u8>>)> {
    let from = match after {
        Some(key) => Bound::Excluded(key.to_vec()),
        None => Bound::Included(vec![space]),
    };
    let read: Pairs = tree.scan((from, Bound::Excluded(vec![space + 1]))).take(ABSORB_CHUNK).collect::<Result<_>>()?;
    let last = read.last().map(|(key, _)| key.clone());
    // Only rows have a place in the hash space; request ids all go.
    let owned = |key: &[u8]| keyspace::row_hash(key).is_none_or(|h| (range.start..=range.end).contains(&h));
    Ok((read.into_iter().filter(|(key, _)| owned(key)).collect(), last))
}

/// Proposes a step of operation `op` to `group`, led here; false when the shard refused it
/// for good, and the operation was ended as failed.
async fn propose_step(context: &Context, group: &Group, op: u64, step: ShardCommand) -> Result<bool> {
    match group.propose(Command::Shard(step)).await {
        Ok(_) => Ok(true),
        Err(Error::Core(e)) if !Error::Core(e.clone()).is_transient() => {
            let outcome = Outcome::Failed(e.to_string());
            context.proposer.write_meta(MetaCommand::FinishOp { id: op, outcome }).await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

async fn change_replicas(context: &Context, group: &Group, shard: &Shard, state: &MetaState) -> Result<()> {
    let raft_err = |e: String| Error::Raft(format!("shard {} membership: {e}", group.id));
    let membership = group.raft.metrics().borrow().membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let want: BTreeSet<u64> = shard.replicas.iter().copied().collect();
    if voters != want || membership.get_joint_config().len() > 1 {
        for id in want.iter().filter(|id| membership.get_node(id).is_none()) {
            let addr =
                state.nodes.get(id).map(|n| n.addr.clone()).ok_or_else(|| raft_err(format!("node {id} unknown")))?;
            info!(shard = group.id, node = id, "adding a replica; waiting for it to catch up");
            let added =
                group.raft.add_learner(*id, BasicNode { addr }, false).await.map_err(|e| raft_err(e.to_string()))?;
            // openraft's own wait counts a learner within `replication_lag_threshold` entries as
            // caught up, which a node that never answered is, in a short log: wait for the
            // learner to hold the entry that added it.
            let holds = |m: &openraft::RaftMetrics<u64, BasicNode>| {
                let matched = m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten());
                matched.is_some_and(|l| l.index >= added.log_id.index)
            };
            group
                .raft
                .wait(Some(CATCH_UP))
                .metrics(holds, "a new replica holding the entry that added it")
                .await
                .map_err(|_| raft_err(format!("node {id} did not catch up within {CATCH_UP:?}")))?;
        }
        info!(shard = group.id, voters = ?want, "changing the shard's voters");
        group.raft.change_membership(want.clone(), false).await.map_err(|e| raft_err(e.to_string()))?;
    } else {
        // Learners of a move rolled back (a target that went silent) leave the group.
        let stray: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).filter(|id| !want.contains(id)).collect();
        if !stray.is_empty() {
            info!(shard = group.id, learners = ?stray, "removing the learners of a move rolled back");
            let remove = openraft::ChangeMembers::RemoveNodes(stray);
            group.raft.change_membership(remove, false).await.map_err(|e| raft_err(e.to_string()))?;
        }
    }
    let mut confirmed = shard.voters.clone();
    confirmed.sort_unstable();
    let now: Vec<u64> = want.into_iter().collect();
    if confirmed != now {
        context.proposer.write_meta(MetaCommand::SetVoters { shard: group.id, voters: now }).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use quiver_core::key::key_hash;

    use super::*;
    use quiver_store::storage::{KvEngine, MemEngine, WriteBatch};

    /// A merge carries the frozen shard's request ids whole, and its rows only within its
    /// range (a split's leftovers stay behind).
    #[test]
    fn a_merge_reads_request_ids_whole_and_rows_within_the_range() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        let upper = quiver_core::shard_map::ShardMap::uniform(2, &[1]).unwrap().shards[1].clone();
        let key = |inside: bool| (0u8..).map(|b| vec![1, b]).find(|k| (key_hash(k) >= upper.start) == inside).unwrap();
        let table = quiver_core::table::TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let mut batch = WriteBatch::default();
        batch.put(keyspace::row(&table, &key(true)), b"in".to_vec());
        batch.put(keyspace::row(&table, &key(false)), b"left over".to_vec());
        // An id whose bytes read as a row key's layout, with an entity key hashing below the
        // range: it must still be carried.
        let id = (0u8..).map(|b| [[0u8; 23].as_slice(), &[b]].concat()).find(|id| key_hash(&id[8..]) < upper.start);
        batch.put(keyspace::request(&id.unwrap()), b"r".to_vec());
        tree.write(batch).unwrap();
        let (rows, last) = chunk_after(tree.as_ref(), ROW, None, &upper).unwrap();
        assert!(last.is_some());
        assert_eq!(rows, vec![(keyspace::row(&table, &key(true)), b"in".to_vec())]);
        let (requests, _) = chunk_after(tree.as_ref(), keyspace::REQUEST, None, &upper).unwrap();
        assert_eq!(requests.len(), 1, "the request id is carried whatever its bytes");
    }
}
