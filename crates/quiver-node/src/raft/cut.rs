//! A consistent read of a group's state tree at one applied log id, taken while the group
//! goes on applying: the view a backup streams.
//!
//! Copy-on-write at the key level. While a cut is open, every batch the state machine
//! writes first saves, in the group's cut tree (`group-G-cut`), the value each key it
//! changes had at the cut (`None` for a key the cut did not hold), unless the key was saved
//! before or the reader has already passed it. The reader walks the live tree in key order,
//! a chunk at a time, and answers the saved value wherever there is one. Both sides take one
//! lock, so a chunk and a batch never interleave; a batch waits at most one chunk's read.
//!
//! A cut lives in memory: a restart, or a snapshot installed meanwhile (which replaces the
//! tree wholesale), ends it, and its reader gets an error rather than a mixed view.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::{LogId, StoredMembership};

use super::NodeId;
use quiver_store::codec::{load, store};
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{APPLIED, MEMBERSHIP, TreePart, tree_name};
use quiver_store::storage::{KvEngine, KvPair, KvTree, WriteBatch};

/// The open cut of a group, shared by its state machine (the writer) and readers.
pub struct Cuts {
    group: u64,
    engine: Arc<dyn KvEngine>,
    open: Mutex<Option<Open>>,
    cuts_begun: AtomicU64,
}

struct Open {
    /// Which cut this is: a reader of an ended cut must not read a later one.
    number: u64,
    /// Values at the cut of keys changed since, by key: `None` for a key added since.
    saved: Arc<dyn KvTree>,
    /// The reader has read every key up to and including this one.
    read_to: Option<Vec<u8>>,
}

impl Cuts {
    /// The cut side of group `group`'s state machine; drops a cut tree a crash left behind.
    pub fn open(engine: Arc<dyn KvEngine>, group: u64) -> Result<Cuts> {
        engine.drop_tree(&tree_name(group, TreePart::Cut))?;
        Ok(Cuts { group, engine, open: Mutex::new(None), cuts_begun: AtomicU64::new(0) })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` to `tree`, first saving what an open cut still needs of the keys it
    /// changes.
    pub fn write(&self, tree: &dyn KvTree, batch: WriteBatch) -> Result<()> {
        let open = self.lock();
        if let Some(open) = open.as_ref() {
            let mut saved = WriteBatch::default();
            let mut seen = HashSet::new();
            for key in batch.keys() {
                let passed = open.read_to.as_deref().is_some_and(|to| key <= to);
                if passed || !seen.insert(key) || open.saved.get(key)?.is_some() {
                    continue;
                }
                saved.put(key, store(&tree.get(key)?)?);
            }
            open.saved.write(saved)?;
        }
        tree.write(batch)
    }

    /// Ends an open cut: the tree is about to be replaced wholesale.
    pub fn abandon(&self) -> Result<()> {
        self.end(|_| true)
    }

    /// Ends the open cut if `which` says so, dropping the values it saved.
    fn end(&self, which: impl Fn(&Open) -> bool) -> Result<()> {
        let mut open = self.lock();
        if open.as_ref().is_some_and(which) {
            *open = None;
            self.engine.drop_tree(&tree_name(self.group, TreePart::Cut))?;
        }
        Ok(())
    }

    /// Opens a cut of `tree` as it is now; `Busy` while another cut of this group is open.
    pub fn begin(self: &Arc<Cuts>, tree: Arc<dyn KvTree>) -> Result<Cut> {
        let mut open = self.lock();
        if open.is_some() {
            let reason = format!("group {} is already being read for a backup", self.group);
            return Err(quiver_core::Error::Busy { reason, retry_after_ms: 1000 }.into());
        }
        let name = tree_name(self.group, TreePart::Cut);
        self.engine.drop_tree(&name)?;
        let saved = self.engine.tree(&name)?;
        let applied = tree.get(APPLIED)?.map(|b| load::<Option<LogId<NodeId>>>(&b)).transpose()?.flatten();
        let membership = tree.get(MEMBERSHIP)?.map(|b| load(&b)).transpose()?.unwrap_or_default();
        let number = self.cuts_begun.fetch_add(1, Ordering::Relaxed);
        *open = Some(Open { number, saved, read_to: None });
        Ok(Cut { cuts: self.clone(), tree, number, applied, membership, done: false })
    }
}

/// A reader of one cut; dropping it ends the cut.
pub struct Cut {
    cuts: Arc<Cuts>,
    tree: Arc<dyn KvTree>,
    number: u64,
    pub applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
    done: bool,
}

impl Cut {
    /// The next pairs of the tree as it was at the cut, in key order, at most `max` (at
    /// least one); empty once every pair was read.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<KvPair>> {
        if self.done {
            return Ok(Vec::new());
        }
        let mut open = self.cuts.lock();
        let open = open.as_mut().filter(|o| o.number == self.number).ok_or_else(|| {
            Error::Storage(format!(
                "the backup's read of group {} ended: the group installed a snapshot or restarted meanwhile",
                self.cuts.group
            ))
        })?;
        let from = match &open.read_to {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        let max = max.max(1);
        let live: Vec<KvPair> = self.tree.scan((from.clone(), Bound::Unbounded)).take(max).collect::<Result<_>>()?;
        let to = match live.last() {
            Some((key, _)) if live.len() == max => Bound::Included(key.clone()),
            _ => Bound::Unbounded,
        };
        let mut chunk: BTreeMap<Vec<u8>, Option<Vec<u8>>> = live.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for kv in open.saved.scan((from, to.clone())) {
            let (key, value) = kv?;
            chunk.insert(key, load(&value)?);
        }
        match to {
            Bound::Included(key) => open.read_to = Some(key),
            _ => self.done = true,
        }
        Ok(chunk.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(e) = self.cuts.end(|o| o.number == self.number) {
            tracing::warn!(group = self.cuts.group, "dropping a backup's cut tree: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::storage::{MemEngine, SledEngine};

    fn put(cuts: &Cuts, tree: &dyn KvTree, pairs: &[(&str, Option<&str>)]) {
        let mut batch = WriteBatch::default();
        for (k, v) in pairs {
            match v {
                Some(v) => batch.put(k.as_bytes(), v.as_bytes()),
                None => batch.delete(k.as_bytes()),
            }
        }
        cuts.write(tree, batch).unwrap();
    }

    /// Writes interleaved with chunked reads: the reader sees exactly the tree at the cut.
    fn reads_the_tree_as_it_was(engine: Arc<dyn KvEngine>) {
        let cuts = Arc::new(Cuts::open(engine.clone(), 7).unwrap());
        let tree = engine.tree("state").unwrap();
        let keys: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
        let initial: Vec<_> = keys.iter().step_by(2).map(|k| (k.as_str(), Some("old"))).collect();
        put(&cuts, tree.as_ref(), &initial);
        let expected: Vec<KvPair> = tree.scan((Bound::Unbounded, Bound::Unbounded)).map(|kv| kv.unwrap()).collect();
        let mut cut = cuts.begin(tree.clone()).unwrap();
        assert!(cuts.begin(tree.clone()).is_err(), "one cut at a time");
        let mut read = Vec::new();
        for (round, key) in keys.iter().enumerate() {
            // Overwrite, delete and add keys on both sides of the reader's position.
            let other = &keys[(round * 7) % keys.len()];
            put(&cuts, tree.as_ref(), &[(key, Some("new")), (other, None), (key, Some("newer"))]);
            read.extend(cut.next_chunk(3).unwrap());
        }
        loop {
            let chunk = cut.next_chunk(3).unwrap();
            if chunk.is_empty() {
                break;
            }
            read.extend(chunk);
        }
        assert_eq!(read, expected);
        drop(cut);
        assert!(cuts.begin(tree).is_ok(), "an ended cut frees the group");
    }

    #[test]
    fn a_cut_reads_the_tree_as_it_was_on_both_engines() {
        reads_the_tree_as_it_was(Arc::new(MemEngine::default()));
        let dir = tempfile::tempdir().unwrap();
        reads_the_tree_as_it_was(Arc::new(SledEngine::open(dir.path()).unwrap()));
    }

    #[test]
    fn an_abandoned_cut_is_an_error_not_a_mixed_view() {
        let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
        let cuts = Arc::new(Cuts::open(engine.clone(), 1).unwrap());
        let tree = engine.tree("state").unwrap();
        put(&cuts, tree.as_ref(), &[("a", Some("1")), ("b", Some("2"))]);
        let mut cut = cuts.begin(tree).unwrap();
        cuts.abandon().unwrap();
        assert!(cut.next_chunk(10).is_err());
    }
}
