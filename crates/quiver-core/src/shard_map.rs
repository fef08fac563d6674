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

/// A scheduling decision: the replica set shard `shard` should have next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub shard: u64,
    pub replicas: Vec<u64>,
}

/// Replicas per shard when enough nodes are active.
pub const REPLICAS: usize = 3;

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

    /// The next step toward placement over the `active` nodes: every shard on
    /// `min(REPLICAS, active)` distinct active nodes, and replica counts per node within
    /// one of each other. One shard changes by one replica at a time, so a move never
    /// leaves a shard without a quorum of caught-up members; `None` when placement is done.
    pub fn next_move(&self, active: &[u64]) -> Option<Move> {
        let target = REPLICAS.min(active.len());
        let mut load: std::collections::BTreeMap<u64, usize> = active.iter().map(|id| (*id, 0)).collect();
        for r in self.shards.iter().flat_map(|s| &s.replicas) {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
        let least_loaded = |exclude: &[u64]| {
            load.iter().filter(|(id, _)| !exclude.contains(id)).min_by_key(|(id, n)| (**n, **id)).map(|(id, _)| *id)
        };
        for shard in &self.shards {
            let mut replicas = shard.replicas.clone();
            // A replica on a draining or removed node: replace it, or drop it when no
            // other active node is free and the shard keeps at least one replica.
            if let Some(i) = replicas.iter().position(|r| !load.contains_key(r)) {
                match least_loaded(&replicas) {
                    Some(to) => replicas[i] = to,
                    None if replicas.len() > 1 => drop(replicas.remove(i)),
                    None => continue,
                }
                return Some(Move { shard: shard.id, replicas });
            }
            if replicas.len() < target {
                replicas.extend(least_loaded(&replicas));
                return Some(Move { shard: shard.id, replicas });
            }
            if replicas.len() > target {
                let busiest = replicas.iter().copied().max_by_key(|r| (load[r], *r))?;
                replicas.retain(|r| *r != busiest);
                return Some(Move { shard: shard.id, replicas });
            }
        }
        let (&most, &high) = load.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
        let (&fewest, &low) = load.iter().min_by_key(|(id, n)| (**n, **id))?;
        if high <= low + 1 {
            return None;
        }
        let shard = self.shards.iter().find(|s| s.replicas.contains(&most) && !s.replicas.contains(&fewest))?;
        let replicas = shard.replicas.iter().map(|r| if *r == most { fewest } else { *r }).collect();
        Some(Move { shard: shard.id, replicas })
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

    /// Applies moves until placement is done, as the scheduler and shard leaders would.
    fn settle(map: &mut ShardMap, active: &[u64]) -> usize {
        let mut moves = 0;
        while let Some(m) = map.next_move(active) {
            let shard = map.shards.iter_mut().find(|s| s.id == m.shard).unwrap();
            shard.replicas = m.replicas.clone();
            shard.voters = m.replicas;
            moves += 1;
            assert!(moves < 1000, "placement does not converge");
        }
        moves
    }

    fn loads(map: &ShardMap, nodes: &[u64]) -> Vec<usize> {
        nodes.iter().map(|n| map.shards.iter().filter(|s| s.replicas.contains(n)).count()).collect()
    }

    #[test]
    fn a_new_node_receives_replicas_until_balanced() {
        let mut map = ShardMap::uniform(8, &[1, 2, 3]).unwrap();
        assert_eq!(map.next_move(&[1, 2, 3]), None, "three nodes, three replicas: nothing to do");
        let moves = settle(&mut map, &[1, 2, 3, 4]);
        assert_eq!(moves, 6);
        assert_eq!(loads(&map, &[1, 2, 3, 4]), vec![6, 6, 6, 6]);
        assert!(map.shards.iter().all(|s| s.replicas.len() == 3));
    }

    #[test]
    fn a_single_node_cluster_grows_to_three_replicas() {
        let mut map = ShardMap::uniform(4, &[1]).unwrap();
        settle(&mut map, &[1, 2]);
        assert!(map.shards.iter().all(|s| s.replicas.len() == 2));
        settle(&mut map, &[1, 2, 3]);
        assert!(map.shards.iter().all(|s| s.replicas.len() == 3));
    }

    #[test]
    fn a_draining_node_is_emptied_and_replicas_stay_distinct() {
        let mut map = ShardMap::uniform(8, &[1, 2, 3]).unwrap();
        settle(&mut map, &[1, 2, 3, 4]);
        settle(&mut map, &[1, 2, 4]);
        assert_eq!(loads(&map, &[3]), vec![0]);
        for s in &map.shards {
            let mut r = s.replicas.clone();
            r.dedup();
            assert_eq!(r.len(), 3, "shard {} replicas {:?}", s.id, s.replicas);
        }
        // Fewer active nodes than replicas: the drained node's replicas are dropped.
        settle(&mut map, &[1, 2]);
        assert!(map.shards.iter().all(|s| s.replicas.len() == 2 && !s.replicas.contains(&4)));
    }

    proptest! {
        #[test]
        fn placement_always_converges_to_balance(shards in 1u64..24, nodes in 1u64..7, drained in 0u64..3) {
            let all: Vec<u64> = (1..=nodes + drained).collect();
            let mut map = ShardMap::uniform(shards, &all[..all.len().min(3)]).unwrap();
            settle(&mut map, &all);
            let active: Vec<u64> = (drained + 1..=nodes + drained).collect();
            settle(&mut map, &active);
            let l = loads(&map, &active);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1, "loads {:?}", l);
            for s in &map.shards {
                prop_assert_eq!(s.replicas.len(), REPLICAS.min(active.len()));
                prop_assert!(s.replicas.iter().all(|r| active.contains(r)));
            }
        }

        #[test]
        fn every_hash_has_exactly_its_shard(hash: u64, count in 1u64..64) {
            let map = ShardMap::uniform(count, &[1]).unwrap();
            let shard = map.shard_for(hash).unwrap();
            prop_assert!(shard.start <= hash && hash <= shard.end);
        }
    }
}
