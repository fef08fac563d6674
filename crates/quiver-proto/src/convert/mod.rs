//! Conversions between wire messages and Quiver's own types, one module per API area.
//! Conversions from the wire are fallible where a peer may send a name or value this
//! version does not know.

mod access;
mod backup;
mod cluster;
mod monitoring;
mod offline;
mod online;
mod registry;
mod values;

pub use access::*;
pub use backup::*;
pub use cluster::*;
pub use monitoring::*;
pub use offline::*;
pub use online::*;
pub use registry::*;
pub use values::*;
