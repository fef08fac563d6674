//! Fault points for tests. Crash points: with `QUIVER_FAILPOINT=name` the node aborts — as
//! abruptly as `kill -9` — when it reaches the point called `name`. With
//! `QUIVER_FAILPOINT_ONCE=FILE` as well, only the first process of a cluster to reach it
//! aborts: it creates FILE first, and no process fires while FILE exists. Delay points: with
//! `QUIVER_DELAY=name:MS` the node waits MS milliseconds each time it reaches `name` (a slow
//! disk or a busy replica). Unset, a point costs one comparison with a value read once.
//!
//! Only a build with the `failpoints` feature has them (the test crate asks for it, so the
//! binaries `cargo nextest run --workspace` builds do); in any other build every point is
//! empty, and a node started with the variables set says so (`warn_if_missing`).

#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// The variables that arm points.
const VARIABLES: [&str; 2] = ["QUIVER_FAILPOINT", "QUIVER_DELAY"];

/// Logs, in a build without fail points, that the variables arming them are ignored.
pub fn warn_if_missing() {
    if cfg!(feature = "failpoints") {
        return;
    }
    for variable in VARIABLES.iter().filter(|v| std::env::var_os(v).is_some()) {
        tracing::warn!("{variable} is set but this build has no fail points (build with --features failpoints)");
    }
}

#[cfg(feature = "failpoints")]
struct Armed {
    name: String,
    once: Option<std::path::PathBuf>,
}

#[cfg(feature = "failpoints")]
static ACTIVE: OnceLock<Option<Armed>> = OnceLock::new();
#[cfg(feature = "failpoints")]
static DELAY: OnceLock<Option<(String, std::time::Duration)>> = OnceLock::new();

/// Waits at delay point `name` when `QUIVER_DELAY` names it.
#[cfg(feature = "failpoints")]
pub async fn delay(name: &str) {
    let delay = DELAY.get_or_init(|| {
        let value = std::env::var("QUIVER_DELAY").ok()?;
        let (point, ms) = value.split_once(':')?;
        Some((point.to_string(), std::time::Duration::from_millis(ms.parse().ok()?)))
    });
    if let Some((_, pause)) = delay.as_ref().filter(|(point, _)| point == name) {
        tracing::info!(point = name, ms = pause.as_millis() as u64, "waiting at a delay point");
        tokio::time::sleep(*pause).await;
    }
}

/// Aborts at crash point `name` when `QUIVER_FAILPOINT` names it.
#[cfg(feature = "failpoints")]
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

#[cfg(not(feature = "failpoints"))]
pub async fn delay(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
pub fn hit(_name: &str) {}
