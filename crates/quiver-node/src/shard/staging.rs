//! A split's pre-copy, so the `Split` entry holds its shard for the writes of a few seconds
//! rather than for every row it moves.
//!
//! From its `PrepareSplit` entry on, each replica copies the rows and request ids that will
//! move to the child into the child's trees on a thread of its own (`Staging::start`), while
//! the shard goes on taking writes; the state machine notes every key its applies change
//! (`Staging::note`). The `Split` entry stops the copy (`Staging::finish`) and copies what it
//! had not reached, and again the keys changed behind it (`split::apply`). Any interleaving
//! of the copy and the writes ends with the child holding the parent's keys as of the
//! `Split` entry: a key the copy passed either had its last change before the copy read it,
//! or was noted.
//!
//! Staging is kept in memory only: a replica that restarted or installed a snapshot since
//! the `PrepareSplit` copies everything at the `Split` entry, as a split without staging
//! does. The shard's leader proposes the `Split` once its own copy is done.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tracing::warn;

use crate::error::Result;
use crate::keyspace::{self, REQUEST, REQUEST_EXPIRY, ROW, TreePart, tree_name};
use crate::storage::{KvEngine, KvTree, WriteBatch};

/// The key spaces a split copies to its child, in key order.
pub const COPIED: [u8; 3] = [ROW, REQUEST, REQUEST_EXPIRY];

/// Keys read and written per chunk of the background copy.
const COPY_CHUNK: usize = 2_000;
/// Keys a staged copy notes at most while its split does not come.
const MAX_NOTED: usize = 1_000_000;

/// Whether `key`, in the parent's state tree, goes to the child taking `at..=end`: a row of
/// a key hashing into it, or any request id (a retried request may name either half).
pub fn moves(key: &[u8], (at, end): (u64, u64)) -> bool {
    match key.first() {
        Some(&ROW) => {
            keyspace::row_entity_key(key).is_some_and(|k| (at..=end).contains(&quiver_core::key::key_hash(k)))
        }
        Some(&REQUEST) | Some(&REQUEST_EXPIRY) => true,
        _ => false,
    }
}

/// What the `Split` entry still has to copy after a pre-copy: every key of `COPIED` past
/// `through`, and again every key changed since the copy began (some of them the copy
/// read before they changed).
pub struct Staged {
    pub through: Vec<u8>,
    pub changed: BTreeSet<Vec<u8>>,
}

/// How far a replica's pre-copy for a split is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not staged here (never asked, restarted since, or the copy failed).
    Absent,
    Copying,
    Done,
}

/// The pre-copy of one shard: at most one split staged at a time.
#[derive(Default)]
pub struct Staging {
    stage: Mutex<Option<Stage>>,
}

struct Stage {
    child: u64,
    /// The range that moves.
    moving: (u64, u64),
    copy: Arc<Copy>,
    changed: BTreeSet<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

/// The state the copying thread shares.
#[derive(Default)]
struct Copy {
    /// The last key the copy read and wrote to the child; `None` until the child's trees
    /// are cleared of an earlier attempt and the first chunk is written.
    through: Mutex<Option<Vec<u8>>>,
    done: AtomicBool,
    failed: AtomicBool,
    stop: AtomicBool,
}

impl Staging {
    fn lock(&self) -> MutexGuard<'_, Option<Stage>> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts copying the keys of range `moving` (and the request ids) from `parent` to
    /// `child`, unless that copy is already under way or done here; a copy for another split
    /// is dropped.
    pub fn start(&self, engine: Arc<dyn KvEngine>, parent: Arc<dyn KvTree>, moving: (u64, u64), child: u64) {
        let mut stage = self.lock();
        if let Some(s) = stage.as_ref()
            && s.child == child
            && s.moving == moving
            && !s.copy.failed.load(Ordering::Acquire)
        {
            return;
        }
        if let Some(old) = stage.take() {
            old.stop();
        }
        let copy = Arc::new(Copy::default());
        let shared = copy.clone();
        let thread = std::thread::Builder::new().name(format!("split-copy-{child}")).spawn(move || {
            if let Err(e) = copy_moving(engine.as_ref(), parent.as_ref(), moving, child, &shared) {
                warn!(child, "copying rows ahead of a split: {e}; the split will copy them itself");
                shared.failed.store(true, Ordering::Release);
            }
        });
        match thread {
            Ok(thread) => *stage = Some(Stage { child, moving, copy, changed: BTreeSet::new(), thread: Some(thread) }),
            Err(e) => warn!(child, "no thread to copy rows ahead of a split: {e}"),
        }
    }

    /// Notes the keys an apply call changes, while a copy is staged. A copy whose split
    /// does not come (its operation failed or was cancelled) is dropped once it has noted
    /// `MAX_NOTED` keys, so memory stays bounded; the split, if it comes after all, copies
    /// everything.
    pub fn note(&self, batch: &WriteBatch) {
        let mut stage = self.lock();
        let Some(staged) = stage.as_mut() else { return };
        let moving = staged.moving;
        staged.changed.extend(batch.keys().filter(|k| moves(k, moving)).map(<[u8]>::to_vec));
        if staged.changed.len() > MAX_NOTED
            && let Some(dropped) = stage.take()
        {
            warn!(child = dropped.child, "a split's copy ahead noted {MAX_NOTED} writes without its split: dropped");
            dropped.stop();
        }
    }

    pub fn progress(&self, moving: (u64, u64), child: u64) -> Progress {
        match self.lock().as_ref() {
            Some(s) if s.child == child && s.moving == moving => {
                if s.copy.failed.load(Ordering::Acquire) {
                    Progress::Absent
                } else if s.copy.done.load(Ordering::Acquire) {
                    Progress::Done
                } else {
                    Progress::Copying
                }
            }
            _ => Progress::Absent,
        }
    }

    /// Ends staging, waiting for the copy's chunk under way; answers what is left to copy
    /// when a copy for this split got anywhere, `None` when the split must copy everything.
    pub fn finish(&self, moving: (u64, u64), child: u64) -> Option<Staged> {
        let mut stage = self.lock().take()?;
        stage.copy.stop.store(true, Ordering::Release);
        if let Some(thread) = stage.thread.take() {
            let _ = thread.join();
        }
        if stage.child != child || stage.moving != moving || stage.copy.failed.load(Ordering::Acquire) {
            return None;
        }
        let through = stage.copy.through.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(Staged { through, changed: std::mem::take(&mut stage.changed) })
    }

    /// Drops any staged copy: the parent's tree was replaced (a snapshot installed).
    pub fn abandon(&self) {
        if let Some(stage) = self.lock().take() {
            stage.stop();
        }
    }
}

impl Drop for Staging {
    /// The shard closed here: its copy stops too.
    fn drop(&mut self) {
        self.abandon();
    }
}

impl Stage {
    fn stop(mut self) {
        self.copy.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The background copy: clears the child's trees of any earlier attempt, then copies the
/// moving keys chunk by chunk until done or told to stop.
fn copy_moving(engine: &dyn KvEngine, parent: &dyn KvTree, moving: (u64, u64), child: u64, copy: &Copy) -> Result<()> {
    for part in TreePart::ALL {
        clear(engine.tree(&tree_name(child, part))?.as_ref())?;
    }
    let state = engine.tree(&tree_name(child, TreePart::State))?;
    let mut from = Bound::Included(vec![COPIED[0]]);
    let end = Bound::Excluded(vec![COPIED[COPIED.len() - 1] + 1]);
    loop {
        if copy.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let chunk: Vec<_> = parent.scan((from.clone(), end.clone())).take(COPY_CHUNK).collect::<Result<_>>()?;
        let Some((last, _)) = chunk.last() else { break };
        let last = last.clone();
        let mut batch = WriteBatch::default();
        for (key, value) in chunk {
            if moves(&key, moving) {
                batch.put(key, value);
            }
        }
        state.write(batch)?;
        *copy.through.lock().unwrap_or_else(|p| p.into_inner()) = Some(last.clone());
        from = Bound::Excluded(last);
    }
    if copy.through.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
        // Nothing to copy: the copy is still complete through the space's start.
        *copy.through.lock().unwrap_or_else(|p| p.into_inner()) = Some(vec![COPIED[0]]);
    }
    copy.done.store(true, Ordering::Release);
    Ok(())
}

/// Deletes every key of `tree`.
pub fn clear(tree: &dyn KvTree) -> Result<()> {
    let mut batch = WriteBatch::default();
    for kv in tree.scan((Bound::Unbounded, Bound::Unbounded)) {
        batch.delete(kv?.0);
    }
    tree.write(batch)
}
