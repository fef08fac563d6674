//! Crash points for fault tests: with `QUIVER_FAILPOINT=name` the node aborts — as abruptly
//! as `kill -9` — when it reaches the point called `name`. Unset, a point costs one
//! comparison with a value read once.

use std::sync::OnceLock;

static ACTIVE: OnceLock<Option<String>> = OnceLock::new();

pub fn hit(name: &str) {
    if ACTIVE.get_or_init(|| std::env::var("QUIVER_FAILPOINT").ok()).as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
