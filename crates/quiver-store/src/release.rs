//! The release this node runs and the cluster version it brings.
//!
//! A release that changes what members store or send each other (a stored format, a
//! command) brings a new cluster version and writes the new form only once that version is
//! in force. While an upgrade rolls through the cluster, members of the old and the new
//! release serve together in the old one's forms; once every member runs the new release an
//! operator finalizes the upgrade (`quiverctl cluster finalize-upgrade`: checked against the
//! releases members reported, then recorded as `MetaCommand::FinalizeUpgrade`), and from
//! that log entry on every member uses the new forms. A cluster this release makes starts at
//! its version. The version in force only rises, and a node refuses to start on a data dir
//! whose cluster is at a version it does not know.

/// This node's release.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The cluster version this release brings; every version up to it is known here.
/// 1: the releases before cluster versions (up to 0.1.0); 2: `FinalizeUpgrade` itself;
/// 3: a write's rows queued for export in one record (`shard::QueuedWrite` in the node).
pub const CLUSTER_VERSION: u32 = 3;
