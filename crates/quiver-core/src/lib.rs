//! Quiver's domain logic, free of I/O: value types, registry definitions and their versioning,
//! entity-key encoding and hashing, the shard map, the last-writer-wins rule and TTL math; and
//! the types Quiver's API speaks (`online`, `offline`, `cluster`, `stats` reports), which
//! quiver-proto maps to and from the wire and quiver-client hands to its users.
//!
//! Everything here is deterministic so that Raft state machines can call it during `apply`
//! and property tests can exercise it exhaustively.

pub mod access;
pub mod asof;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod epoch;
pub mod error;
pub mod key;
pub mod offline;
pub mod online;
pub mod placement;
pub mod registry;
pub mod row;
pub mod shard_map;
pub mod shard_ops;
pub mod spec;
pub mod stats;
pub mod table;
pub mod time;
pub mod value;

pub use error::{Error, ErrorKind, Result};
pub use value::{Value, ValueType};
