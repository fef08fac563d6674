//! The Quiver node: a Raft-replicated, sharded online feature store over sled.
//!
//! Follow a request by module name: `api` receives it, `node` hands it the parts it needs
//! (`groups`, `meta_reader`, `proposer`), `raft` replicates what `command` carries, `meta`
//! and `shard` apply it, `storage` keeps it under the keys of `keyspace`. `server` assembles
//! a node and starts the `workers`. docs/architecture.md has the whole picture.

// A request's future nests its whole path (admission, audit, the online read with its
// forwarded parts); the default limit of 128 was reached computing one's layout.
#![recursion_limit = "256"]

pub mod api;
pub(crate) mod auth;
pub mod backup;
pub(crate) mod failpoint;
pub(crate) mod group_commit;
pub(crate) mod groups;
pub(crate) mod halt;
pub(crate) mod hosting;
pub(crate) mod identity;
pub(crate) mod meta_reader;
pub(crate) mod metrics;
pub(crate) mod monitoring;
pub(crate) mod node;
pub(crate) mod offline;
pub(crate) mod online;
pub(crate) mod proposer;
pub(crate) mod raft;
pub(crate) mod server;
pub(crate) mod serving_log;
pub(crate) mod shard;
#[cfg(test)]
mod stored_forms;
pub(crate) mod streaming;
pub(crate) mod tls;
pub(crate) mod transfer;
pub(crate) mod trust;
pub(crate) mod ui;
pub(crate) mod workers;

pub use node::Node;
pub use quiver_store::config::Config;
pub use quiver_store::error::{Error, Result};
pub use server::start;
