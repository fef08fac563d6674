//! bincode 2 (serde mode) for everything the node stores or sends between nodes.
//!
//! What nodes send each other (RPCs, snapshots in flight, backup frames) is bare bincode
//! (`encode`, `decode`): the cluster version decides what a node may send. What a node
//! stores is a record (`store`, `load`): `MARK`, the format of the record's kind, then its
//! bincode. Records written before cluster version 2 are bare, and read as format 0; while
//! a cluster runs mixed releases, records stay bare so that a node of the earlier release
//! can read a snapshot or a log entry of a newer one.
//!
//! No bare record begins with `MARK`: bincode's integers, lengths, enum tags and options
//! never start with `0xFF`, and request records (`shard::requests`) begin `0xFF` then a
//! length. A kind whose layout changes raises its `Record::FORMAT`, reads the earlier
//! formats in `Record::read`, and writes its earlier form until the cluster version that
//! brings the new one is in force.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// What a stored record begins with, once records carry their format.
pub const MARK: [u8; 2] = [0xFF, 0xFF];

/// The first cluster version whose records carry their format.
pub const VERSIONED_RECORDS: u32 = 2;

/// The cluster version this process writes records for: the meta group's, as this node
/// last applied it (`meta::MetaMachine`); 1 until it has.
static CLUSTER_VERSION: AtomicU32 = AtomicU32::new(1);

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| Error::Codec(e.to_string()))
}

/// Decodes a whole value: trailing bytes are an error, so a value read as the wrong type
/// fails loudly instead of decoding into garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| Error::Codec(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after a {}",
            bytes.len() - used,
            std::any::type_name::<T>()
        )));
    }
    Ok(value)
}

/// A kind of stored record.
pub trait Record: Serialize + DeserializeOwned {
    /// The format this release writes.
    const FORMAT: u8 = 1;

    /// Reads a record stored in `format` (0: bare, before records carried their format), at
    /// most `FORMAT`. Formats 0 and 1 share a layout.
    fn read(format: u8, body: &[u8]) -> Result<Self> {
        let _ = format;
        decode(body)
    }
}

/// Follows the cluster version in force: records carry their format from version 2 on.
pub fn set_cluster_version(version: u32) {
    CLUSTER_VERSION.store(version, Ordering::Relaxed);
}

/// The cluster version this process writes records for.
pub fn cluster_version() -> u32 {
    CLUSTER_VERSION.load(Ordering::Relaxed)
}

/// Stores a record in the form the cluster version in force reads everywhere.
pub fn store<T: Record>(value: &T) -> Result<Vec<u8>> {
    store_at(value, cluster_version())
}

/// Stores a record in the form of cluster version `version`.
pub fn store_at<T: Record>(value: &T, version: u32) -> Result<Vec<u8>> {
    if version < VERSIONED_RECORDS {
        return encode(value);
    }
    // Encoding first and copying is faster than bincode's writer into a growing Vec.
    let body = encode(value)?;
    let mut out = Vec::with_capacity(MARK.len() + 1 + body.len());
    out.extend_from_slice(&MARK);
    out.push(T::FORMAT);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a record in any format this release knows.
pub fn load<T: Record>(bytes: &[u8]) -> Result<T> {
    let (format, body) = known_format::<T>(bytes)?;
    T::read(format, body)
}

/// Reads only the leading field of a record of kind `R` (a `T` in every format of `R`),
/// without decoding the rest: for checks that need one field of a large record.
pub fn load_leading<R: Record, T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (_, body) = known_format::<R>(bytes)?;
    let (value, _) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| Error::Codec(e.to_string()))?;
    Ok(value)
}

/// A record's format and body, refused by name when a later release wrote it.
fn known_format<T: Record>(bytes: &[u8]) -> Result<(u8, &[u8])> {
    let (format, body) = format_of(bytes)?;
    if format > T::FORMAT {
        return Err(Error::Codec(format!(
            "a {} in format {format}, written by a later release: this one reads formats up to {}",
            std::any::type_name::<T>(),
            T::FORMAT
        )));
    }
    Ok((format, body))
}

/// A stored record's format (0 when bare) and its body.
pub fn format_of(bytes: &[u8]) -> Result<(u8, &[u8])> {
    match bytes.strip_prefix(&MARK[..]) {
        None => Ok((0, bytes)),
        Some([format, body @ ..]) => Ok((*format, body)),
        Some([]) => Err(Error::Codec("a record that ends after its mark".into())),
    }
}

impl Record for i64 {}
impl Record for u32 {}
impl Record for String {}
impl Record for (u64, u64) {}
impl Record for Option<(u64, u64)> {}
/// A list is in its elements' format: a kind whose layout changes and that is stored in
/// lists gets a list type of its own, which reads the earlier lists.
impl<T: Record> Record for Vec<T> {
    const FORMAT: u8 = T::FORMAT;
}
impl Record for Option<Vec<u8>> {}
impl Record for quiver_core::row::StoredRow {}
impl Record for quiver_core::audit::AuditEntry {}
impl Record for quiver_core::stats::DriftReport {}
impl<N: openraft::NodeId> Record for openraft::LogId<N> {}
impl<N: openraft::NodeId> Record for Option<openraft::LogId<N>> {}
impl<N: openraft::NodeId> Record for openraft::Vote<N> {}
impl<N: openraft::NodeId, M: openraft::Node> Record for openraft::StoredMembership<N, M> {}
impl<C: openraft::RaftTypeConfig> Record for openraft::Entry<C> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_bare_before_version_2_and_carries_its_format_from_it() {
        let bare = store_at(&-3i64, 1).unwrap();
        assert_eq!(bare, [5]);
        assert_eq!(store_at(&-3i64, 2).unwrap(), [0xFF, 0xFF, 1, 5]);
        assert_eq!(load::<i64>(&bare).unwrap(), -3);
        assert_eq!(load::<i64>(&[0xFF, 0xFF, 1, 5]).unwrap(), -3);
    }

    #[test]
    fn a_record_of_a_later_format_or_cut_short_is_refused_by_name() {
        let later = load::<i64>(&[0xFF, 0xFF, 2, 5]).unwrap_err().to_string();
        assert!(later.contains("format 2") && later.contains("i64"), "{later}");
        assert!(load::<i64>(&[0xFF, 0xFF]).is_err());
    }

    #[test]
    fn a_leading_field_reads_as_the_whole_record_would() {
        use quiver_core::row::{StoredRow, WriteSeq};
        let row = StoredRow {
            event_ts: -7,
            seq: WriteSeq { log_index: 3, pos: 1 },
            written_at: 9,
            values: vec![quiver_core::Value::String("x".repeat(40))],
        };
        for version in [1, 2] {
            let stored = store_at(&row, version).unwrap();
            assert_eq!(load_leading::<StoredRow, i64>(&stored).unwrap(), row.event_ts);
        }
        assert!(load_leading::<StoredRow, i64>(&[0xFF, 0xFF, 9, 5]).unwrap_err().to_string().contains("format 9"));
    }

    #[test]
    fn no_bare_record_begins_with_the_mark() {
        // bincode's varints start below 0xFF whatever the value; so do lengths and tags.
        for n in [0u64, 250, 251, u64::from(u32::MAX), u64::MAX] {
            assert_ne!(encode(&n).unwrap()[0], 0xFF, "{n}");
            assert_ne!(encode(&(n as i64)).unwrap()[0], 0xFF, "{n}");
        }
        assert_ne!(encode(&"x".repeat(300)).unwrap()[0], 0xFF);
        assert_ne!(encode(&Some(u128::MAX)).unwrap()[0], 0xFF);
        assert_ne!(encode(&u128::MAX).unwrap()[0], 0xFF);
    }
}
