//! Cluster state: node and group status, the shard map with leader hints and addresses.

use quiver_core::cluster::{ClusterMap, ClusterStatus, GroupKind, GroupStatus, NodeStatus, ReplicaLag};
use quiver_core::shard_map::{Epoch, Shard, ShardMap};
use quiver_core::{Error, Result};

use crate::v1;

pub fn cluster_status_from_proto(s: v1::StatusResponse) -> Result<ClusterStatus> {
    Ok(ClusterStatus {
        node_id: s.node_id,
        version: s.version,
        nodes: s.nodes.into_iter().map(node_status_from_proto).collect(),
        groups: s.groups.into_iter().map(group_status_from_proto).collect::<Result<_>>()?,
    })
}

fn node_status_from_proto(n: v1::NodeStatus) -> NodeStatus {
    NodeStatus {
        id: n.id,
        address: n.address,
        up: n.up,
        draining: n.draining,
        replicas: n.replicas,
        meta_voter: n.meta_voter,
    }
}

fn group_status_from_proto(g: v1::GroupStatus) -> Result<GroupStatus> {
    let kind = match g.kind.as_str() {
        "meta" => GroupKind::Meta,
        "shard" => GroupKind::Shard,
        other => return Err(Error::Internal(format!("group {}: unknown kind '{other}'", g.group_id))),
    };
    Ok(GroupStatus {
        group_id: g.group_id,
        kind,
        leader: g.has_leader.then_some(g.leader_id),
        voters: g.voters,
        term: g.term,
        applied_index: g.applied_index,
        committed_index: g.committed_index,
        last_log_index: g.last_log_index,
        state: g.state,
        range_start: g.range_start,
        range_end: g.range_end,
        replicas: g
            .replicas
            .into_iter()
            .map(|r| ReplicaLag { node_id: r.node_id, matched_index: r.matched_index, lag: r.lag })
            .collect(),
    })
}

/// Shards come out sorted by range start, as a `ShardMap` keeps them.
pub fn cluster_map_from_proto(m: v1::GetShardMapResponse) -> ClusterMap {
    let leaders = m.shards.iter().filter_map(|s| Some((s.shard_id, s.leader_hint?))).collect();
    let mut shards: Vec<Shard> = m
        .shards
        .into_iter()
        .map(|s| Shard {
            id: s.shard_id,
            start: s.start,
            end: s.end,
            replicas: s.replicas,
            voters: s.voters,
            epoch: Epoch { version: s.version, conf_ver: s.conf_ver },
        })
        .collect();
    shards.sort_by_key(|s| s.start);
    ClusterMap {
        shard_map: ShardMap { shards },
        leaders,
        nodes: m.nodes.into_iter().map(|n| (n.id, n.address)).collect(),
    }
}

/// What a routed request says of the shard it was sent for: its id and the epoch known.
pub fn shard_route_to_proto(shard: &Shard) -> v1::ShardRoute {
    v1::ShardRoute { shard_id: shard.id, version: shard.epoch.version, conf_ver: shard.epoch.conf_ver }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_map_is_sorted_with_its_epochs_leader_hints_and_addresses() {
        let shard = |id, start, end, leader_hint| v1::ShardInfo {
            shard_id: id,
            start,
            end,
            version: id,
            conf_ver: 10 + id,
            replicas: vec![1, 2],
            voters: vec![1],
            leader_hint,
        };
        let map = cluster_map_from_proto(v1::GetShardMapResponse {
            shards: vec![shard(2, 100, u64::MAX, None), shard(1, 0, 99, Some(2))],
            nodes: vec![v1::NodeAddress { id: 2, address: "b:1".into() }],
        });
        assert_eq!(map.shard_map.shards.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2]);
        let first = map.shard_map.shard_for(50).unwrap();
        assert_eq!((first.epoch, &first.voters), (Epoch { version: 1, conf_ver: 11 }, &vec![1]));
        assert_eq!(map.leader_address(first), Some("b:1"));
        assert_eq!(map.leader_address(map.shard_map.shard(2).unwrap()), None);
        assert_eq!(map.replica_addresses(first), ["b:1"]);
        assert_eq!(shard_route_to_proto(first), v1::ShardRoute { shard_id: 1, version: 1, conf_ver: 11 });
    }

    #[test]
    fn group_status_reads_its_kind_and_a_missing_leader() {
        let group = |kind: &str, has_leader| v1::GroupStatus {
            group_id: 3,
            kind: kind.into(),
            leader_id: 0,
            has_leader,
            ..Default::default()
        };
        let status =
            v1::StatusResponse { groups: vec![group("meta", true), group("shard", false)], ..Default::default() };
        let groups = cluster_status_from_proto(status).unwrap().groups;
        assert_eq!((groups[0].kind, groups[0].leader), (GroupKind::Meta, Some(0)));
        assert_eq!((groups[1].kind, groups[1].leader), (GroupKind::Shard, None));
        let odd = v1::StatusResponse { groups: vec![group("range", true)], ..Default::default() };
        assert!(cluster_status_from_proto(odd).unwrap_err().to_string().contains("range"));
    }
}
