//! A merge, the inverse of a split, for neighbouring shards on the same replicas.
//!
//! The upper shard is frozen by an entry of its own log (`Freeze`): from then on it owns
//! nothing, so it takes no write and serves no read, and its rows stay as they are. Once its
//! export queue is empty, the lower shard's leader copies the frozen shard's rows and
//! request ids, from its own replica of it, into entries of the lower shard's log
//! (`Absorb`, in chunks), then grows the lower shard's range over the frozen one's (`Grow`).
//! The rows travel in the log, so every replica of the merged shard gets them whatever its
//! own copy of the frozen shard holds, and a snapshot carries them like any other row. A
//! range that grows is published only once the batch holding the absorbed rows is written.

use super::{PendingWrites, Range, covered};
use crate::codec::decode;
use crate::command::{Response, ShardCommand};
use crate::error::Result;
use crate::keyspace::{self, REQUEST, REQUEST_EXPIRY, ROW};

/// Key spaces a merge carries over: rows, request ids and their expiry.
pub const CARRIED: [u8; 3] = [ROW, REQUEST, REQUEST_EXPIRY];

pub fn apply(cache: &mut PendingWrites, owned: &Range, cmd: &ShardCommand) -> Result<Response> {
    let bounds = cache.bounds(owned);
    match cmd {
        ShardCommand::Freeze => {
            cache.range = Some(None);
            Ok(Response::Done)
        }
        ShardCommand::Absorb { pairs } => {
            for (key, value) in pairs {
                match key.first() {
                    Some(&ROW) => {
                        let hash = keyspace::row_entity_key(key).map(quiver_core::key::key_hash);
                        if hash.is_some_and(|h| !covered(bounds, h)) && !cache.rows.contains_key(key) {
                            cache.rows.insert(key.clone(), decode(value)?);
                        }
                    }
                    Some(&REQUEST) => {
                        cache.requests.insert(key.clone());
                        cache.other.put(key.clone(), value.clone());
                    }
                    Some(&REQUEST_EXPIRY) => cache.other.put(key.clone(), value.clone()),
                    _ => {
                        let odd = format!("a merge carries rows and request ids, not key {key:02x?}");
                        return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                    }
                }
            }
            Ok(Response::Done)
        }
        ShardCommand::Grow { start, end } => match bounds {
            Some((_, e)) if e == *end => Ok(Response::Done),
            Some((s, e)) if e.checked_add(1) == Some(*start) => {
                cache.range = Some(Some((s, *end)));
                Ok(Response::Done)
            }
            other => {
                let why = format!("shard {} holds {other:?}: it cannot grow over {start:#x}..={end:#x}", owned.shard);
                Ok(Response::Rejected(quiver_core::Error::InvalidArgument(why)))
            }
        },
        _ => Err(crate::error::Error::Storage("not a step of a merge".into())),
    }
}
