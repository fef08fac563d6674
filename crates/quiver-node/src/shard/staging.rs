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

use quiver_store::error::Result;
use quiver_store::keyspace::{self, REQUEST, REQUEST_EXPIRY, ROW, TreePart, tree_name};
use quiver_store::storage::{KvEngine, KvPair, KvTree, WriteBatch};

/// The key ranges a split copies to its child, in key order: rows, then request ids and
/// their expiry (the export queue between them stays).
const COPIED: [(u8, u8); 2] = [(ROW, ROW + 1), (REQUEST, REQUEST_EXPIRY + 1)];

/// Keys read and written per chunk of the background copy.
const COPY_CHUNK: usize = 2_000;
/// Keys a staged copy notes at most while its split does not come.
const MAX_NOTED: usize = 1_000_000;

/// Whether `key`, in the parent's state tree, goes to the child taking `at..=end`: a row of
/// a key hashing into it, or any request id (a retried request may name either half).
pub fn moves(key: &[u8], (at, end): (u64, u64)) -> bool {
    match key.first() {
        Some(&ROW) => keyspace::row_hash(key).is_some_and(|h| (at..=end).contains(&h)),
        Some(&REQUEST) | Some(&REQUEST_EXPIRY) => true,
        _ => false,
    }
}

/// What the `Split` entry still has to copy after a pre-copy: every copied key past
/// `through` (`scan_copied`), and again every key changed since the copy began (some of
/// them the copy read before they changed).
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
    /// Answers the last key the copy read and wrote to the child: `None` before its first
    /// chunk (the child's trees may hold an earlier attempt's), or when it failed.
    thread: Option<JoinHandle<Option<Vec<u8>>>>,
}

/// What the copying thread and the state machine both see.
#[derive(Default)]
struct Copy {
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
        if let Some(mut old) = stage.take() {
            old.stop();
        }
        let copy = Arc::new(Copy::default());
        let shared = copy.clone();
        let thread = std::thread::Builder::new().name(format!("split-copy-{child}")).spawn(move || {
            copy_moving(engine.as_ref(), parent.as_ref(), moving, child, &shared).unwrap_or_else(|e| {
                warn!(child, "copying rows ahead of a split: {e}; the split will copy them itself");
                shared.failed.store(true, Ordering::Release);
                None
            })
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
            && let Some(mut dropped) = stage.take()
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
        let through = stage.stop()?;
        (stage.child == child && stage.moving == moving).then_some(Staged { through, changed: stage.changed })
    }

    /// Drops any staged copy: the parent's tree was replaced (a snapshot installed).
    pub fn abandon(&self) {
        if let Some(mut stage) = self.lock().take() {
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
    /// Stops the copy, waiting for the chunk under way; answers how far it got.
    fn stop(&mut self) -> Option<Vec<u8>> {
        self.copy.stop.store(true, Ordering::Release);
        self.thread.take()?.join().ok().flatten()
    }
}

/// The background copy: clears the child's trees of any earlier attempt, then copies the
/// moving keys chunk by chunk until done or told to stop; answers the last key it read.
fn copy_moving(
    engine: &dyn KvEngine,
    parent: &dyn KvTree,
    moving: (u64, u64),
    child: u64,
    copy: &Copy,
) -> Result<Option<Vec<u8>>> {
    for part in TreePart::ALL {
        clear(engine.tree(&tree_name(child, part))?.as_ref())?;
    }
    let state = engine.tree(&tree_name(child, TreePart::State))?;
    let mut through = None;
    while !copy.stop.load(Ordering::Acquire) {
        let chunk: Vec<KvPair> = scan_copied(parent, through.as_deref()).take(COPY_CHUNK).collect::<Result<_>>()?;
        let Some((last, _)) = chunk.last() else {
            copy.done.store(true, Ordering::Release);
            break;
        };
        let last = last.clone();
        let mut batch = WriteBatch::default();
        for (key, value) in chunk.into_iter().filter(|(key, _)| moves(key, moving)) {
            batch.put(key, value);
        }
        state.write(batch)?;
        through = Some(last);
    }
    Ok(through)
}

/// The pairs of the copied key ranges after key `after` (from their start when `None`), in
/// key order.
pub fn scan_copied<'a>(tree: &'a dyn KvTree, after: Option<&[u8]>) -> impl Iterator<Item = Result<KvPair>> + 'a {
    let after = after.map(<[u8]>::to_vec);
    COPIED
        .into_iter()
        .flat_map(move |(start, end)| {
            let from = match &after {
                Some(key) if key.as_slice() >= [end].as_slice() => return None,
                Some(key) if key.as_slice() >= [start].as_slice() => Bound::Excluded(key.clone()),
                _ => Bound::Included(vec![start]),
            };
            Some(tree.scan((from, Bound::Excluded(vec![end]))))
        })
        .flatten()
}

/// Deletes every key of `tree`.
pub fn clear(tree: &dyn KvTree) -> Result<()> {
    let mut batch = WriteBatch::default();
    for kv in tree.scan((Bound::Unbounded, Bound::Unbounded)) {
        batch.delete(kv?.0);
    }
    tree.write(batch)
}
