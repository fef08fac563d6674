//! Group commit: writes to a shard this node leads that arrive while earlier entries are
//! being appended and replicated share one log entry, so one Raft append, one fsync on each
//! replica and one apply serve them all.
//!
//! Each write joins the group's queue and starts a committer. A committer waits for the
//! group's slot (`IN_FLIGHT`), then takes what is queued (whole writes, up to
//! `MAX_GROUPED_ROWS` rows) and proposes it: a lone write as itself, several as one `Writes` entry, whose
//! answers go back to their writers one by one. A write that finds the slot free is proposed
//! at once, so a lone writer waits for nothing; under load the batch grows with the queue.
//! The committer runs as its own task: a writer that goes away cannot strand the others.
//!
//! Durability is unchanged: a writer is answered only after its entry is applied, which
//! openraft allows only once a quorum has flushed it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quiver_store::codec::cluster_version;
use quiver_store::command::{Command, Response, ShardCommand, Write};
use quiver_store::error::{Error, Result};
use tokio::sync::{Semaphore, oneshot};

use crate::raft::Raft;

/// Entries of one group in flight at once. Openraft 0.9 appends one entry at a time and
/// waits for its flush, so a second entry in flight gains little, while one at a time lets
/// the queue gather everything that arrives during an entry's round (measured with 64
/// single-row writers on one node: 3,300 rows/s with two in flight, 5,000 with one).
const IN_FLIGHT: usize = 1;

/// Rows of the writes one entry groups (a write alone may hold more). Entries stay the size
/// of a common client batch, as they were before grouping: a follower catching up must
/// store an AppendEntries of up to 64 entries within a heartbeat interval.
const MAX_GROUPED_ROWS: usize = 1_000;

/// The first cluster version whose nodes all read a `Writes` entry.
const GROUPED_WRITES: u32 = 2;

type Answer = oneshot::Sender<Result<(Response, u64)>>;

/// The write queue of one group.
pub struct GroupCommit {
    group: u64,
    raft: Raft,
    queue: Arc<Mutex<VecDeque<(Write, Answer)>>>,
    slots: Arc<Semaphore>,
    counts: Arc<Counts>,
}

/// Writes submitted, and the entries that carried them: the mean batch is their ratio.
#[derive(Default)]
struct Counts {
    writes: AtomicU64,
    entries: AtomicU64,
}

impl GroupCommit {
    pub fn new(group: u64, raft: &Raft) -> GroupCommit {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        GroupCommit { group, raft: raft.clone(), queue: Arc::default(), slots, counts: Arc::default() }
    }

    /// Writes committed through the queue, and the log entries that carried them.
    pub fn counts(&self) -> (u64, u64) {
        (self.counts.writes.load(Ordering::Relaxed), self.counts.entries.load(Ordering::Relaxed))
    }

    /// Proposes `write` with whatever else is waiting; answers as a lone write would be
    /// answered, with the index of the entry that carried it.
    pub async fn submit(&self, write: Write) -> Result<(Response, u64)> {
        let group = self.group;
        if cluster_version() < GROUPED_WRITES {
            // A member of an earlier release could not read a `Writes` entry.
            return crate::raft::write(&self.raft, group, Command::Shard(ShardCommand::Write(write))).await;
        }
        let (answer, answered) = oneshot::channel();
        lock(&self.queue).push_back((write, answer));
        let (queue, slots, raft, counts) =
            (self.queue.clone(), self.slots.clone(), self.raft.clone(), self.counts.clone());
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let batch = take(&queue);
            if !batch.is_empty() {
                counts.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
                counts.entries.fetch_add(1, Ordering::Relaxed);
                commit(&raft, group, batch).await;
            }
        });
        answered.await.unwrap_or_else(|_| Err(Error::Raft(format!("group {group}: the write's committer stopped"))))
    }
}

fn lock<T>(queue: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// The oldest queued writes: at least one, and as many more as fit in `MAX_GROUPED_ROWS` rows.
fn take(queue: &Mutex<VecDeque<(Write, Answer)>>) -> Vec<(Write, Answer)> {
    let mut queue = lock(queue);
    let mut rows = 0;
    let count = queue
        .iter()
        .enumerate()
        .take_while(|(i, (write, _))| {
            rows += write.rows.len();
            *i == 0 || rows <= MAX_GROUPED_ROWS
        })
        .count();
    queue.drain(..count).collect()
}

/// Proposes `batch` as one entry and answers each of its writers.
async fn commit(raft: &Raft, group: u64, mut batch: Vec<(Write, Answer)>) {
    if batch.len() == 1 {
        let (write, answer) = batch.remove(0);
        let _ = answer.send(crate::raft::write(raft, group, Command::Shard(ShardCommand::Write(write))).await);
        return;
    }
    let (writes, answers): (Vec<Write>, Vec<Answer>) = batch.into_iter().unzip();
    let count = writes.len();
    match crate::raft::write(raft, group, Command::Shard(ShardCommand::Writes(writes))).await {
        Ok((Response::Batch(each), index)) if each.len() == count => {
            for (answer, response) in answers.into_iter().zip(each) {
                let _ = answer.send(match response {
                    Response::Rejected(e) => Err(e.into()),
                    done => Ok((done, index)),
                });
            }
        }
        Ok((other, _)) => {
            for answer in answers {
                let why = format!("group {group}: {count} writes committed together were answered {other:?}");
                let _ = answer.send(Err(Error::Raft(why)));
            }
        }
        Err(e) => {
            for answer in answers {
                // `raft::write` fails with these two only; any other keeps its message.
                let shared = match &e {
                    Error::Core(core) => Error::Core(core.clone()),
                    Error::Raft(why) => Error::Raft(why.clone()),
                    other => Error::Raft(other.to_string()),
                };
                let _ = answer.send(Err(shared));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::table::TableRef;
    use quiver_store::command::ShardRow;

    use super::*;

    fn queued(rows: &[usize]) -> Mutex<VecDeque<(Write, Answer)>> {
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let row = ShardRow { key: vec![1], event_ts: 1, values: Vec::new() };
        let write = |n| Write { table: table.clone(), rows: vec![row.clone(); n], export: false, once: None };
        Mutex::new(rows.iter().map(|n| (write(*n), oneshot::channel().0)).collect())
    }

    fn taken(queue: &Mutex<VecDeque<(Write, Answer)>>) -> Vec<usize> {
        take(queue).iter().map(|(w, _)| w.rows.len()).collect()
    }

    #[test]
    fn an_entry_groups_whole_writes_up_to_its_rows_and_a_big_write_goes_alone() {
        let queue = queued(&[600, 300, 200, 5_000, 1, 1]);
        assert_eq!(taken(&queue), [600, 300], "the next would pass the limit");
        assert_eq!(taken(&queue), [200], "a write that would pass it waits for an entry of its own");
        assert_eq!(taken(&queue), [5_000], "a write above the limit goes alone");
        assert_eq!(taken(&queue), [1, 1]);
        assert!(taken(&queue).is_empty());
    }
}
