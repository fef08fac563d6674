//! A shard's epoch: how a node and a client tell that they see the same shard.

use serde::{Deserialize, Serialize};

/// `version` changes when a shard's range changes (split/merge); `conf_ver` when its
/// replicas change. A request carrying an older epoch is refused, so a stale client
/// never writes to a shard that no longer owns the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Epoch {
    pub version: u64,
    pub conf_ver: u64,
}
