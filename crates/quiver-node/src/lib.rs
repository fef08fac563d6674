//! The Quiver node: a Raft-replicated, sharded online feature store over sled.
//!
//! Follow a request by module name: `api` receives it, `node` finds the Raft group,
//! `raft` replicates it, `meta` and `shard` apply it, `storage` keeps it.

pub mod api;
pub mod codec;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod identity;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod offline;
pub mod raft;
pub mod serving_log;
pub mod shard;
pub mod storage;
pub mod ui;
pub mod workers;

pub use config::Config;
pub use error::{Error, Result};
pub use node::Node;
