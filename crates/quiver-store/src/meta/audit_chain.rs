//! The audit log as a hash chain in the meta group's state. Every entry the meta group
//! applies goes at the chain's next index (`0x16 | index`) with the hash of the entry before
//! it; the head (`0x17`) keeps the next index, the last hash, where the kept part starts and
//! the hash of the entry before that, and the cluster's retention. An entry's hash covers its
//! index and its stored bytes (the previous hash among them), so an entry edited, removed or
//! moved, in a data dir or a restored backup, breaks the chain where it was (`verify`, which
//! `quiverctl audit verify` runs). Retention forgets entries from the chain's start only, so
//! what is kept stays one unbroken chain. It is the cluster's (`SetAuditRetention`, at least a
//! day), never the proposing node's. Entries written before the chain began (`0x15`) are read
//! back, not verified.

use aws_lc_rs::digest::{SHA256, digest};
use quiver_core::audit::AuditEntry;
use quiver_core::shard_map::META_GROUP;
use serde::{Deserialize, Serialize};

use crate::codec::{load, store};
use crate::error::Result;
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

/// The stored layout of `Link` and `Head`.
pub const FORMAT: u8 = 1;
/// How long entries are kept until the cluster says otherwise.
pub const DEFAULT_RETENTION_MICROS: i64 = 365 * DAY_MICROS;
/// The shortest retention the cluster accepts: a mistake must not erase the log at once.
pub const MIN_RETENTION_MICROS: i64 = DAY_MICROS;
const DAY_MICROS: i64 = 86_400_000_000;

pub type Hash = [u8; 32];

/// One entry in the chain, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub format: u8,
    /// The hash of the entry before it (of the one forgotten before it, for the first kept).
    pub prev: Hash,
    pub entry: AuditEntry,
}

/// The chain's head, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub format: u8,
    /// The index the next entry gets.
    pub next: u64,
    /// The hash of the entry at `next - 1`.
    pub last: Hash,
    /// The first index still kept.
    pub first: u64,
    /// The hash of the entry at `first - 1` (zeros when none was ever forgotten).
    pub before_first: Hash,
    /// The cluster's retention; `None`: the default.
    pub retention_micros: Option<i64>,
}

impl crate::codec::Record for Link {}
impl crate::codec::Record for Head {}

impl Default for Head {
    fn default() -> Head {
        Head { format: FORMAT, next: 0, last: [0; 32], first: 0, before_first: [0; 32], retention_micros: None }
    }
}

impl Head {
    pub fn retention_micros(&self) -> i64 {
        self.retention_micros.unwrap_or(DEFAULT_RETENTION_MICROS)
    }
}

/// The hash of the entry stored as `stored` at `index`.
fn hash(index: u64, stored: &[u8]) -> Hash {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, &[&index.to_be_bytes()[..], stored].concat()).as_ref());
    out
}

/// The head as `batch` leaves it, else as `tree` holds it.
pub fn head(tree: &dyn KvTree, batch: &WriteBatch) -> Result<Head> {
    let stored = match batch.pending(keyspace::AUDIT_HEAD) {
        Some(value) => value.map(<[u8]>::to_vec),
        None => tree.get(keyspace::AUDIT_HEAD)?,
    };
    stored.map_or_else(|| Ok(Head::default()), |bytes| load(&bytes))
}

/// Appends `entries` to the chain in `batch`, first forgetting up to `budget` entries older
/// than the retention before `now`, from the chain's start.
pub fn append(
    tree: &dyn KvTree,
    batch: &mut WriteBatch,
    entries: &[AuditEntry],
    now: i64,
    budget: usize,
) -> Result<()> {
    let mut head = head(tree, batch)?;
    let cutoff = now.saturating_sub(head.retention_micros());
    for _ in 0..budget {
        if head.first >= head.next {
            break;
        }
        let key = keyspace::audit_link(head.first);
        let Some(stored) = tree.get(&key)? else { break };
        if load::<Link>(&stored)?.entry.at >= cutoff {
            break;
        }
        head.before_first = hash(head.first, &stored);
        head.first += 1;
        batch.delete(key);
    }
    for entry in entries {
        let stored = store(&Link { format: FORMAT, prev: head.last, entry: entry.clone() })?;
        head.last = hash(head.next, &stored);
        batch.put(keyspace::audit_link(head.next), stored);
        head.next += 1;
    }
    batch.put(keyspace::AUDIT_HEAD, store(&head)?);
    Ok(())
}

/// Sets the cluster's retention in `batch`.
pub fn set_retention(tree: &dyn KvTree, batch: &mut WriteBatch, micros: i64) -> Result<()> {
    let head = Head { retention_micros: Some(micros), ..head(tree, batch)? };
    batch.put(keyspace::AUDIT_HEAD, store(&head)?);
    Ok(())
}

/// The chained entries of `tree` from the newest back, while `more` says to go on.
pub fn newest_first(tree: &dyn KvTree, mut more: impl FnMut(&AuditEntry) -> bool) -> Result<Vec<AuditEntry>> {
    let range =
        (std::ops::Bound::Included(keyspace::audit_link(0)), std::ops::Bound::Included(keyspace::audit_link(u64::MAX)));
    let mut found = Vec::new();
    for kv in tree.scan(range).rev() {
        let entry = load::<Link>(&kv?.1)?.entry;
        if !more(&entry) {
            break;
        }
        found.push(entry);
    }
    Ok(found)
}

/// What `verify` found in a whole chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Entries checked, from index `first`.
    pub entries: u64,
    pub first: u64,
    /// Entries from before the chain began, not checked.
    pub unchained: u64,
}

/// Where a chain breaks, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub index: u64,
    pub why: String,
}

fn describe(entry: &AuditEntry) -> String {
    format!("{} by {} at {} µs", entry.action, entry.actor, entry.at)
}

/// Checks every link of the chain in `tree` (the meta group's state tree).
pub fn verify(tree: &dyn KvTree) -> Result<std::result::Result<Verified, Break>> {
    let head: Head = tree.get(keyspace::AUDIT_HEAD)?.map_or_else(|| Ok(Head::default()), |b| load(&b))?;
    let unchained = tree.scan_prefix(&[keyspace::AUDIT]).count() as u64;
    let (mut index, mut prev, mut before) = (head.first, head.before_first, None::<AuditEntry>);
    for kv in tree.scan_prefix(&[keyspace::AUDIT_CHAIN]) {
        let (key, stored) = kv?;
        let found = keyspace::audit_link_index(&key).unwrap_or(u64::MAX);
        if found != index {
            let why = match found > index {
                true => format!("entries {index} to {} are missing: removed", found - 1),
                false => format!("entry {found} is out of place (the kept chain starts at {})", head.first),
            };
            return Ok(Err(Break { index, why }));
        }
        let Ok(link) = load::<Link>(&stored) else {
            return Ok(Err(Break { index, why: format!("entry {index} cannot be read: it was edited") }));
        };
        if link.prev != prev {
            let why = match &before {
                Some(earlier) => format!(
                    "entry {index} ({}) does not follow entry {} ({}): one of them was edited or moved",
                    describe(&link.entry),
                    index - 1,
                    describe(earlier)
                ),
                None => format!("entry {index} ({}) is not where the kept chain starts", describe(&link.entry)),
            };
            return Ok(Err(Break { index, why }));
        }
        prev = hash(index, &stored);
        before = Some(link.entry);
        index += 1;
    }
    if index != head.next {
        let why = format!("entries {index} to {} are missing: removed", head.next.saturating_sub(1));
        return Ok(Err(Break { index, why }));
    }
    if prev != head.last {
        let why = format!("entry {} (the newest) was edited or moved", index.saturating_sub(1));
        return Ok(Err(Break { index: index.saturating_sub(1), why }));
    }
    Ok(Ok(Verified { entries: head.next - head.first, first: head.first, unchained }))
}

/// `verify` of the meta group in the data dir `data_dir` (of a stopped node, or a restored
/// backup's).
pub fn verify_data_dir(data_dir: &std::path::Path) -> Result<std::result::Result<Verified, Break>> {
    use crate::storage::{KvEngine, SledEngine};
    let online = data_dir.join("online");
    if !online.is_dir() {
        return Err(crate::error::Error::Config(format!("{} is not a node's data dir", data_dir.display())));
    }
    let engine = SledEngine::open(&online).map_err(|e| {
        crate::error::Error::Config(format!("opening {} ({e}): stop the node that uses it first", online.display()))
    })?;
    let tree = engine.tree(&keyspace::tree_name(META_GROUP, keyspace::TreePart::State))?;
    verify(tree.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{KvEngine, MemEngine};

    fn entry(at: i64, actor: &str) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.into(),
            from: "127.0.0.1:1".into(),
            node: 1,
            action: "Apply".into(),
            project: Some("rides".into()),
            detail: "applying definitions".into(),
            outcome: "ok".into(),
        }
    }

    /// A chain of `n` entries at times 0..n, written a few per batch.
    fn chain(n: i64) -> std::sync::Arc<dyn KvTree> {
        let engine = MemEngine::default();
        let tree = engine.tree("state").unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(3) {
            let mut batch = WriteBatch::default();
            let entries: Vec<_> = chunk.iter().map(|t| entry(*t, "admin")).collect();
            append(tree.as_ref(), &mut batch, &entries[..1], 0, 16).unwrap();
            append(tree.as_ref(), &mut batch, &entries[1..], 0, 16).unwrap();
            tree.write(batch).unwrap();
        }
        tree
    }

    fn broken_at(tree: &dyn KvTree) -> u64 {
        verify(tree).unwrap().expect_err("the chain should break").index
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_found_where_it_is() {
        let tree = chain(10);
        assert_eq!(verify(tree.as_ref()).unwrap(), Ok(Verified { entries: 10, first: 0, unchained: 0 }));

        let edited = chain(10);
        let mut link: Link = load(&edited.get(&keyspace::audit_link(4)).unwrap().unwrap()).unwrap();
        link.entry.actor = "someone-else".into();
        let mut batch = WriteBatch::default();
        batch.put(keyspace::audit_link(4), store(&link).unwrap());
        edited.write(batch).unwrap();
        assert_eq!(broken_at(edited.as_ref()), 5, "the entry after the edited one no longer follows it");

        let removed = chain(10);
        let mut batch = WriteBatch::default();
        batch.delete(keyspace::audit_link(6));
        removed.write(batch).unwrap();
        let gap = verify(removed.as_ref()).unwrap().unwrap_err();
        assert_eq!((gap.index, gap.why.contains("missing")), (6, true), "{gap:?}");

        let swapped = chain(10);
        let (two, seven) = (keyspace::audit_link(2), keyspace::audit_link(7));
        let (a, b) = (swapped.get(&two).unwrap().unwrap(), swapped.get(&seven).unwrap().unwrap());
        let mut batch = WriteBatch::default();
        batch.put(two, b);
        batch.put(seven, a);
        swapped.write(batch).unwrap();
        assert_eq!(broken_at(swapped.as_ref()), 2);

        let newest = chain(10);
        let mut batch = WriteBatch::default();
        batch.delete(keyspace::audit_link(9));
        newest.write(batch).unwrap();
        assert_eq!(broken_at(newest.as_ref()), 9, "the newest entry removed is missed too");
    }

    #[test]
    fn retention_forgets_from_the_start_and_the_rest_still_verifies() {
        let tree = chain(10);
        let mut batch = WriteBatch::default();
        set_retention(tree.as_ref(), &mut batch, 5).unwrap();
        // At time 9, entries before 4 are older than the retention of 5 µs; 2 per append.
        append(tree.as_ref(), &mut batch, &[entry(9, "late")], 9, 2).unwrap();
        append(tree.as_ref(), &mut batch, &[], 9, 16).unwrap();
        tree.write(batch).unwrap();
        let verified = verify(tree.as_ref()).unwrap().unwrap();
        assert_eq!((verified.first, verified.entries), (4, 7), "{verified:?}");
        assert_eq!(head(tree.as_ref(), &WriteBatch::default()).unwrap().retention_micros(), 5);
        let newest: Vec<String> = newest_first(tree.as_ref(), |_| true).unwrap().into_iter().map(|e| e.actor).collect();
        assert_eq!((newest.len(), newest[0].as_str()), (7, "late"));
    }

    #[test]
    fn the_stored_layout_is_pinned() {
        // Golden bytes: a change to `Link` or `Head` must come with a new FORMAT and a migration.
        let link = Link { format: FORMAT, prev: [7; 32], entry: entry(1, "a") };
        let golden = format!(
            "01{}0201610b3132372e302e302e313a3101054170706c7901057269646573146170706c79696e6720646566696e6974696f6e73026f6b",
            "07".repeat(32)
        );
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(&store(&link).unwrap()), golden, "format, the previous hash, then the entry");
        let bytes: Vec<u8> =
            (0..golden.len()).step_by(2).map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap()).collect();
        assert_eq!(load::<Link>(&bytes).unwrap(), link);
        let head = Head { next: 3, first: 1, retention_micros: Some(86_400), ..Head::default() };
        let bytes = store(&head).unwrap();
        assert_eq!((bytes[0], bytes[1], bytes[34]), (FORMAT, 3, 1));
        assert_eq!(load::<Head>(&bytes).unwrap(), head);
    }
}
