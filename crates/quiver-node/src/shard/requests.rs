//! Request ids: a write carrying one applies each of its rows at most once, whichever shard
//! holds the row's key. A client sends one request in parts, one per shard, all with the
//! request's id and each row's position in the request; a shard records, per id, which
//! positions it applied. A split copies the records to the child and a merge joins both
//! shards' records, so a part retried after either (grouped by a newer shard map, with other
//! rows beside it) applies only the rows no shard applied before.
//!
//! Stored at `keyspace::request(id)` as a record (`codec::store`) in format 1. Before cluster
//! version 2 it was bare: `0xFF` then `Bare` or, in versions before that, the first time as
//! 8 big-endian bytes under `id ++ shard`, for a whole part: read as "every position
//! applied" until it expires.

use serde::{Deserialize, Serialize};

use quiver_store::codec::{self, Record, VERSIONED_RECORDS, decode, encode};
use quiver_store::error::{Error, Result};

/// The first byte of a bare record (the legacy form starts with a time's high byte, 0).
const BARE_V1: u8 = 0xFF;

/// When an id was first seen here, and the positions of its rows applied here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub at: i64,
    /// A bitmap by position; `None` for a legacy record: every position.
    applied: Option<Vec<u8>>,
}

impl Record for RequestRecord {}

/// A bare record's layout after `BARE_V1`.
#[derive(Serialize, Deserialize)]
struct Bare {
    at: i64,
    applied: Vec<u8>,
}

impl RequestRecord {
    pub fn new(at: i64) -> RequestRecord {
        RequestRecord { at, applied: Some(Vec::new()) }
    }

    pub fn decode(bytes: &[u8]) -> Result<RequestRecord> {
        match codec::format_of(bytes)? {
            (0, _) => Self::decode_bare(bytes),
            _ => codec::load(bytes),
        }
    }

    fn decode_bare(bytes: &[u8]) -> Result<RequestRecord> {
        match bytes.split_first() {
            Some((&BARE_V1, rest)) => {
                let bare: Bare = decode(rest)?;
                Ok(RequestRecord { at: bare.at, applied: Some(bare.applied) })
            }
            _ => {
                let legacy = <[u8; 8]>::try_from(bytes)
                    .map_err(|_| Error::Storage(format!("a request record of {} bytes", bytes.len())))?;
                Ok(RequestRecord { at: i64::from_be_bytes(legacy), applied: None })
            }
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        self.encode_at(codec::cluster_version())
    }

    /// In the form of cluster version `version`.
    fn encode_at(&self, version: u32) -> Result<Vec<u8>> {
        if version >= VERSIONED_RECORDS {
            return codec::store_at(self, version);
        }
        match &self.applied {
            Some(applied) => {
                let bare = encode(&Bare { at: self.at, applied: applied.clone() })?;
                Ok([&[BARE_V1][..], &bare].concat())
            }
            None => Ok(self.at.to_be_bytes().to_vec()),
        }
    }

    /// Marks `position` applied; false when it was before.
    pub fn insert(&mut self, position: u32) -> bool {
        let Some(applied) = &mut self.applied else { return false };
        let (byte, bit) = ((position / 8) as usize, 1u8 << (position % 8));
        if applied.len() <= byte {
            applied.resize(byte + 1, 0);
        }
        let fresh = applied[byte] & bit == 0;
        applied[byte] |= bit;
        fresh
    }

    /// Adds what `other` (the same id's record in another shard) applied.
    pub fn join(&mut self, other: &RequestRecord) {
        self.at = self.at.max(other.at);
        match (&mut self.applied, &other.applied) {
            (Some(mine), Some(theirs)) => {
                if mine.len() < theirs.len() {
                    mine.resize(theirs.len(), 0);
                }
                mine.iter_mut().zip(theirs).for_each(|(m, t)| *m |= t);
            }
            (_, None) => self.applied = None,
            (None, Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_forms_keep_their_bytes() {
        let mut record = RequestRecord::new(1_000);
        assert!(record.insert(0) && record.insert(9) && !record.insert(9));
        let bare = record.encode_at(1).unwrap();
        assert_eq!(bare, [0xFF, 251, 208, 7, 2, 1, 2], "a changed encoding needs a migration");
        assert_eq!(RequestRecord::decode(&bare).unwrap(), record);
        let versioned = record.encode_at(2).unwrap();
        assert_eq!(versioned, [0xFF, 0xFF, 1, 251, 208, 7, 1, 2, 1, 2]);
        assert_eq!(RequestRecord::decode(&versioned).unwrap(), record);
        // A record of an earlier version: a time, for a whole part.
        let mut legacy = RequestRecord::decode(&1_000i64.to_be_bytes()).unwrap();
        assert_eq!(legacy.at, 1_000);
        assert!(!legacy.insert(3), "every position of a legacy record was applied");
        assert_eq!(RequestRecord::decode(&legacy.encode_at(2).unwrap()).unwrap(), legacy, "and stays so");
        assert!(RequestRecord::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_join_holds_what_either_applied_and_the_later_time() {
        let (mut a, mut b) = (RequestRecord::new(5), RequestRecord::new(7));
        a.insert(1);
        b.insert(20);
        a.join(&b);
        assert_eq!(a.at, 7);
        assert!(!a.insert(1) && !a.insert(20) && a.insert(2));
        a.join(&RequestRecord::decode(&3i64.to_be_bytes()).unwrap());
        assert!(!a.insert(100), "joined with a legacy record: every position");
    }
}
