//! An in-memory engine: a second implementation of the storage traits for tests (the Raft
//! storage suite runs over both). `flush` is a no-op: nothing here survives the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use super::kv::{KvEngine, KvPair, KvTree, WriteBatch};
use crate::error::Result;

#[derive(Default)]
pub struct MemEngine {
    trees: Mutex<HashMap<String, Arc<MemTree>>>,
}

impl KvEngine for MemEngine {
    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>> {
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        Ok(trees.entry(name.to_string()).or_default().clone())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn drop_tree(&self, name: &str) -> Result<()> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    fn tree_names(&self) -> Result<Vec<String>> {
        Ok(self.trees.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect())
    }
}

#[derive(Default)]
struct MemTree(RwLock<BTreeMap<Vec<u8>, Vec<u8>>>);

impl MemTree {
    /// Copies the matching pairs out so that no lock is held while the caller iterates.
    fn collect(&self, range: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Vec<KvPair> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.range(range).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl KvTree for MemTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in batch.into_ops() {
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Box<dyn DoubleEndedIterator<Item = Result<KvPair>> + '_> {
        Box::new(self.collect(range).into_iter().map(Ok))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<KvPair>> + '_> {
        let prefix = prefix.to_vec();
        let pairs = self.collect((Bound::Included(prefix.clone()), Bound::Unbounded));
        Box::new(pairs.into_iter().take_while(move |(k, _)| k.starts_with(&prefix)).map(Ok))
    }
}
