//! The offline path's CPU work (decoding files, folding events, building columns) runs on
//! a pool of one long-lived thread per core, not on tokio's blocking pool.
//!
//! Why: the blocking pool grows to a thread per concurrent call (file reads among them), and
//! a job lands on whichever of them is idle. The allocator keeps a heap per thread, so the
//! memory one job frees sat in another thread's heap when the next job, elsewhere, asked for
//! as much: every file's buffers and columns were fresh pages, which the kernel zeroes
//! first (a third of a retrieval's CPU time on a VM). A few threads that live as long as the
//! process reuse what they freed. It also bounds the work at one job per core, so online
//! reads on the runtime's workers keep their cores' share.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The pool's queue; its threads start on first use.
fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..cores {
            let rx = rx.clone();
            // A thread that cannot start leaves the others to take the jobs; with none, the
            // queue is closed and each caller gets an error.
            let _ = std::thread::Builder::new().name(format!("quiver-cpu-{i}")).spawn(move || work(&rx));
        }
        tx
    })
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panicking job fails its own caller (its sender is dropped), not the thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Runs `work` on the pool; `what` names it in the error if it panics. Work whose caller
/// has gone (a retrieval cancelled) before it started is skipped.
pub async fn run<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> crate::Result<T> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        if !tx.is_closed() {
            let _ = tx.send(work());
        }
    });
    queue().send(job).map_err(|_| failed(what))?;
    rx.await.map_err(|_| failed(what))
}

fn failed(what: &str) -> crate::Error {
    quiver_core::Error::Internal(format!("{what}: the work failed on the offline path's threads")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_and_a_panic_fails_only_its_caller() {
        let sums: Vec<u64> =
            futures::future::try_join_all((0..20u64).map(|n| run("a sum", move || (0..=n).sum()))).await.unwrap();
        assert_eq!(sums, (0..20u64).map(|n| n * (n + 1) / 2).collect::<Vec<_>>());
        let panicked = run("a panic", || -> u64 { panic!("on purpose") }).await;
        assert!(panicked.unwrap_err().to_string().contains("a panic"));
        assert_eq!(run("after it", || 7).await.unwrap(), 7, "the pool still works");
    }
}
