//! sled (pinned to 0.34.7) as the node's engine: one database per node, one tree per use.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use super::kv::{KvEngine, KvPair, KvTree, WriteBatch};
use super::shared_flush::SharedFlush;
use crate::error::{Error, Result};

pub struct SledEngine {
    db: sled::Db,
    flushes: SharedFlush,
}

impl SledEngine {
    pub fn open(path: &Path) -> Result<SledEngine> {
        let db = sled::Config::new()
            .path(path)
            // Durability comes from explicit flushes after each log append, not from a timer.
            .flush_every_ms(None)
            .open()
            .map_err(|e| Error::Storage(format!("opening sled at {}: {e}", path.display())))?;
        Ok(SledEngine { db, flushes: SharedFlush::default() })
    }
}

fn storage_err(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

impl KvEngine for SledEngine {
    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>> {
        Ok(Arc::new(SledTree(self.db.open_tree(name).map_err(storage_err)?)))
    }

    fn flush(&self) -> Result<()> {
        self.flushes.run(|| self.db.flush().map(drop).map_err(storage_err))
    }

    fn drop_tree(&self, name: &str) -> Result<()> {
        self.db.drop_tree(name).map(drop).map_err(storage_err)
    }

    fn tree_names(&self) -> Result<Vec<String>> {
        Ok(self.db.tree_names().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect())
    }
}

struct SledTree(sled::Tree);

fn pair(kv: sled::Result<(sled::IVec, sled::IVec)>) -> Result<KvPair> {
    kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage_err)
}

impl KvTree for SledTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key).map(|v| v.map(|v| v.to_vec())).map_err(storage_err)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (key, value) in batch.into_ops() {
            match value {
                Some(v) => b.insert(key, v),
                None => b.remove(key),
            }
        }
        self.0.apply_batch(b).map_err(storage_err)
    }

    fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Box<dyn DoubleEndedIterator<Item = Result<KvPair>> + '_> {
        Box::new(self.0.range::<Vec<u8>, _>(range).map(pair))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<KvPair>> + '_> {
        Box::new(self.0.scan_prefix(prefix).map(pair))
    }
}
