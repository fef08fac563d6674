//! Placement rules: where a shard's replicas and its leader should be. Each rule answers the
//! next single step (one replica, one leadership) from the shard map alone, so the metadata
//! leader can take a step, let it finish, and ask again; a new metadata leader carries on
//! where the old one stopped.

use std::collections::BTreeMap;

use crate::shard_map::ShardMap;

/// Replicas per shard when enough nodes are active.
pub const REPLICAS: usize = 3;

/// A replica decision: the replica set shard `shard` should have next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub shard: u64,
    pub replicas: Vec<u64>,
}

/// A leadership decision: shard `shard` should be led by node `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub shard: u64,
    pub to: u64,
}

/// Where to split a shard holding `start..=end` whose keys hash to `hashes` (in any order):
/// at the median hash, so each half holds as many keys; at the middle of the range when the
/// shard holds none. Always above `start` and at most `end`, so both halves are non-empty
/// ranges.
pub fn split_point(start: u64, end: u64, hashes: &mut [u64]) -> u64 {
    let middle = start + (end - start) / 2 + 1;
    if hashes.is_empty() {
        return middle;
    }
    let half = hashes.len() / 2;
    let (_, median, _) = hashes.select_nth_unstable(half);
    (*median).clamp(start.saturating_add(1).min(end), end)
}

/// The next step toward placement over the `active` nodes: every shard on
/// `min(REPLICAS, active)` distinct active nodes, and replica counts per node within one of
/// each other. A replica goes only to a node of `live` (one that answers now): an active
/// node that is down keeps the replicas it has, but gets none. One shard changes by one
/// replica at a time, so a move never leaves a shard without a quorum of caught-up members;
/// `None` when placement is done.
pub fn next_move(map: &ShardMap, active: &[u64], live: &[u64]) -> Option<Move> {
    let target = REPLICAS.min(active.len());
    let mut load: BTreeMap<u64, usize> = active.iter().map(|id| (*id, 0)).collect();
    for r in map.shards.iter().flat_map(|s| &s.replicas) {
        if let Some(n) = load.get_mut(r) {
            *n += 1;
        }
    }
    let least_loaded = |exclude: &[u64]| {
        load.iter()
            .filter(|(id, _)| !exclude.contains(id) && live.contains(id))
            .min_by_key(|(id, n)| (**n, **id))
            .map(|(id, _)| *id)
    };
    for shard in &map.shards {
        let mut replicas = shard.replicas.clone();
        // A replica on a draining or removed node: replace it, or drop it when no other
        // active node is free and the shard keeps at least one replica.
        if let Some(i) = replicas.iter().position(|r| !load.contains_key(r)) {
            match least_loaded(&replicas) {
                Some(to) => replicas[i] = to,
                None if replicas.len() > 1 => drop(replicas.remove(i)),
                None => continue,
            }
            return Some(Move { shard: shard.id, replicas });
        }
        if replicas.len() < target
            && let Some(to) = least_loaded(&replicas)
        {
            replicas.push(to);
            return Some(Move { shard: shard.id, replicas });
        }
        if replicas.len() > target {
            let busiest = replicas.iter().copied().max_by_key(|r| (load[r], *r))?;
            replicas.retain(|r| *r != busiest);
            return Some(Move { shard: shard.id, replicas });
        }
    }
    let (&most, &high) = load.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
    let (&fewest, &low) = load.iter().filter(|(id, _)| live.contains(id)).min_by_key(|(id, n)| (**n, **id))?;
    if high <= low + 1 {
        return None;
    }
    let shard = map.shards.iter().find(|s| s.replicas.contains(&most) && !s.replicas.contains(&fewest))?;
    let replicas = shard.replicas.iter().map(|r| if *r == most { fewest } else { *r }).collect();
    Some(Move { shard: shard.id, replicas })
}

/// The next step toward leaders spread over the `active` nodes. A shard led by a node that
/// is not active moves to its active voter leading the fewest shards; otherwise the
/// transfer that narrows the spread most: from a node leading `n` shards to one of the
/// shard's voters leading `n - 2` or fewer. Every step lowers the sum of squared leader
/// counts, so the rule converges, and it stops with each shard's voters leading at least
/// one fewer than its leader; when every active node votes in every shard, no node leads
/// more than ⌈shards / nodes⌉. Shards without a known leader or with a move under way are
/// left alone. `None` when leaders are spread.
pub fn next_leader_transfer(map: &ShardMap, active: &[u64]) -> Option<Transfer> {
    let mut led: BTreeMap<u64, usize> = active.iter().map(|id| (*id, 0)).collect();
    for leader in map.shards.iter().filter_map(|s| s.leader) {
        *led.entry(leader).or_default() += 1;
    }
    let settled = map.shards.iter().filter(|s| !s.moving());
    let mut best: Option<(usize, Transfer)> = None;
    for shard in settled {
        let Some(from) = shard.leader else { continue };
        let candidates = shard.voters.iter().filter(|v| **v != from && active.contains(v));
        let Some(to) = candidates.min_by_key(|v| (led[v], **v)).copied() else { continue };
        if !active.contains(&from) {
            return Some(Transfer { shard: shard.id, to });
        }
        let gain = led[&from].saturating_sub(led[&to]);
        if gain >= 2 && best.is_none_or(|(g, _)| gain > g) {
            best = Some((gain, Transfer { shard: shard.id, to }));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies moves until placement is done, as the scheduler and shard leaders would.
    fn settle(map: &mut ShardMap, active: &[u64]) -> usize {
        settle_live(map, active, active)
    }

    /// `settle` with only the `live` nodes of `active` answering.
    fn settle_live(map: &mut ShardMap, active: &[u64], live: &[u64]) -> usize {
        let mut moves = 0;
        while let Some(m) = next_move(map, active, live) {
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
        assert_eq!(next_move(&map, &[1, 2, 3], &[1, 2, 3]), None, "three nodes, three replicas: nothing to do");
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
    fn a_node_that_is_down_gets_no_replica_and_a_dead_one_is_replaced() {
        let mut map = ShardMap::uniform(8, &[1, 2, 3]).unwrap();
        // Node 4 joined but is down: nothing moves to it.
        assert_eq!(settle_live(&mut map, &[1, 2, 3, 4], &[1, 2, 3]), 0);
        // Node 3 is dead (no longer placeable) and node 4 is up: 4 takes 3's replicas.
        settle_live(&mut map, &[1, 2, 4], &[1, 2, 4]);
        assert_eq!(loads(&map, &[1, 2, 3, 4]), vec![8, 8, 0, 8]);
        // With no live node free, a dead node's replica is dropped: the shard keeps two.
        let mut map = ShardMap::uniform(2, &[1, 2, 3]).unwrap();
        settle_live(&mut map, &[1, 2], &[1, 2]);
        assert!(map.shards.iter().all(|s| s.replicas == [1, 2]), "{:?}", map.shards);
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

    /// Applies leadership transfers until the rule is done; returns how many it took.
    fn spread_leaders(map: &mut ShardMap, active: &[u64]) -> usize {
        let mut steps = 0;
        while let Some(t) = next_leader_transfer(map, active) {
            let shard = map.shards.iter_mut().find(|s| s.id == t.shard).unwrap();
            assert!(shard.voters.contains(&t.to), "{t:?} to a node that is not a voter");
            shard.leader = Some(t.to);
            steps += 1;
            assert!(steps < 1000, "leader placement does not converge");
        }
        steps
    }

    fn leader_counts(map: &ShardMap, nodes: &[u64]) -> Vec<usize> {
        nodes.iter().map(|n| map.shards.iter().filter(|s| s.leader == Some(*n)).count()).collect()
    }

    #[test]
    fn leaders_started_on_one_node_spread_over_three() {
        let mut map = ShardMap::uniform(8, &[1, 2, 3]).unwrap();
        for s in &mut map.shards {
            s.leader = Some(1);
        }
        assert_eq!(spread_leaders(&mut map, &[1, 2, 3]), 5);
        assert_eq!(leader_counts(&map, &[1, 2, 3]), vec![3, 3, 2]);
        // A draining node gives up every leadership.
        spread_leaders(&mut map, &[1, 2]);
        assert_eq!(leader_counts(&map, &[3]), vec![0]);
        assert_eq!(leader_counts(&map, &[1, 2]), vec![4, 4]);
    }

    #[test]
    fn a_shard_splits_at_its_median_key_or_its_middle() {
        assert_eq!(split_point(0, 99, &mut []), 50);
        // Keys crowded at the top of the range: the median follows them.
        let mut crowded = vec![90, 91, 92, 93, 94];
        assert_eq!(split_point(0, 99, &mut crowded), 92);
        // The point never falls on the start, which would leave the lower half empty.
        assert_eq!(split_point(10, 99, &mut [10, 10, 10]), 11);
    }

    proptest! {
        #[test]
        fn a_split_point_leaves_two_ranges_and_halves_the_keys(
            start in 0u64..1000, width in 1u64..1000, mut hashes in proptest::collection::vec(0u64..3000, 0..50),
        ) {
            let end = start + width;
            hashes.retain(|h| (start..=end).contains(h));
            let mut keys = hashes.clone();
            let at = split_point(start, end, &mut keys);
            prop_assert!(start < at && at <= end);
            if hashes.iter().any(|h| *h > start) {
                let above = hashes.iter().filter(|h| **h >= at).count();
                prop_assert!(above * 2 >= hashes.len() - 1 || at == start + 1, "{} of {} above {}", above, hashes.len(), at);
            }
        }

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
        fn leaders_spread_to_at_most_the_ceiling(
            leaders in proptest::collection::vec(0usize..6, 1..24),
            nodes in 1u64..6,
        ) {
            let all: Vec<u64> = (1..=nodes).collect();
            let mut map = ShardMap::uniform(leaders.len() as u64, &all).unwrap();
            for (s, l) in map.shards.iter_mut().zip(&leaders) {
                s.leader = Some(all[l % all.len()]);
            }
            spread_leaders(&mut map, &all);
            let ceiling = leaders.len().div_ceil(all.len());
            let counts = leader_counts(&map, &all);
            prop_assert!(counts.iter().all(|c| *c <= ceiling), "counts {:?}, ceiling {}", counts, ceiling);
        }
    }
}
