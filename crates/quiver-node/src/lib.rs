//! The Quiver node: a Raft-replicated, sharded online feature store over sled.
//!
//! Follow a request by module name: `api` receives it, `node` hands it the parts it needs
//! (`groups`, `meta_reader`, `proposer`), `raft` replicates what `command` carries, `meta`
//! and `shard` apply it, `storage` keeps it under the keys of `keyspace`. `server` assembles
//! a node and starts the `workers`. docs/architecture.md has the whole picture.

pub mod api;
pub mod auth;
pub mod backup;
pub mod codec;
pub mod command;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod groups;
pub mod halt;
pub mod hosting;
pub mod identity;
pub mod keyspace;
pub mod meta;
pub mod meta_reader;
pub mod metrics;
pub mod monitoring;
pub mod node;
pub mod offline;
pub mod online;
pub mod proposer;
pub mod raft;
pub mod records;
pub mod server;
pub mod serving_log;
pub mod shard;
pub mod storage;
pub mod streaming;
pub mod tls;
pub mod transfer;
pub mod trust;
pub mod ui;
pub mod workers;

pub use config::Config;
pub use error::{Error, Result};
pub use node::Node;
pub use server::start;
