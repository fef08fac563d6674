//! What a Quiver node keeps on disk, and how to read it without running a node: the storage
//! engines (`storage`) under the key spaces of `keyspace`, the encodings (`codec`), the
//! commands Raft log entries carry (`command`), the meta state machine (`meta`), what a node
//! trusts (`trust`), its configuration (`config`) and identity file (`identity`), and the
//! release and cluster version it runs (`release`). `quiver-node` runs them; `quiverctl`
//! and `quiver-backup` read them. docs/architecture.md has the whole picture.

pub mod codec;
pub mod command;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "golden"))]
#[allow(clippy::unwrap_used)] // a test helper: failing is its job
pub mod golden;
pub mod identity;
pub mod keyspace;
pub mod meta;
pub mod records;
pub mod release;
pub mod storage;
#[cfg(test)]
mod stored_forms;
pub mod token;
