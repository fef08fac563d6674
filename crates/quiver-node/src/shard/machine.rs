//! A shard group's state machine, and the one place shard commands are dispatched: writes
//! and export acknowledgements (`shard::apply`), a split's pre-copy and the split itself
//! (`staging`, `split`), the steps of a merge (`merge`). It owns what a shard keeps in memory
//! beside its tree: its range, a split's pre-copy and the ranges a split gave away whose
//! rows are still being swept (`leftover`). `raft::state_machine` hands it each entry of the
//! group in log order, with the batch the entries before it wrote into.

use std::sync::Arc;

use quiver_store::command::{Response, ShardCommand};
use quiver_store::error::Result;
use quiver_store::storage::{KvEngine, KvTree, WriteBatch};

use super::leftover::Leftovers;
use super::split::{self, Membership, SplitAt};
use super::staging::Staging;
use super::{PendingWrites, Range, merge};

pub struct ShardMachine {
    range: Arc<Range>,
    /// The range to record when the tree holds none yet (a shard of the first layout: every
    /// replica opens it the same).
    initial: Option<(u64, u64)>,
    /// A split's pre-copy, shared with the shard's leader that waits for it.
    staging: Arc<Staging>,
    leftovers: Leftovers,
}

/// What applying a command needs done first.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// Nothing: it applies into the batch of the entries before it.
    Nothing,
    /// Every entry before it written to the tree: a split reads the tree.
    Written,
    /// That, and then the rows of every range the shard gave away deleted (`sweep_all`): an
    /// absorb takes a neighbour's rows, whose range may be one the shard gave away.
    Swept,
}

/// The entry being applied: its log index and leader time, and the group's membership.
pub struct Entry<'a> {
    pub index: u64,
    pub time: i64,
    pub membership: &'a Membership,
}

impl ShardMachine {
    pub fn new(range: Arc<Range>, initial: Option<(u64, u64)>) -> ShardMachine {
        ShardMachine { range, initial, staging: Arc::default(), leftovers: Leftovers::default() }
    }

    /// The shard's range, kept current by `apply`.
    pub fn range(&self) -> &Arc<Range> {
        &self.range
    }

    /// A split's pre-copy.
    pub fn staging(&self) -> &Arc<Staging> {
        &self.staging
    }

    /// The range to record when the tree holds none yet.
    pub fn initial(&self) -> Option<(u64, u64)> {
        self.initial
    }

    /// Reads the range and the leftovers from `tree` after it changed wholesale (open,
    /// snapshot install).
    pub fn load(&mut self, tree: &dyn KvTree) -> Result<()> {
        self.range.set(split::stored_range(tree)?);
        self.leftovers = Leftovers::load(tree)?;
        Ok(())
    }

    pub fn before(&self, cmd: &ShardCommand) -> Before {
        match cmd {
            ShardCommand::Split { .. } => Before::Written,
            ShardCommand::Absorb { .. } if !self.leftovers.is_empty() => Before::Swept,
            _ => Before::Nothing,
        }
    }

    /// Adds to `batch` the deletion of every leftover row (`Before::Swept`).
    pub fn sweep_all(&mut self, tree: &dyn KvTree, batch: &mut WriteBatch) -> Result<()> {
        self.leftovers.sweep_all(tree, batch)
    }

    /// Applies `cmd`, writing into `batch` and `rows`; what `before` asked is done.
    pub fn apply(
        &mut self,
        (engine, tree): (&Arc<dyn KvEngine>, &Arc<dyn KvTree>),
        entry: Entry<'_>,
        cmd: &ShardCommand,
        batch: &mut WriteBatch,
        rows: &mut PendingWrites,
    ) -> Result<Response> {
        match cmd {
            ShardCommand::Split { start, end, at, child } => {
                let split = SplitAt { start: *start, end: *end, at: *at, child: *child };
                let staged = self.staging.finish((*at, *end), *child);
                let applied = split::apply(
                    engine.as_ref(),
                    tree.as_ref(),
                    &self.range,
                    entry.membership,
                    entry.time,
                    (&split, staged),
                )?;
                batch.extend(applied.parent);
                if let Some(gave) = applied.gave {
                    self.leftovers.add(gave, batch)?;
                }
                Ok(applied.response)
            }
            ShardCommand::PrepareSplit { at, child } => Ok(self.prepare_split(engine, tree, (*at, *child))),
            ShardCommand::Freeze | ShardCommand::Thaw | ShardCommand::Absorb { .. } | ShardCommand::Grow { .. } => {
                merge::apply(tree.as_ref(), rows, &self.range, entry.index, cmd)
            }
            ShardCommand::Write(_)
            | ShardCommand::Writes(_)
            | ShardCommand::Put { .. }
            | ShardCommand::ExportAck { .. } => {
                super::apply(tree.as_ref(), rows, &self.range, entry.index, entry.time, cmd)
            }
        }
    }

    /// Starts a split's pre-copy when the shard still holds the range it splits; done
    /// already when it split there.
    fn prepare_split(&self, engine: &Arc<dyn KvEngine>, tree: &Arc<dyn KvTree>, (at, child): (u64, u64)) -> Response {
        match self.range.get() {
            Some((start, end)) if start < at && at <= end => {
                self.staging.start(engine.clone(), tree.clone(), (at, end), child);
                Response::Done
            }
            Some((_, end)) if end.checked_add(1) == Some(at) => Response::Done,
            held => {
                let why = format!("shard {} holds {held:?}: it cannot split at {at:#x}", self.range.shard);
                Response::Rejected(quiver_core::Error::InvalidArgument(why))
            }
        }
    }

    /// Before a batch is written: sweeps a bounded part of the leftover rows into it.
    pub fn step(&mut self, tree: &dyn KvTree, batch: &mut WriteBatch) -> Result<()> {
        self.leftovers.step(tree, batch)
    }

    /// Notes the keys a written batch changes, for a split's pre-copy under way.
    pub fn note(&self, batch: &WriteBatch) {
        self.staging.note(batch);
    }

    /// Drops a split's pre-copy (the tree is being replaced by a snapshot).
    pub fn abandon(&self) {
        self.staging.abandon();
    }
}
