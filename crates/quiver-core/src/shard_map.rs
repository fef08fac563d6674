//! The shard map: which Raft group owns which range of the entity-hash space.

use serde::{Deserialize, Serialize};

pub use crate::epoch::Epoch;
use crate::{Error, Result};

/// Raft group 0 is the meta group; shards are groups 1..=N.
pub const META_GROUP: u64 = 0;

/// One shard: a range of the entity-hash space, its replicas and its epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub id: u64,
    /// Inclusive bounds in the 64-bit hash space.
    pub start: u64,
    pub end: u64,
    /// Node ids assigned a replica by the scheduler; at the first epoch, the first one
    /// initialises the group.
    pub replicas: Vec<u64>,
    /// The group's Raft voters as last confirmed by its leader. They differ from
    /// `replicas` while a move is under way; a node keeps its replica until both lists
    /// leave it out.
    pub voters: Vec<u64>,
    pub epoch: Epoch,
    /// The node that last reported leading the group, and the Raft term it led in: a hint
    /// for clients and the input of leader placement; a report of an older term is ignored.
    pub leader: Option<u64>,
    pub leader_term: u64,
}

impl Shard {
    /// True when node `id` should host this shard's group.
    pub fn hosted_by(&self, id: u64) -> bool {
        self.replicas.contains(&id) || self.voters.contains(&id)
    }

    pub fn moving(&self) -> bool {
        let sorted = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        sorted(&self.replicas) != sorted(&self.voters)
    }
}

/// Which shard owns which range of the entity-hash space.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShardMap {
    /// Sorted by `start`, covering the whole hash space without gaps.
    pub shards: Vec<Shard>,
}

impl ShardMap {
    /// `count` shards of equal width, all hosted by `replicas`.
    pub fn uniform(count: u64, replicas: &[u64]) -> Result<ShardMap> {
        if count == 0 || count > 4096 {
            return Err(Error::InvalidArgument(format!("shard count {count} must be between 1 and 4096")));
        }
        let width = u64::MAX / count;
        let shards = (0..count)
            .map(|i| Shard {
                id: i + 1,
                start: i * width,
                end: if i + 1 == count { u64::MAX } else { (i + 1) * width - 1 },
                replicas: replicas.to_vec(),
                voters: replicas.to_vec(),
                epoch: Epoch { version: 1, conf_ver: 1 },
                leader: None,
                leader_term: 0,
            })
            .collect();
        Ok(ShardMap { shards })
    }

    /// The shard owning `hash`.
    pub fn shard_for(&self, hash: u64) -> Result<&Shard> {
        let i = self.shards.partition_point(|s| s.start <= hash);
        i.checked_sub(1)
            .and_then(|i| self.shards.get(i))
            .filter(|s| hash <= s.end)
            .ok_or_else(|| Error::Internal(format!("no shard covers hash {hash:#x}")))
    }

    pub fn shard(&self, id: u64) -> Result<&Shard> {
        self.shards.iter().find(|s| s.id == id).ok_or(Error::ShardNotFound(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uniform_map_covers_the_whole_space_without_gaps() {
        for count in [1, 2, 7, 8, 4096] {
            let map = ShardMap::uniform(count, &[1]).unwrap();
            assert_eq!(map.shards[0].start, 0);
            assert_eq!(map.shards.last().unwrap().end, u64::MAX);
            for pair in map.shards.windows(2) {
                assert_eq!(pair[0].end + 1, pair[1].start);
            }
        }
        assert!(ShardMap::uniform(0, &[1]).is_err());
    }

    proptest! {
        #[test]
        fn every_hash_has_exactly_its_shard(hash: u64, count in 1u64..64) {
            let map = ShardMap::uniform(count, &[1]).unwrap();
            let shard = map.shard_for(hash).unwrap();
            prop_assert!(shard.start <= hash && hash <= shard.end);
        }
    }
}
