//! Why a running node must stop by itself: a peer or its own meta state says the cluster
//! removed it, or it found it cannot serve as a member (its offline store is not the
//! cluster's). The first reason set is kept; `main` stops serving and exits with it.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Halt(Arc<(Mutex<Option<String>>, Notify)>);

impl Halt {
    /// Asks the node to stop, for `why` (unless it was asked already).
    pub fn set(&self, why: impl Into<String>) {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| why.into());
        self.0.1.notify_waiters();
    }

    /// Why the node must stop, once asked.
    pub fn why(&self) -> Option<String> {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until the node is asked to stop; answers why.
    pub async fn until_set(&self) -> String {
        loop {
            let told = self.0.1.notified();
            if let Some(why) = self.why() {
                return why;
            }
            told.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_is_kept_and_wakes_the_waiter() {
        let halt = Halt::default();
        let waiter = tokio::spawn({
            let halt = halt.clone();
            async move { halt.until_set().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(halt.why(), None);
        halt.set("first");
        halt.set("second");
        assert_eq!(waiter.await.unwrap(), "first");
        assert_eq!(halt.why().as_deref(), Some("first"));
    }
}
