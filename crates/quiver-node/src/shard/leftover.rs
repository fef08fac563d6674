//! Rows a split gave away stay in the parent's tree until swept: deleting them all in the
//! `Split` entry would hold the shard for as long as copying them did.
//!
//! The ranges given away are kept in the parent's `0x00 leftover` key. Each apply call
//! then reads a bounded number of row keys further (`SWEEP_PER_APPLY`) and deletes, in its
//! own batch, those hashing into such a range; at the end of the rows the key goes. Nothing
//! reads them meanwhile: reads check the range after reading, and every scan of rows keeps
//! to the shard's range. A range never gains a leftover range back while rows remain: a
//! merge sweeps them all before its first `Absorb` (`sweep_all`). Where the sweep stands is
//! kept in memory only: after a restart it starts again from the first row.

use std::ops::Bound;

use quiver_store::codec::{load, store};
use quiver_store::error::Result;
use quiver_store::keyspace::{self, LEFTOVER, ROW};
use quiver_store::storage::{KvTree, WriteBatch};

/// Row keys read per apply call while sweeping.
const SWEEP_PER_APPLY: usize = 1_000;

/// A shard's leftover ranges and how far the sweep is.
#[derive(Debug, Default)]
pub struct Leftovers {
    ranges: Vec<(u64, u64)>,
    after: Option<Vec<u8>>,
}

impl Leftovers {
    /// The ranges stored in `tree`; the sweep starts from the first row.
    pub fn load(tree: &dyn KvTree) -> Result<Leftovers> {
        let ranges = tree.get(LEFTOVER)?.map(|b| load(&b)).transpose()?.unwrap_or_default();
        Ok(Leftovers { ranges, after: None })
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds the range a split gave away, stored by `batch`.
    pub fn add(&mut self, range: (u64, u64), batch: &mut WriteBatch) -> Result<()> {
        self.ranges.push(range);
        batch.put(LEFTOVER, store(&self.ranges)?);
        Ok(())
    }

    /// Adds to `batch` the deletion of leftover rows among the next `limit` row keys;
    /// when the rows end, forgets the ranges.
    pub fn sweep(&mut self, tree: &dyn KvTree, batch: &mut WriteBatch, limit: usize) -> Result<()> {
        if self.ranges.is_empty() {
            return Ok(());
        }
        let from = match self.after.take() {
            Some(key) => Bound::Excluded(key),
            None => Bound::Included(vec![ROW]),
        };
        let mut read = 0;
        for kv in tree.scan((from, Bound::Excluded(vec![ROW + 1]))).take(limit) {
            let (key, _) = kv?;
            read += 1;
            if self.holds(&key) {
                batch.delete(key.clone());
            }
            self.after = Some(key);
        }
        if read < limit {
            self.ranges.clear();
            self.after = None;
            batch.delete(LEFTOVER);
        }
        Ok(())
    }

    /// A bounded step of the sweep, for one apply call.
    pub fn step(&mut self, tree: &dyn KvTree, batch: &mut WriteBatch) -> Result<()> {
        self.sweep(tree, batch, SWEEP_PER_APPLY)
    }

    /// The rest of the sweep at once (before a merge absorbs rows into those ranges).
    pub fn sweep_all(&mut self, tree: &dyn KvTree, batch: &mut WriteBatch) -> Result<()> {
        self.sweep(tree, batch, usize::MAX)
    }

    fn holds(&self, key: &[u8]) -> bool {
        keyspace::row_hash(key).is_some_and(|h| self.ranges.iter().any(|(start, end)| (*start..=*end).contains(&h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::storage::{KvEngine, MemEngine};

    /// The stored ranges keep their bytes; a tree without the key (any data dir written
    /// before splits swept later) has none to sweep.
    #[test]
    fn the_stored_ranges_keep_their_bytes_and_default_to_none() {
        let engine = MemEngine::default();
        let tree = engine.tree("t").unwrap();
        assert!(Leftovers::load(tree.as_ref()).unwrap().is_empty());
        let mut leftovers = Leftovers::default();
        let mut batch = WriteBatch::default();
        leftovers.add((5, 300), &mut batch).unwrap();
        assert_eq!(batch.pending(LEFTOVER), Some(Some(&[1u8, 5, 251, 44, 1][..])));
        tree.write(batch).unwrap();
        assert!(!Leftovers::load(tree.as_ref()).unwrap().is_empty());
    }
}
