//! Crash points for fault tests: with `QUIVER_FAILPOINT=name` the node aborts — as abruptly
//! as `kill -9` — when it reaches the point called `name`. With `QUIVER_FAILPOINT_ONCE=FILE`
//! as well, only the first process of a cluster to reach it aborts: it creates FILE first,
//! and no process fires while FILE exists. Unset, a point costs one comparison with a value
//! read once.

use std::sync::OnceLock;

struct Armed {
    name: String,
    once: Option<std::path::PathBuf>,
}

static ACTIVE: OnceLock<Option<Armed>> = OnceLock::new();

pub fn hit(name: &str) {
    let armed = ACTIVE.get_or_init(|| {
        let name = std::env::var("QUIVER_FAILPOINT").ok()?;
        Some(Armed { name, once: std::env::var_os("QUIVER_FAILPOINT_ONCE").map(Into::into) })
    });
    let Some(armed) = armed.as_ref().filter(|a| a.name == name) else { return };
    if let Some(marker) = &armed.once
        && std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_err()
    {
        return;
    }
    eprintln!("failpoint {name}: aborting");
    std::process::abort();
}
