//! Every key a node writes, in one place. Each Raft group `G` owns three trees of the engine
//! (four while a backup reads it); a key space is a one-byte prefix within a tree, so spaces
//! never overlap and each scans in order by itself. Every value is a record, which says its
//! format once the cluster version is 2 (`codec::store`).
//!
//! `group-G-log` (the Raft log, `raft::log_store`):
//! - `e | index`                        a log entry (big-endian index: scans run in log order)
//! - `v`, `c`, `p`                      the vote, the committed log id, the last purged log id
//!
//! `group-G-snapshot`:
//! - `current`                          the latest snapshot with its metadata
//!
//! `group-G-cut` (only while a backup reads the group, `raft::cut`):
//! - `key`                              the value `key` of the state tree had at the cut
//!
//! `group-G-state` (the state machine), Raft bookkeeping below every data key:
//! - `0x00 applied`, `0x00 membership`, `0x00 applied-time`
//! - `0x00 range`                       a shard's hash range, as its log last changed it
//! - `0x00 export-waits`                what a shard's exports wait for after it took keys
//!   over (`shard::export_order`)
//! - `0x00 frozen`                      a shard frozen for a merge, and the range it held
//! - `0x00 leftover`                    hash ranges a split gave away whose rows are still
//!   here, being swept (`shard::leftover`)
//!
//! then, in the meta group:
//! - `0x01 meta-state`                  the in-memory `MetaState`, as one value
//! - `0x01 meta-format`                 the layout version that value was written in (what a
//!   bare state is read by; in its envelope the state names its layout itself)
//! - `0x01 cluster-id`                  the cluster's id: set once (`SetClusterId`), new for a
//!   cluster restored from a backup; in backups' catalogs and export file names
//! - `0x01 cluster-version`             the cluster version in force (`upgrade`); absent: 1,
//!   the releases before cluster versions
//! - `0x01 offline-mark`                the cluster id whose mark the metadata leader wrote into
//!   the offline store (`offline::shared`)
//! - `0x06 | table | source`            a committed ingest source (content hash): no double commit
//! - `0x07 | time | source key`         when that source is forgotten
//! - `0x10 | table | day | file path`   statistics of one offline file
//! - `0x11 | table | day | node | seq`  statistics of a sample of values served online
//! - `0x12 | project | dataset name`    statistics of a saved training dataset
//! - `0x13 | table | time`              a monitor's drift report
//! - `0x14 | offline path | backup id`  a backup listing this file in place (kept from garbage
//!   collection); value: the backup's location
//! - `0x15 | time | node | seq`         an audit log entry written before the chain began (read,
//!   never written)
//! - `0x16 | index`                     an audit log entry in the hash chain, in the order the
//!   meta group applied it (`meta::audit_chain`)
//! - `0x17`                             the audit chain's head: its ends, their hashes, retention
//! - `0x18 | op id`                     a merge past its point of no return: its lower shard
//!   began absorbing (`ClaimMerge`), so it is no longer abandoned at its deadline
//! - `0x19 | backup id`                 a backup under way, and when it began cutting: garbage
//!   collection keeps what it may list (`backup::pins`)
//! - `0x1a | ingest id`                 an ingest publishing (committing its files, upserting its
//!   rows) until a leader time: no backup cuts meanwhile, so it is in one whole or not at all
//! - `0x1b | node id`                   the Quiver version the node last reported it runs
//!
//! and in shard groups:
//! - `0x02 | project | set | version | entity key`  the latest row (strings u16-length-prefixed)
//! - `0x03 | log index | position`      written rows queued for export, in write order: one
//!   write's rows of one entry, under its last row's position (one row per key before
//!   cluster version 3)
//! - `0x04 | request id`                a write's request id (applies at most once)
//! - `0x05 | time | request id`         when that id expires
//!
//! In the meta group's spaces, strings are u32-length-prefixed and days or times are
//! big-endian with the sign bit flipped, so they sort as numbers.

use quiver_core::row::WriteSeq;
use quiver_core::table::TableRef;

pub const LOG_ENTRY: u8 = b'e';
pub const LOG_VOTE: &[u8] = b"v";
pub const LOG_COMMITTED: &[u8] = b"c";
pub const LOG_PURGED: &[u8] = b"p";

pub const SNAPSHOT_CURRENT: &[u8] = b"current";

pub const APPLIED: &[u8] = b"\x00applied";
pub const MEMBERSHIP: &[u8] = b"\x00membership";
pub const APPLIED_TIME: &[u8] = b"\x00applied-time";
pub const SHARD_RANGE: &[u8] = b"\x00range";
pub const EXPORT_WAITS: &[u8] = b"\x00export-waits";
pub const FROZEN: &[u8] = b"\x00frozen";
pub const LEFTOVER: &[u8] = b"\x00leftover";

pub const META_STATE: &[u8] = b"\x01meta-state";
pub const META_FORMAT: &[u8] = b"\x01meta-format";
pub const CLUSTER_ID: &[u8] = b"\x01cluster-id";
pub const OFFLINE_MARK: &[u8] = b"\x01offline-mark";
pub const CLUSTER_VERSION: &[u8] = b"\x01cluster-version";
const SOURCE: u8 = 0x06;
pub const SOURCE_EXPIRY: u8 = 0x07;
const FILE_STATS: u8 = 0x10;
const SERVING_STATS: u8 = 0x11;
const DATASET_STATS: u8 = 0x12;
const MONITOR_RUN: u8 = 0x13;
const BACKUP_PIN: u8 = 0x14;
pub const AUDIT: u8 = 0x15;
pub const AUDIT_CHAIN: u8 = 0x16;
pub const AUDIT_HEAD: &[u8] = &[0x17];
const MERGE_CLAIM: u8 = 0x18;
pub const BACKUP_UNDER_WAY: u8 = 0x19;
pub const INGEST_PUBLISHING: u8 = 0x1a;
pub const NODE_VERSION: u8 = 0x1b;

pub const ROW: u8 = 0x02;
pub const QUEUE: u8 = 0x03;
pub const REQUEST: u8 = 0x04;
pub const REQUEST_EXPIRY: u8 = 0x05;

/// The names of a group's trees.
pub fn tree_name(group: u64, part: TreePart) -> String {
    format!("group-{group}-{}", part.name())
}

/// The group a tree of `tree_name` belongs to.
pub fn tree_group(name: &str) -> Option<u64> {
    tree_of(name).map(|(group, _)| group)
}

/// The group and part a tree of `tree_name` is.
pub fn tree_of(name: &str) -> Option<(u64, TreePart)> {
    let (group, part) = name.strip_prefix("group-")?.split_once('-')?;
    let part = TreePart::ALL.into_iter().find(|p| p.name() == part)?;
    Some((group.parse().ok()?, part))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreePart {
    Log,
    State,
    Snapshot,
    /// Values at an open backup cut of keys changed since (`raft::cut`); dropped when it ends.
    Cut,
}

impl TreePart {
    pub const ALL: [TreePart; 4] = [TreePart::Log, TreePart::State, TreePart::Snapshot, TreePart::Cut];

    fn name(self) -> &'static str {
        match self {
            TreePart::Log => "log",
            TreePart::State => "state",
            TreePart::Snapshot => "snapshot",
            TreePart::Cut => "cut",
        }
    }
}

pub fn log_entry(index: u64) -> Vec<u8> {
    [&[LOG_ENTRY][..], &index.to_be_bytes()].concat()
}

pub fn queue(seq: WriteSeq) -> Vec<u8> {
    [&[QUEUE][..], &seq.log_index.to_be_bytes(), &seq.pos.to_be_bytes()].concat()
}

/// The write position a `queue` key was made from.
pub fn queue_seq(key: &[u8]) -> Option<WriteSeq> {
    let log_index = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let pos = u32::from_be_bytes(key.get(9..13)?.try_into().ok()?);
    Some(WriteSeq { log_index, pos })
}

pub fn row(table: &TableRef, entity_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + table.project.len() + table.set.len() + entity_key.len());
    key.push(ROW);
    for part in [&table.project, &table.set] {
        key.extend_from_slice(&(part.len() as u16).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&table.version.to_be_bytes());
    key.extend_from_slice(entity_key);
    key
}

/// Where a `row` key lives in the shards' hash space: its entity key's hash; `None` for a
/// key of another space.
pub fn row_hash(key: &[u8]) -> Option<u64> {
    (key.first() == Some(&ROW)).then(|| row_entity_key(key).map(quiver_core::key::key_hash)).flatten()
}

/// The entity key a `row` key ends with.
fn row_entity_key(key: &[u8]) -> Option<&[u8]> {
    let mut at = 1;
    for _ in 0..2 {
        let len = u16::from_be_bytes(key.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2 + len;
    }
    key.get(at + size_of::<u32>()..)
}

pub fn request(id: &[u8]) -> Vec<u8> {
    [&[REQUEST][..], id].concat()
}

/// A key of an expiry index (`REQUEST_EXPIRY`, `SOURCE_EXPIRY`): `space | at | what`.
/// Times here are never negative (leader clocks), so plain big-endian sorts them.
pub fn expiry(space: u8, at: i64, what: &[u8]) -> Vec<u8> {
    [&[space][..], &at.to_be_bytes(), what].concat()
}

/// The time and the expiring key an `expiry` key was made from.
pub fn split_expiry(key: &[u8]) -> Option<(i64, &[u8])> {
    let at = i64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    Some((at, &key[9..]))
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_be_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// Days and times order as unsigned big-endian numbers once the sign bit is flipped.
fn signed_bytes(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

fn signed_from(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64)
}

fn table_prefix(space: u8, table: &TableRef) -> Vec<u8> {
    let mut key = vec![space];
    push_str(&mut key, &table.project);
    push_str(&mut key, &table.set);
    key.extend_from_slice(&table.version.to_be_bytes());
    key
}

pub fn source(table: &TableRef, source: &str) -> Vec<u8> {
    let mut key = table_prefix(SOURCE, table);
    key.extend_from_slice(source.as_bytes());
    key
}

/// Where a record of statistics comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Offline,
    Serving,
}

/// The prefix of every statistics record of `table` from `origin`; a day follows it.
pub fn stats_prefix(origin: Origin, table: &TableRef) -> Vec<u8> {
    table_prefix(if origin == Origin::Offline { FILE_STATS } else { SERVING_STATS }, table)
}

/// The day of a key under `stats_prefix` of length `prefix_len`.
pub fn stats_day(key: &[u8], prefix_len: usize) -> Option<i64> {
    signed_from(key.get(prefix_len..)?)
}

/// The smallest key of `day` under a statistics prefix.
pub fn stats_day_start(prefix: &[u8], day: i64) -> Vec<u8> {
    [prefix, &signed_bytes(day)].concat()
}

pub fn file_stats(table: &TableRef, day: i64, path: &str) -> Vec<u8> {
    [stats_day_start(&stats_prefix(Origin::Offline, table), day), path.as_bytes().to_vec()].concat()
}

pub fn serving_stats(table: &TableRef, day: i64, node: u64, seq: u64) -> Vec<u8> {
    let start = stats_day_start(&stats_prefix(Origin::Serving, table), day);
    [start.as_slice(), &node.to_be_bytes(), &seq.to_be_bytes()].concat()
}

pub fn dataset_stats(project: &str, name: &str) -> Vec<u8> {
    let mut key = vec![DATASET_STATS];
    push_str(&mut key, project);
    push_str(&mut key, name);
    key
}

pub fn monitor_runs(table: &TableRef) -> Vec<u8> {
    table_prefix(MONITOR_RUN, table)
}

pub fn monitor_run(table: &TableRef, at: i64) -> Vec<u8> {
    [monitor_runs(table), signed_bytes(at).to_vec()].concat()
}

/// The time of a key under `monitor_runs` of length `prefix_len`.
pub fn monitor_run_time(key: &[u8], prefix_len: usize) -> Option<i64> {
    signed_from(key.get(prefix_len..)?)
}

pub fn merge_claim(op: u64) -> Vec<u8> {
    [&[MERGE_CLAIM][..], &op.to_be_bytes()].concat()
}

pub fn backup_under_way(id: &str) -> Vec<u8> {
    [&[BACKUP_UNDER_WAY][..], id.as_bytes()].concat()
}

pub fn ingest_publishing(id: &str) -> Vec<u8> {
    [&[INGEST_PUBLISHING][..], id.as_bytes()].concat()
}

pub fn node_version(node: u64) -> Vec<u8> {
    [&[NODE_VERSION][..], &node.to_be_bytes()].concat()
}

/// The prefix of every pin on offline file `path`; a backup id follows it.
pub fn backup_pins(path: &str) -> Vec<u8> {
    let mut key = vec![BACKUP_PIN];
    push_str(&mut key, path);
    key
}

pub fn backup_pin(path: &str, backup: &str) -> Vec<u8> {
    [backup_pins(path), backup.as_bytes().to_vec()].concat()
}

/// An audit entry recorded at `at` by `node`, its `seq`-th.
pub fn audit(at: i64, node: u64, seq: u64) -> Vec<u8> {
    [audit_from(at), node.to_be_bytes().to_vec(), seq.to_be_bytes().to_vec()].concat()
}

/// Where audit entries at or after `at` start.
pub fn audit_from(at: i64) -> Vec<u8> {
    [vec![AUDIT], signed_bytes(at).to_vec()].concat()
}

/// The time of an audit entry's key.
pub fn audit_time(key: &[u8]) -> Option<i64> {
    signed_from(key.get(1..)?)
}

/// The `index`-th entry of the audit chain.
pub fn audit_link(index: u64) -> Vec<u8> {
    [&[AUDIT_CHAIN][..], &index.to_be_bytes()].concat()
}

/// The index of an audit chain key.
pub fn audit_link_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_times_sort_as_numbers_and_round_trip() {
        let times = [i64::MIN, -86_400, -1, 0, 1, 86_400, i64::MAX];
        let keys: Vec<_> = times.iter().map(|t| signed_bytes(*t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for t in times {
            assert_eq!(signed_from(&signed_bytes(t)), Some(t));
        }
    }

    #[test]
    fn spaces_do_not_overlap() {
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let firsts = [
            META_STATE[0],
            source(&table, "x")[0],
            row(&table, b"k")[0],
            queue(WriteSeq { log_index: 0, pos: 0 })[0],
            request(b"r")[0],
            expiry(REQUEST_EXPIRY, 0, b"r")[0],
            expiry(SOURCE_EXPIRY, 0, b"s")[0],
            file_stats(&table, 0, "f")[0],
            serving_stats(&table, 0, 1, 1)[0],
            dataset_stats("p", "d")[0],
            monitor_run(&table, 0)[0],
            backup_pin("f", "b")[0],
            audit(0, 1, 1)[0],
            audit_link(0)[0],
            AUDIT_HEAD[0],
            merge_claim(1)[0],
            backup_under_way("b")[0],
            ingest_publishing("i")[0],
            node_version(1)[0],
        ];
        let distinct: std::collections::BTreeSet<_> = firsts.iter().collect();
        assert_eq!(distinct.len(), firsts.len());
        assert!(firsts.iter().all(|b| *b > APPLIED[0]), "bookkeeping sorts below every data key");
    }

    #[test]
    fn audit_keys_sort_by_time_and_give_it_back() {
        let (early, late) = (audit(-5, 9, 9), audit(3, 1, 0));
        assert!(early < late && audit_from(-5) <= early && audit_from(3) > early);
        assert_eq!((audit_time(&early), audit_time(&late)), (Some(-5), Some(3)));
        let (first, next) = (audit_link(255), audit_link(256));
        assert!(first < next && audit_link_index(&next) == Some(256), "the chain scans in index order");
    }

    #[test]
    fn a_tree_name_gives_back_its_group() {
        for part in TreePart::ALL {
            assert_eq!(tree_group(&tree_name(42, part)), Some(42));
            assert_eq!(tree_of(&tree_name(42, part)), Some((42, part)));
        }
        assert_eq!(tree_group("__sled__default"), None);
        assert_eq!(tree_group("group-x-log"), None);
        assert_eq!(tree_group("group-1-other"), None);
    }

    #[test]
    fn a_row_key_gives_back_its_entity_key() {
        let table = TableRef { project: "proj".into(), set: "s".into(), version: 7 };
        assert_eq!(row_entity_key(&row(&table, b"\x01entity")), Some(&b"\x01entity"[..]));
        assert_eq!(row_entity_key(&[ROW, 0, 9]), None, "a cut key is not read past its end");
        let key = row(&table, b"\x01entity");
        assert_eq!(row_hash(&key), Some(quiver_core::key::key_hash(b"\x01entity")));
        // A request id can read as a row's layout; it still has no place in the hash space.
        let id = [0u8; 24];
        assert!(row_entity_key(&request(&id)).is_some());
        assert_eq!(row_hash(&request(&id)), None);
    }
}
