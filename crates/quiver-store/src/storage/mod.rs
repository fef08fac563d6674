//! The key-value engine under every Raft group: named trees, atomic batches, ordered scans
//! and an explicit flush. Raft code sees only these traits, so sled can be replaced (or an
//! in-memory engine used in tests) without touching it.

mod kv;
mod mem_engine;
mod row_cache;
mod shared_flush;
mod sled_engine;

pub use kv::{KvEngine, KvPair, KvTree, WriteBatch};
pub use mem_engine::MemEngine;
pub use row_cache::{CacheStats, CachingEngine, RowCache};
pub use sled_engine::SledEngine;

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::sync::Arc;

    use super::*;

    fn exercise(engine: &dyn KvEngine) {
        let tree = engine.tree("t").unwrap();
        let mut batch = WriteBatch::default();
        batch.put(b"a1".to_vec(), b"1".to_vec());
        batch.put(b"a2".to_vec(), b"2".to_vec());
        batch.put(b"b1".to_vec(), b"3".to_vec());
        tree.write(batch).unwrap();
        engine.flush().unwrap();
        assert_eq!(tree.get(b"a2").unwrap(), Some(b"2".to_vec()));
        let keys: Vec<_> = tree.scan_prefix(b"a").map(|kv| kv.unwrap().0).collect();
        assert_eq!(keys, vec![b"a1".to_vec(), b"a2".to_vec()]);
        let from: Vec<_> =
            tree.scan((Bound::Excluded(b"a1".to_vec()), Bound::Unbounded)).map(|kv| kv.unwrap().0).collect();
        assert_eq!(from, vec![b"a2".to_vec(), b"b1".to_vec()]);
        let mut batch = WriteBatch::default();
        batch.delete(b"a1".to_vec());
        tree.write(batch).unwrap();
        assert_eq!(tree.get(b"a1").unwrap(), None);
        assert!(engine.tree("other").unwrap().get(b"a2").unwrap().is_none(), "trees are separate");
        assert!(engine.tree_names().unwrap().iter().any(|n| n == "other"), "the names of the trees it holds");
        engine.drop_tree("t").unwrap();
        engine.drop_tree("never-opened").unwrap();
        assert!(!engine.tree_names().unwrap().iter().any(|n| n == "t"), "a dropped tree is no longer named");
        assert!(engine.tree("t").unwrap().get(b"a2").unwrap().is_none(), "a dropped tree comes back empty");
    }

    #[test]
    fn sled_engine_behaves_like_a_kv_engine() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&SledEngine::open(dir.path()).unwrap());
    }

    #[test]
    fn mem_engine_behaves_like_a_kv_engine() {
        exercise(&MemEngine::default());
    }

    #[test]
    fn a_caching_engine_behaves_like_the_engine_it_wraps() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&CachingEngine::new(Arc::new(SledEngine::open(dir.path()).unwrap()), 1 << 20, |_| true));
        exercise(&CachingEngine::new(Arc::new(MemEngine::default()), 1 << 20, |_| true));
    }
}
