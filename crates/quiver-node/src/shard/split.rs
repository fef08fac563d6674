//! A split: one entry in the parent shard's log (`ShardCommand::Split`), applied by every
//! replica from its own data at that index, with no copy over the network.
//!
//! Each replica creates the child group's trees as if the child's log had been purged up
//! to `seed_log_id()`, with a state machine that has applied it: the child's rows, the
//! request ids of recent writes (a write retried after the split is still applied once),
//! its range, and the parent's Raft membership. Every replica holding the same seed, the
//! child elects a leader by itself. A replica without the seed (its parent replica caught up
//! past the split from a snapshot) starts the child empty, and the child's leader, whose
//! log starts after the seed, sends it a snapshot.
//!
//! Most of the copying happens before the entry, while the shard takes writes
//! (`staging`): the entry copies what that copy had not reached and the keys changed
//! since, or everything on a replica that staged nothing.
//!
//! The child also records what its exports wait for (`export_order`): rows of its keys
//! still queued in the parent.
//!
//! The child is written first, its applied id last, and only while it has none: replaying
//! the entry after a crash, or after the child started taking writes, never overwrites it.
//! Then the parent's range shrinks (readers check it after reading); the rows it gave away
//! are swept by later applies (`leftover`).

use openraft::{CommittedLeaderId, LogId, StoredMembership};
use quiver_core::row::WriteSeq;

use super::staging::{Staged, clear, moves, scan_copied};
use super::{Range, export_order};
use quiver_store::codec::{load, store};
use quiver_store::command::Response;
use quiver_store::error::Result;
use quiver_store::keyspace::{
    APPLIED, APPLIED_TIME, EXPORT_WAITS, LOG_PURGED, MEMBERSHIP, SHARD_RANGE, TreePart, tree_name,
};
use quiver_store::storage::{KvEngine, KvTree, WriteBatch};

/// Node ids are `u64`, as `raft::NodeId` (which this layer, below Raft, does not name).
pub type Membership = StoredMembership<u64, openraft::BasicNode>;

/// Rows written to the child per batch while seeding it.
const SEED_CHUNK: usize = 10_000;

/// Where a split child's log and state machine start: the first log id of a group.
pub fn seed_log_id() -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(0, 0), 0)
}

/// The split asked for: the range the parent should hold, the point, the child's id.
pub struct SplitAt {
    pub start: u64,
    pub end: u64,
    pub at: u64,
    pub child: u64,
}

/// What applying a split did.
pub struct Applied {
    pub response: Response,
    /// The range the parent gave away, whose rows are to be swept.
    pub gave: Option<(u64, u64)>,
    /// The parent's batch (its new range), to be written with the applied id.
    pub parent: WriteBatch,
}

/// Applies a split to the parent's tree `tree` (which holds every earlier entry) owning
/// `owned`, at the leader time `time`, with what a pre-copy left to do (`staged`). Seeds the
/// child and shrinks `owned`.
pub fn apply(
    engine: &dyn KvEngine,
    tree: &dyn KvTree,
    owned: &Range,
    membership: &Membership,
    time: i64,
    (split, staged): (&SplitAt, Option<Staged>),
) -> Result<Applied> {
    let SplitAt { start, end, at, child } = *split;
    let nothing = |response| Ok(Applied { response, gave: None, parent: WriteBatch::default() });
    let refused = |why: String| nothing(Response::Rejected(quiver_core::Error::InvalidArgument(why)));
    if !(start < at && at <= end) {
        return refused(format!("split point {at:#x} is outside {start:#x}..={end:#x}"));
    }
    let kept = (start, at - 1);
    let current = owned.get();
    if current == Some(kept) {
        return nothing(Response::Done);
    }
    if current != Some((start, end)) {
        return refused(format!("shard {} holds {current:?}, not the range {start}..={end} to split", owned.shard));
    }
    seed_child(engine, (owned.shard, tree), membership, time, (at, end, child), staged)?;
    owned.set(Some(kept));
    let mut parent = WriteBatch::default();
    parent.put(SHARD_RANGE, store(&Some(kept))?);
    Ok(Applied { response: Response::Done, gave: Some((at, end)), parent })
}

/// Writes the child's trees from the parent's, unless the child already has a state.
fn seed_child(
    engine: &dyn KvEngine,
    (parent_id, parent): (u64, &dyn KvTree),
    membership: &Membership,
    time: i64,
    (at, end, child): (u64, u64, u64),
    staged: Option<Staged>,
) -> Result<()> {
    let state = engine.tree(&tree_name(child, TreePart::State))?;
    if state.get(APPLIED)?.is_some() {
        return Ok(());
    }
    let (after, changed) = match staged {
        Some(Staged { through, changed }) => (Some(through), changed),
        None => {
            for part in TreePart::ALL {
                clear(engine.tree(&tree_name(child, part))?.as_ref())?;
            }
            (None, Default::default())
        }
    };
    let seed = seed_log_id();
    let mut log = WriteBatch::default();
    log.put(LOG_PURGED, store(&seed)?);
    engine.tree(&tree_name(child, TreePart::Log))?.write(log)?;
    let mut batch = WriteBatch::default();
    for kv in scan_copied(parent, after.as_deref()) {
        let (key, value) = kv?;
        if moves(&key, (at, end)) {
            batch.put(key, value);
        }
        if batch.len() == SEED_CHUNK {
            state.write(std::mem::take(&mut batch))?;
        }
    }
    // Keys the entries since the pre-copy changed, wherever the copy was when they did.
    for key in changed {
        match parent.get(&key)? {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        }
    }
    // Rows of the moving keys may still be queued here: the child's exports wait for them.
    let waits = export_order::inherited(parent_id, parent, WriteSeq { log_index: 0, pos: 0 })?;
    if !waits.is_empty() {
        batch.put(EXPORT_WAITS, export_order::encode_waits(&waits)?);
    }
    batch.put(SHARD_RANGE, store(&Some((at, end)))?);
    batch.put(MEMBERSHIP, store(&StoredMembership::new(Some(seed), membership.membership().clone()))?);
    batch.put(APPLIED_TIME, store(&time)?);
    batch.put(APPLIED, store(&Some(seed))?);
    state.write(batch)?;
    engine.flush()
}

/// The range stored in a shard's state tree, if any.
pub fn stored_range(tree: &dyn KvTree) -> Result<Option<(u64, u64)>> {
    Ok(tree.get(SHARD_RANGE)?.map(|b| load::<Option<(u64, u64)>>(&b)).transpose()?.flatten())
}
