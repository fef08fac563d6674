//! Conversions between wire messages and Quiver's own types, one module per API area.
//! Conversions from the wire are fallible where a peer may send a name or value this
//! version does not know.

mod offline;
mod registry;
mod values;

pub use offline::*;
pub use registry::*;
pub use values::*;
