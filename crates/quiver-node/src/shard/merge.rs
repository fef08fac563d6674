//! A merge, the inverse of a split, for neighbouring shards on the same replicas.
//!
//! The upper shard is frozen by an entry of its own log (`Freeze`): from then on it owns
//! nothing, so it takes no write and serves no read, and its rows stay as they are; the
//! range it held is kept in its `0x00 frozen` marker. Before the lower shard absorbs it, the
//! merge is claimed in the meta group (`ClaimMerge`); a merge not claimed by its deadline
//! is abandoned there (`AbandonOp`) and the upper shard thaws (`Thaw`): so a range is never
//! frozen for good, and never owned by both shards. Once its
//! export queue is empty, the lower shard's leader copies the frozen shard's rows and
//! request ids, from its own replica of it, into entries of the lower shard's log
//! (`Absorb`, in chunks), then grows the lower shard's range over the frozen one's (`Grow`).
//! The rows travel in the log, so every replica of the merged shard gets them whatever its
//! own copy of the frozen shard holds, and a snapshot carries them like any other row. A
//! range that grows is published only once the batch holding the absorbed rows is written.
//! The frozen shard's export waits come along too (`export_order`): rows of its keys may
//! still be queued one shard further back.

use quiver_core::row::WriteSeq;

use super::export_order::{self, ExportWait};
use super::{PendingWrites, Range, covered};
use quiver_store::codec::{load, store};
use quiver_store::command::{Response, ShardCommand};
use quiver_store::error::Result;
use quiver_store::keyspace::{self, EXPORT_WAITS, FROZEN, REQUEST, REQUEST_EXPIRY, ROW};
use quiver_store::storage::KvTree;

/// Key spaces a merge carries over: rows, request ids and their expiry.
pub const CARRIED: [u8; 3] = [ROW, REQUEST, REQUEST_EXPIRY];

/// Whether this replica of a shard applied its `Freeze`: it then holds every write the
/// shard took, since a frozen shard takes none. (A shard owning nothing is not enough: a
/// split's child waiting for its rows owns nothing too.)
pub fn is_frozen(tree: &dyn KvTree) -> Result<bool> {
    Ok(tree.get(FROZEN)?.is_some())
}

fn frozen_in(tree: &dyn KvTree, cache: &PendingWrites) -> Result<bool> {
    match cache.other.pending(FROZEN) {
        Some(pending) => Ok(pending.is_some()),
        None => is_frozen(tree),
    }
}

/// The `Absorb` pair that carries the frozen shard `upper`'s export waits, if it has any.
pub fn carried_waits(upper: u64, tree: &dyn KvTree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let waits = export_order::inherited(upper, tree, WriteSeq { log_index: 0, pos: 0 })?;
    if waits.is_empty() {
        return Ok(None);
    }
    Ok(Some((EXPORT_WAITS.to_vec(), export_order::encode_waits(&waits)?)))
}

/// Applies a step of a merge, the entry at `log_index` of the shard's log, to a shard
/// whose state tree is `tree`.
pub fn apply(
    tree: &dyn KvTree,
    cache: &mut PendingWrites,
    owned: &Range,
    log_index: u64,
    cmd: &ShardCommand,
) -> Result<Response> {
    let bounds = cache.bounds(owned);
    match cmd {
        ShardCommand::Freeze => {
            if frozen_in(tree, cache)? {
                return Ok(Response::Done);
            }
            let Some(held) = bounds else {
                let why = format!("shard {} owns nothing yet (a split's child waiting for its rows)", owned.shard);
                return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(why)));
            };
            cache.range = Some(None);
            cache.other.put(FROZEN, store(&held)?);
            Ok(Response::Done)
        }
        ShardCommand::Thaw => {
            let held = match cache.other.pending(FROZEN) {
                Some(pending) => pending.map(load::<(u64, u64)>).transpose()?,
                None => tree.get(FROZEN)?.map(|b| load::<(u64, u64)>(&b)).transpose()?,
            };
            if let Some(held) = held {
                cache.range = Some(Some(held));
                cache.other.delete(FROZEN);
            }
            Ok(Response::Done)
        }
        ShardCommand::Absorb { pairs } => {
            for (key, value) in pairs {
                match key.first() {
                    Some(&ROW) => {
                        let hash = keyspace::row_hash(key);
                        if hash.is_some_and(|h| !covered(bounds, h)) && !cache.rows.contains_key(key) {
                            cache.rows.insert(key.clone(), load(value)?);
                        }
                    }
                    Some(&REQUEST) => super::join_request(tree, cache, key, value)?,
                    Some(&REQUEST_EXPIRY) => cache.other.put(key.clone(), value.clone()),
                    _ if key == EXPORT_WAITS => {
                        // The absorbed waits hold back this shard's rows queued from here on.
                        let from = WriteSeq { log_index, pos: 0 };
                        let more: Vec<ExportWait> =
                            load::<Vec<ExportWait>>(value)?.into_iter().map(|w| ExportWait { from, ..w }).collect();
                        let mine: Vec<ExportWait> = match cache.other.pending(EXPORT_WAITS) {
                            Some(pending) => pending.map(load).transpose()?.unwrap_or_default(),
                            None => export_order::waits(tree)?,
                        };
                        let all = export_order::add(owned.shard, mine, &more);
                        cache.other.put(EXPORT_WAITS, export_order::encode_waits(&all)?);
                    }
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
        _ => Err(quiver_store::error::Error::Storage("not a step of a merge".into())),
    }
}
