//! Quiver's gRPC API (generated from `proto/quiver/v1`) and its conversions to and from
//! `quiver-core` types. Nothing else lives here.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("quiver.v1");
}

/// The descriptors of every file of the API, which server reflection answers from.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("quiver_descriptor");

/// Largest gRPC message a node or client accepts: a write of
/// `quiver_core::row::MAX_ROWS_PER_WRITE` wide rows, or a large spine, fits.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

mod convert;
mod status;

pub use convert::*;
/// Encoding and decoding of the generated messages.
pub use prost::Message;
pub use status::{error_from_status, status_from_error};
