//! The storage traits every engine implements, and the batch they apply atomically.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;

pub type KvPair = (Vec<u8>, Vec<u8>);

pub trait KvEngine: Send + Sync + 'static {
    /// Opens (creating if needed) the tree called `name`.
    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>>;
    /// Returns once every write made before the call is on stable storage.
    fn flush(&self) -> Result<()>;
    /// Deletes the tree called `name` and everything in it (nothing if it does not exist).
    fn drop_tree(&self, name: &str) -> Result<()>;
    /// The names of the trees it holds.
    fn tree_names(&self) -> Result<Vec<String>>;
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
    /// Appends `other`'s operations, after this batch's own.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// How many puts and deletes it holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// What the batch leaves at `key` when it touches it: `Some(None)` for a delete.
    pub fn pending(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.ops.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_deref())
    }

    /// The keys the batch puts or deletes, in the order given.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|(k, _)| k.as_slice())
    }

    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}
