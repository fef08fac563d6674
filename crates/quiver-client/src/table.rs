//! The routing table: the client's copy of the shard map, and the decisions made on it
//! alone — which shard owns a key hash, how a request's items split by shard, and which
//! node each shard's part is sent to.

use std::collections::BTreeMap;

use quiver_core::cluster::ClusterMap;
use quiver_core::shard_map::Shard;

use crate::error::Result;

/// Request parts by shard: (shard id, the items bound for it).
pub(crate) type Parts<T> = Vec<(u64, Vec<T>)>;

#[derive(Debug, Default)]
pub(crate) struct Table {
    map: ClusterMap,
}

impl Table {
    pub(crate) fn new(mut map: ClusterMap) -> Table {
        // Lookups by hash search the shards by range start.
        map.shard_map.shards.sort_by_key(|s| s.start);
        Table { map }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.shard_map.shards.is_empty()
    }

    pub(crate) fn shard(&self, id: u64) -> Option<&Shard> {
        self.map.shard_map.shard(id).ok()
    }

    /// Every node's address, to ask for the map when the seed does not answer.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = &str> {
        self.map.nodes.values().map(String::as_str)
    }

    /// Groups items by the shard owning their key hash, in shard id order.
    pub(crate) fn split<T>(&self, items: Vec<(u64, T)>) -> Result<Parts<T>> {
        let mut parts: BTreeMap<u64, Vec<T>> = BTreeMap::new();
        for (hash, item) in items {
            parts.entry(self.map.shard_map.shard_for(hash)?.id).or_default().push(item);
        }
        Ok(parts.into_iter().collect())
    }

    /// Where a part for `shard` goes on try `attempt`: the leader (`learned` from an answer,
    /// else the map's hint), or for reads that need no leader the `seed` when it hosts a
    /// replica; after failures, the other replicas in turn.
    pub(crate) fn target(
        &self,
        shard: &Shard,
        learned: Option<&str>,
        seed: &str,
        leader_only: bool,
        attempt: usize,
    ) -> String {
        let leader = learned.or_else(|| self.map.leader_address(shard));
        let replicas = self.map.replica_addresses(shard);
        let preferred = if leader_only { leader } else { replicas.iter().copied().find(|a| *a == seed).or(leader) };
        match (preferred, attempt) {
            (Some(addr), 0) => addr,
            _ if !replicas.is_empty() => replicas[attempt % replicas.len()],
            (Some(addr), _) => addr,
            (None, _) => seed,
        }
        .to_string()
    }
}

/// Groups shard parts by the node `addr_of` sends each to, in first-seen order of nodes,
/// so that a read of many entities costs one request per node rather than one per shard.
pub(crate) fn by_node<T>(parts: Parts<T>, addr_of: impl Fn(u64) -> String) -> Vec<(String, Parts<T>)> {
    let mut groups: Vec<(String, Parts<T>)> = Vec::new();
    for (shard, items) in parts {
        let addr = addr_of(shard);
        match groups.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, group)) => group.push((shard, items)),
            None => groups.push((addr, vec![(shard, items)])),
        }
    }
    groups
}

#[cfg(test)]
pub(crate) mod tests {
    use quiver_core::shard_map::{Epoch, ShardMap};

    use super::*;

    /// Four shards over the hash space on nodes 1–3 (`n1:7070`…), shard `s` led by node
    /// `leaders[s - 1]` when given; shard 4 has only node 3.
    pub(crate) fn cluster(leaders: [Option<u64>; 4], version: u64) -> ClusterMap {
        let quarter = u64::MAX / 4;
        let shards = (1..=4u64)
            .rev()
            .map(|id| Shard {
                id,
                start: (id - 1) * quarter,
                end: if id == 4 { u64::MAX } else { id * quarter - 1 },
                replicas: if id == 4 { vec![3] } else { vec![1, 2, 3] },
                voters: vec![1, 2, 3],
                epoch: Epoch { version, conf_ver: 1 },
                leader: leaders[id as usize - 1],
                leader_term: 0,
            })
            .collect();
        ClusterMap {
            shard_map: ShardMap { shards },
            nodes: (1..=3).map(|n| (n, format!("n{n}:7070"))).collect(),
            ..ClusterMap::default()
        }
    }

    #[test]
    fn a_hash_belongs_to_the_shard_whose_range_holds_it() {
        let table = Table::new(cluster([None; 4], 1));
        let quarter = u64::MAX / 4;
        let shard_of = |hash| table.split(vec![(hash, ())]).unwrap()[0].0;
        assert_eq!([0, quarter - 1, quarter, 3 * quarter - 1, 3 * quarter, u64::MAX].map(shard_of), [1, 1, 2, 3, 4, 4]);
        let gap = Table::new(ClusterMap { shard_map: ShardMap { shards: vec![] }, ..cluster([None; 4], 1) });
        assert!(gap.split(vec![(5, ())]).is_err(), "a hash no shard covers is an error, not a guess");
    }

    #[test]
    fn items_split_by_shard_keep_their_order_within_each_part() {
        let table = Table::new(cluster([None; 4], 1));
        let quarter = u64::MAX / 4;
        let items = vec![(3 * quarter + 1, 'a'), (1, 'b'), (3 * quarter + 2, 'c'), (quarter, 'd'), (2, 'e')];
        assert_eq!(table.split(items).unwrap(), vec![(1, vec!['b', 'e']), (2, vec!['d']), (4, vec!['a', 'c'])]);
    }

    #[test]
    fn writes_go_to_the_leader_learned_else_hinted_then_to_the_replicas_in_turn() {
        let table = Table::new(cluster([Some(2), None, None, None], 1));
        let shard = table.shard(1).unwrap();
        assert_eq!(table.target(shard, None, "n1:7070", true, 0), "n2:7070", "the map's hint");
        assert_eq!(table.target(shard, Some("n3:7070"), "n1:7070", true, 0), "n3:7070", "learned beats hinted");
        let retries: Vec<String> = (1..=3).map(|a| table.target(shard, None, "n1:7070", true, a)).collect();
        assert_eq!(retries, ["n2:7070", "n3:7070", "n1:7070"]);
        let unled = table.shard(2).unwrap();
        assert_eq!(table.target(unled, None, "n1:7070", true, 0), "n1:7070", "no hint: the first replica");
    }

    #[test]
    fn stale_reads_stay_on_the_seed_when_it_holds_a_replica() {
        let table = Table::new(cluster([Some(2), None, None, Some(3)], 1));
        assert_eq!(table.target(table.shard(1).unwrap(), None, "n1:7070", false, 0), "n1:7070");
        assert_eq!(table.target(table.shard(4).unwrap(), None, "n1:7070", false, 0), "n3:7070", "not a replica");
    }

    #[test]
    fn parts_bound_for_one_node_travel_together() {
        let parts = vec![(1, vec!['a']), (2, vec!['b']), (3, vec!['c']), (4, vec!['d'])];
        let groups = by_node(parts, |shard| if shard % 2 == 0 { "even".into() } else { "odd".into() });
        assert_eq!(
            groups,
            vec![
                ("odd".to_string(), vec![(1, vec!['a']), (3, vec!['c'])]),
                ("even".to_string(), vec![(2, vec!['b']), (4, vec!['d'])]),
            ]
        );
    }
}
