//! Export order across shards: a key's rows reach the offline store in the order they were
//! written, also when the key changed shard, because the offline store breaks ties between
//! equal event times by ingestion order (`row::supersedes`).
//!
//! A shard that takes keys over (a split's child, a merge's survivor) may get them while
//! rows of theirs are still queued for export in the shard that held them. So it records an
//! `ExportWait`: its own rows from `from` on are not exported before that shard has exported
//! through `through` (its last queued row at that moment), or has left the shard map (a
//! merged shard leaves only once its queue is empty). A child inherits its parent's waits
//! and a survivor its absorbed neighbour's, since rows of the keys they took may sit one
//! shard further back.
//!
//! Waits never form a cycle: a wait holds back rows queued after the split or merge that
//! made it, for rows queued before it, so a cycle would need each event before the other.

use std::ops::Bound;

use quiver_core::row::WriteSeq;
use serde::{Deserialize, Serialize};

use quiver_store::codec::{load, store};
use quiver_store::error::Result;
use quiver_store::keyspace::{self, EXPORT_WAITS, QUEUE};
use quiver_store::storage::KvTree;

/// This shard's rows from `from` on wait for shard `shard` to export through `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportWait {
    pub shard: u64,
    pub through: WriteSeq,
    pub from: WriteSeq,
}

impl quiver_store::codec::Record for ExportWait {}

/// The waits stored in a shard's state tree (none before any split or merge).
pub fn waits(tree: &dyn KvTree) -> Result<Vec<ExportWait>> {
    Ok(tree.get(EXPORT_WAITS)?.map(|b| load(&b)).transpose()?.unwrap_or_default())
}

pub fn encode_waits(waits: &[ExportWait]) -> Result<Vec<u8>> {
    store(&waits.to_vec())
}

/// The newest row in a shard's export queue, if any.
pub fn last_queued(tree: &dyn KvTree) -> Result<Option<WriteSeq>> {
    let queue = (Bound::Included(vec![QUEUE]), Bound::Excluded(vec![QUEUE + 1]));
    let Some(kv) = tree.scan(queue).next_back() else { return Ok(None) };
    let key = kv?.0;
    keyspace::queue_seq(&key)
        .map(Some)
        .ok_or_else(|| quiver_store::error::Error::Storage(format!("bad queue key {key:02x?}")))
}

/// The waits of a shard that takes keys over from `from_shard` (whose state tree is
/// `from_tree`), its own rows from `from` on: the other's waits, and the other's queue.
pub fn inherited(from_shard: u64, from_tree: &dyn KvTree, from: WriteSeq) -> Result<Vec<ExportWait>> {
    let mut inherited: Vec<ExportWait> = waits(from_tree)?.into_iter().map(|w| ExportWait { from, ..w }).collect();
    if let Some(through) = last_queued(from_tree)? {
        inherited.push(ExportWait { shard: from_shard, through, from });
    }
    Ok(inherited)
}

/// `mine` with `more` added: a shard never waits for itself (its own queue is in order).
pub fn add(shard: u64, mut mine: Vec<ExportWait>, more: &[ExportWait]) -> Vec<ExportWait> {
    for wait in more {
        if wait.shard != shard && !mine.contains(wait) {
            mine.push(*wait);
        }
    }
    mine
}

/// How many of the queued rows `queue` (oldest first) may be exported now: those before the
/// first row that a wait not yet `met` holds back.
pub fn exportable(queue: &[WriteSeq], waits: &[ExportWait], met: impl Fn(&ExportWait) -> bool) -> usize {
    let held_from = waits.iter().filter(|w| !met(w)).map(|w| w.from).min();
    queue.iter().take_while(|seq| held_from.is_none_or(|from| **seq < from)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(log_index: u64, pos: u32) -> WriteSeq {
        WriteSeq { log_index, pos }
    }

    #[test]
    fn the_stored_form_keeps_its_bytes() {
        let waits = vec![ExportWait { shard: 3, through: seq(300, 2), from: seq(0, 0) }];
        let bytes = encode_waits(&waits).unwrap();
        assert_eq!(bytes, [1, 3, 251, 44, 1, 2, 0, 0], "a changed encoding needs a migration");
        assert_eq!(load::<Vec<ExportWait>>(&bytes).unwrap(), waits);
    }

    #[test]
    fn rows_before_a_wait_go_and_rows_after_it_stay_until_it_is_met() {
        let queue = [seq(1, 0), seq(5, 0), seq(5, 1), seq(9, 0)];
        let wait = ExportWait { shard: 2, through: seq(40, 0), from: seq(5, 1) };
        assert_eq!(exportable(&queue, &[wait], |_| false), 2);
        assert_eq!(exportable(&queue, &[wait], |_| true), 4);
        assert_eq!(exportable(&queue, &[], |_| false), 4);
        let earlier = ExportWait { from: seq(0, 0), ..wait };
        assert_eq!(exportable(&queue, &[wait, earlier], |w| w.from == wait.from), 0);
    }

    #[test]
    fn a_shard_never_waits_for_itself_or_twice_for_the_same() {
        let wait = ExportWait { shard: 2, through: seq(4, 0), from: seq(0, 0) };
        let own = ExportWait { shard: 7, ..wait };
        assert_eq!(add(7, vec![wait], &[wait, own]), vec![wait]);
    }
}
