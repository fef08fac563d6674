//! Recently read values of chosen trees (a node's shard states, which online reads get rows
//! from) kept in memory in front of the engine: bounded in bytes, least recently used first out.
//!
//! It wraps the engine, so every handle of a tree shares one cache and every change reaches
//! it: `KvTree::write` drops the keys it touched once the engine has applied them, and
//! `drop_tree` forgets the tree. A read that missed fills the cache only if no write to its
//! tree ended meanwhile (the tree's generation is unchanged); otherwise a value read just
//! before a write could be cached after the write dropped its key, and served stale from then on.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use super::kv::{KvEngine, KvPair, KvTree, WriteBatch};
use crate::error::Result;

/// Bytes an entry costs beyond its key and value: the list node, the map slot, two vectors.
const ENTRY_OVERHEAD: usize = 96;

/// The cache's counters since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub entries: u64,
}

/// The values, keyed by tree id and key, and the bytes they take.
struct Entries {
    lru: LruCache<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

pub struct RowCache {
    budget: usize,
    entries: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RowCache {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: entries.bytes as u64,
            entries: entries.lru.len() as u64,
        }
    }

    /// Caches `value` of `key` read from `slot`'s tree at `generation`, unless a write has
    /// ended since (the generation moved on) or the value alone is over the budget.
    fn insert(&self, slot: &Slot, generation: u64, key: Vec<u8>, value: Vec<u8>) {
        let cost = key.len() + value.len() + ENTRY_OVERHEAD;
        if cost > self.budget {
            return;
        }
        let mut entries = self.lock();
        if slot.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        entries.bytes += cost;
        if let Some((key, old)) = entries.lru.push(key, value) {
            entries.bytes -= key.len() + old.len() + ENTRY_OVERHEAD;
        }
        while entries.bytes > self.budget {
            let Some((key, value)) = entries.lru.pop_lru() else { break };
            entries.bytes -= key.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// One tree's place in the cache: the prefix of its keys there, and its generation, bumped
/// (under the cache's lock) by every write that ends.
struct Slot {
    id: u64,
    generation: AtomicU64,
}

impl Slot {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + key.len());
        k.extend_from_slice(&self.id.to_be_bytes());
        k.extend_from_slice(key);
        k
    }
}

/// An engine whose trees named as `cached` chooses read through a `RowCache` of `budget` bytes.
pub struct CachingEngine {
    inner: Arc<dyn KvEngine>,
    cache: Arc<RowCache>,
    cached: fn(&str) -> bool,
    slots: Mutex<(u64, HashMap<String, Arc<Slot>>)>,
}

impl CachingEngine {
    pub fn new(inner: Arc<dyn KvEngine>, budget: usize, cached: fn(&str) -> bool) -> CachingEngine {
        let entries = Entries { lru: LruCache::unbounded(), bytes: 0 };
        let cache =
            RowCache { budget, entries: Mutex::new(entries), hits: AtomicU64::new(0), misses: AtomicU64::new(0) };
        CachingEngine { inner, cache: Arc::new(cache), cached, slots: Mutex::new((0, HashMap::new())) }
    }

    pub fn cache(&self) -> Arc<RowCache> {
        self.cache.clone()
    }

    fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (next, by_name) = &mut *slots;
        by_name
            .entry(name.to_string())
            .or_insert_with(|| {
                *next += 1;
                Arc::new(Slot { id: *next, generation: AtomicU64::new(0) })
            })
            .clone()
    }
}

impl KvEngine for CachingEngine {
    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>> {
        let tree = self.inner.tree(name)?;
        match (self.cached)(name) && self.cache.budget > 0 {
            true => Ok(Arc::new(CachedTree { tree, slot: self.slot(name), cache: self.cache.clone() })),
            false => Ok(tree),
        }
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// The tree's entries stay until they age out: a tree opened later under the same name
    /// gets a new slot, so none of them is ever read again.
    fn drop_tree(&self, name: &str) -> Result<()> {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).1.remove(name);
        let result = self.inner.drop_tree(name);
        if let Some(slot) = slot {
            let _entries = self.cache.lock();
            slot.generation.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn tree_names(&self) -> Result<Vec<String>> {
        self.inner.tree_names()
    }
}

struct CachedTree {
    tree: Arc<dyn KvTree>,
    slot: Arc<Slot>,
    cache: Arc<RowCache>,
}

impl KvTree for CachedTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cache_key = self.slot.key(key);
        if let Some(value) = self.cache.lock().lru.get(&cache_key) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(value.clone()));
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        // Read before the engine is: a write that ends after this changes it, and the value
        // read may then be older than that write.
        let generation = self.slot.generation.load(Ordering::SeqCst);
        let value = self.tree.get(key)?;
        if let Some(v) = &value {
            self.cache.insert(&self.slot, generation, cache_key, v.clone());
        }
        Ok(value)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let keys: Vec<Vec<u8>> = batch.keys().map(|k| self.slot.key(k)).collect();
        let result = self.tree.write(batch);
        // Even a failed write may have changed some keys: forget them all.
        let mut entries = self.cache.lock();
        for key in &keys {
            if let Some(value) = entries.lru.pop(key) {
                entries.bytes -= key.len() + value.len() + ENTRY_OVERHEAD;
            }
        }
        self.slot.generation.fetch_add(1, Ordering::SeqCst);
        result
    }

    fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Box<dyn DoubleEndedIterator<Item = Result<KvPair>> + '_> {
        self.tree.scan(range)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<KvPair>> + '_> {
        self.tree.scan_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

    use proptest::prelude::*;

    use super::*;
    use crate::storage::MemEngine;

    fn put(tree: &dyn KvTree, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::default();
        batch.put(key.to_vec(), value.to_vec());
        tree.write(batch).unwrap();
    }

    proptest! {
        /// Reads through a cache far smaller than the data, between puts and deletes, give what
        /// a plain map holds; the cache never holds more than its budget.
        #[test]
        fn reads_what_was_last_written(ops in prop::collection::vec((0u8..3, 0u8..12, 0usize..200), 1..300)) {
            let engine = CachingEngine::new(Arc::new(MemEngine::default()), 1_000, |_| true);
            let tree = engine.tree("t").unwrap();
            let mut model = BTreeMap::new();
            for (op, key, len) in ops {
                let key = vec![key];
                match op {
                    0 => {
                        let value = vec![len as u8; len];
                        put(tree.as_ref(), &key, &value);
                        model.insert(key, value);
                    }
                    1 => {
                        let mut batch = WriteBatch::default();
                        batch.delete(key.clone());
                        tree.write(batch).unwrap();
                        model.remove(&key);
                    }
                    _ => prop_assert_eq!(tree.get(&key).unwrap(), model.get(&key).cloned()),
                }
                prop_assert!(engine.cache().stats().bytes <= 1_000);
            }
        }
    }

    #[test]
    fn a_second_read_is_served_from_memory_and_other_trees_are_not_cached() {
        let engine = CachingEngine::new(Arc::new(MemEngine::default()), 1 << 20, |name| name == "rows");
        let (rows, log) = (engine.tree("rows").unwrap(), engine.tree("log").unwrap());
        put(rows.as_ref(), b"k", b"v");
        put(log.as_ref(), b"k", b"v");
        for _ in 0..2 {
            assert_eq!(rows.get(b"k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(log.get(b"k").unwrap(), Some(b"v".to_vec()));
        }
        let stats = engine.cache().stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1), "{stats:?}");
        // Another handle of the same tree shares the cache, so its writes reach it.
        put(engine.tree("rows").unwrap().as_ref(), b"k", b"w");
        assert_eq!(rows.get(b"k").unwrap(), Some(b"w".to_vec()));
    }

    /// A tree whose reads, once armed, stop after reading until let go: a write can then end
    /// between a read of the engine and the cache's filling.
    struct Gated {
        tree: Arc<dyn KvTree>,
        read: SyncSender<()>,
        go: Mutex<Receiver<()>>,
    }

    impl KvTree for Gated {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            let value = self.tree.get(key);
            self.read.send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            value
        }
        fn write(&self, batch: WriteBatch) -> Result<()> {
            self.tree.write(batch)
        }
        fn scan(
            &self,
            range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        ) -> Box<dyn DoubleEndedIterator<Item = Result<KvPair>> + '_> {
            self.tree.scan(range)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<KvPair>> + '_> {
            self.tree.scan_prefix(prefix)
        }
    }

    #[test]
    fn a_value_read_before_a_write_ended_is_not_cached_after_it() {
        let (read_tx, read_rx) = sync_channel(1);
        let (go_tx, go_rx) = sync_channel(1);
        let inner = MemEngine::default().tree("t").unwrap();
        let gated: Arc<dyn KvTree> = Arc::new(Gated { tree: inner.clone(), read: read_tx, go: Mutex::new(go_rx) });
        let engine = CachingEngine::new(Arc::new(MemEngine::default()), 1 << 20, |_| true);
        let cached = Arc::new(CachedTree { tree: gated, slot: engine.slot("t"), cache: engine.cache() });
        put(inner.as_ref(), b"k", b"old");

        let reader = {
            let cached = cached.clone();
            std::thread::spawn(move || cached.get(b"k").unwrap())
        };
        read_rx.recv().unwrap();
        put(cached.as_ref(), b"k", b"new");
        go_tx.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), Some(b"old".to_vec()), "it read before the write");
        assert_eq!(engine.cache().stats().entries, 0, "the value read before the write was not cached");

        let again = std::thread::spawn({
            let cached = cached.clone();
            move || cached.get(b"k").unwrap()
        });
        read_rx.recv().unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(again.join().unwrap(), Some(b"new".to_vec()));
        assert_eq!(engine.cache().stats().entries, 1, "a read after the write fills the cache");
    }
}
