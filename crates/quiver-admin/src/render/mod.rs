//! How `quiverctl` prints answers: aligned tables for people, JSON for scripts (`--format
//! json`, the answer types' serde form). One module per command group.

pub mod access;
pub mod backup;
pub mod cluster;
pub mod format;
pub mod offline;
pub mod online;
pub mod registry;
pub mod stats;
