//! The key-value engine under every Raft group: named trees, atomic batches, ordered scans
//! and an explicit flush. Raft code sees only these traits, so sled can be replaced (or an
//! in-memory engine used in tests) without touching it.

mod mem_engine;
mod sled_engine;

use std::ops::Bound;
use std::sync::Arc;

pub use mem_engine::MemEngine;
pub use sled_engine::SledEngine;

use crate::error::Result;

pub type KvPair = (Vec<u8>, Vec<u8>);

pub trait KvEngine: Send + Sync + 'static {
    /// Opens (creating if needed) the tree called `name`.
    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>>;
    /// Returns once every write made before the call is on stable storage.
    fn flush(&self) -> Result<()>;
    /// Deletes the tree called `name` and everything in it (nothing if it does not exist).
    fn drop_tree(&self, name: &str) -> Result<()>;
}

pub trait KvTree: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies every operation of `batch` or none of them.
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Pairs with keys in `range`, in key order.
    fn scan(&self, range: (Bound<Vec<u8>>, Bound<Vec<u8>>))
    -> Box<dyn DoubleEndedIterator<Item = Result<KvPair>> + '_>;
    /// Pairs whose keys start with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<KvPair>> + '_>;
}

/// Puts and deletes applied together by `KvTree::write`.
#[derive(Default, Debug)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}

#[cfg(test)]
mod tests {
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
        engine.drop_tree("t").unwrap();
        engine.drop_tree("never-opened").unwrap();
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
}
