//! One module per command group; each fetches its answer and prints it with `render`.

pub mod access;
pub mod backup;
pub mod cert;
pub mod cluster;
pub mod demo;
pub mod offline;
pub mod online;
pub mod registry;
pub mod stats;
