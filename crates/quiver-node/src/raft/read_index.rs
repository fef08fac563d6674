//! Linearizable reads share read-index rounds. A round (confirm leadership with a quorum,
//! then wait until the state machine has applied the read index) serves every read that
//! arrived before it started; reads arriving meanwhile wait for the next round, which
//! starts as soon as this one ends. So under load one quorum round-trip serves many reads,
//! and no read is answered by a round that began before it arrived.
//!
//! A successful round also grants a lease, as TiKV's lease reads do: a quorum acknowledged
//! this leader after the round began, and each of those voters refuses to vote for anyone
//! else until an election timeout has passed since; so no other leader can exist, and no
//! write can be acknowledged elsewhere, before `round start + lease` when the lease is below
//! the shortest election timeout. Until then reads need no round: every write acknowledged so
//! far was applied here (this leader answers a write after applying it, and the first round
//! of its term applied everything committed before it). Time is the monotonic clock, so a
//! paused process wakes up with its lease expired.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::{NodeId, Raft};

type RoundError = RaftError<NodeId, CheckIsLeaderError<NodeId, openraft::BasicNode>>;
type Waiter = oneshot::Sender<Result<(), RoundError>>;

pub struct ReadIndex {
    state: Mutex<Batch>,
    /// Zero turns lease reads off.
    lease: Duration,
    reads: AtomicU64,
    rounds: AtomicU64,
}

#[derive(Default)]
struct Batch {
    running: bool,
    waiting: Vec<Waiter>,
    /// Reads before this instant need no round.
    lease_until: Option<Instant>,
}

impl ReadIndex {
    pub fn new(lease: Duration) -> ReadIndex {
        ReadIndex { state: Mutex::default(), lease, reads: AtomicU64::new(0), rounds: AtomicU64::new(0) }
    }

    /// Returns once reads of `raft`'s state machine reflect every write acknowledged
    /// before the call.
    pub async fn wait(self: &Arc<Self>, raft: &Raft) -> Result<(), RoundError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut batch = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let leased = batch.lease_until.is_some_and(|until| Instant::now() < until);
            if leased && raft.metrics().borrow().state == ServerState::Leader {
                return Ok(());
            }
            batch.waiting.push(tx);
            !std::mem::replace(&mut batch.running, true)
        };
        if start {
            tokio::spawn(self.clone().run(raft.clone()));
        }
        // The sender is dropped only if the rounds' task died: fall back to a round of our own.
        match rx.await {
            Ok(result) => result,
            Err(_) => raft.ensure_linearizable().await.map(drop),
        }
    }

    /// Ends the lease: reads need a round again (leadership is about to move).
    pub fn revoke(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).lease_until = None;
    }

    /// Linearizable reads asked for, and read-index rounds run for them, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.rounds.load(Ordering::Relaxed))
    }

    /// Runs rounds until no read is waiting.
    async fn run(self: Arc<Self>, raft: Raft) {
        loop {
            let waiting = {
                let mut batch = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if batch.waiting.is_empty() {
                    batch.running = false;
                    return;
                }
                std::mem::take(&mut batch.waiting)
            };
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = raft.ensure_linearizable().await.map(drop);
            if result.is_ok() && !self.lease.is_zero() {
                let mut batch = self.state.lock().unwrap_or_else(|p| p.into_inner());
                batch.lease_until = batch.lease_until.max(Some(started + self.lease));
            }
            for waiter in waiting {
                let _ = waiter.send(result.clone());
            }
        }
    }
}
