//! Flushes shared between callers: every Raft group of a node appends to one engine, and a
//! flush makes everything written before it durable, so callers that ask while a flush is
//! running wait for the next one and all share it, instead of each paying for its own.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::Result;

#[derive(Default)]
pub struct SharedFlush {
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Default)]
struct State {
    /// Callers so far; a caller's ticket is the count when it asked.
    asked: u64,
    /// The tickets the last finished flush covers: all up to this one.
    covered: u64,
    running: bool,
    /// Why the last finished flush failed.
    failed: Option<String>,
}

impl SharedFlush {
    /// Returns once a flush (`flush`) that started after this call has finished, running it
    /// here when none is running.
    pub fn run(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut state = self.lock();
        state.asked += 1;
        let ticket = state.asked;
        loop {
            if state.covered >= ticket {
                // A later flush may have failed after ours succeeded: reported anyway, as an
                // engine that failed to flush cannot be trusted with what follows.
                return state.failed.clone().map_or(Ok(()), |e| Err(crate::error::Error::Storage(e)));
            }
            if !state.running {
                state.running = true;
                let covers = state.asked;
                drop(state);
                let result = flush();
                let mut state = self.lock();
                state.running = false;
                state.covered = covers;
                state.failed = result.as_ref().err().map(ToString::to_string);
                self.finished.notify_all();
                return result;
            }
            state = self.finished.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Each caller's write is in the flush it returns after, and callers at once share flushes.
    #[test]
    fn every_caller_returns_after_a_flush_that_saw_its_write() {
        let shared = SharedFlush::default();
        let (written, durable, flushes) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        shared
                            .run(|| {
                                flushes.fetch_add(1, Ordering::SeqCst);
                                let seen = written.load(Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                durable.fetch_max(seen, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= mine, "returned before its write was flushed");
                    }
                });
            }
        });
        assert!(flushes.load(Ordering::SeqCst) < 1_600, "8 callers at once never shared a flush");
    }

    #[test]
    fn a_failed_flush_fails_its_callers() {
        let shared = SharedFlush::default();
        let failed = shared.run(|| Err(crate::error::Error::Storage("disk full".into())));
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        shared.run(|| Ok(())).unwrap();
    }
}
