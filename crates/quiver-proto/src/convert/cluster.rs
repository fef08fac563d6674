//! Cluster state: node and group status, the shard map with leader hints and addresses.

use quiver_core::cluster::{ClusterMap, ClusterStatus, GroupKind, GroupStatus, NodeStatus, ReplicaLag};
use quiver_core::shard_map::{Epoch, Shard, ShardMap};
use quiver_core::shard_ops::{FinishedOp, OpKind, Outcome, ShardOp};
use quiver_core::{Error, Result};

use crate::v1;

pub fn cluster_status_from_proto(s: v1::StatusResponse) -> Result<ClusterStatus> {
    Ok(ClusterStatus {
        node_id: s.node_id,
        version: s.version,
        nodes: s.nodes.into_iter().map(node_status_from_proto).collect(),
        groups: s.groups.into_iter().map(group_status_from_proto).collect::<Result<_>>()?,
        backups: s.backups.into_iter().map(crate::backup_record_from_proto).collect(),
        certificate_expires: (s.certificate_expires_micros != 0).then_some(s.certificate_expires_micros),
        liveness_from: (s.liveness_from != 0).then_some(s.liveness_from),
        cluster_version: (s.cluster_version != 0).then_some(s.cluster_version),
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
        version: (!n.version.is_empty()).then_some(n.version),
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

pub fn cluster_map_to_proto(map: &ClusterMap) -> v1::GetShardMapResponse {
    let shards = map
        .shard_map
        .shards
        .iter()
        .map(|s| v1::ShardInfo {
            shard_id: s.id,
            start: s.start,
            end: s.end,
            version: s.epoch.version,
            conf_ver: s.epoch.conf_ver,
            replicas: s.replicas.clone(),
            leader_hint: s.leader,
            voters: s.voters.clone(),
        })
        .collect();
    v1::GetShardMapResponse {
        shards,
        nodes: map.nodes.iter().map(|(id, address)| v1::NodeAddress { id: *id, address: address.clone() }).collect(),
        operations: map.operations.iter().map(shard_op_to_proto).collect(),
        finished: map
            .finished
            .iter()
            .map(|f| v1::FinishedShardOperation {
                operation: Some(shard_op_to_proto(&f.op)),
                finished_at_micros: f.finished_at,
                error: match &f.outcome {
                    Outcome::Done => String::new(),
                    Outcome::Failed(why) => why.clone(),
                },
            })
            .collect(),
        exported_through: map.exported.iter().map(|(shard, index)| (*shard, *index)).collect(),
    }
}

/// Shards come out sorted by range start, as a `ShardMap` keeps them.
pub fn cluster_map_from_proto(m: v1::GetShardMapResponse) -> Result<ClusterMap> {
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
            leader: s.leader_hint,
            leader_term: 0,
        })
        .collect();
    shards.sort_by_key(|s| s.start);
    let finished = m
        .finished
        .into_iter()
        .map(|f| {
            let outcome = if f.error.is_empty() { Outcome::Done } else { Outcome::Failed(f.error) };
            Ok(FinishedOp {
                op: shard_op_from_proto(f.operation.unwrap_or_default())?,
                finished_at: f.finished_at_micros,
                outcome,
            })
        })
        .collect::<Result<_>>()?;
    Ok(ClusterMap {
        shard_map: ShardMap { shards },
        nodes: m.nodes.into_iter().map(|n| (n.id, n.address)).collect(),
        operations: m.operations.into_iter().map(shard_op_from_proto).collect::<Result<_>>()?,
        finished,
        exported: m.exported_through.into_iter().collect(),
    })
}

pub fn shard_op_to_proto(op: &ShardOp) -> v1::ShardOperation {
    v1::ShardOperation {
        id: op.id,
        request: Some(op_kind_to_proto(&op.kind)),
        started_at_micros: op.started_at,
        requested: op.requested,
        description: op.kind.to_string(),
    }
}

pub fn shard_op_from_proto(op: v1::ShardOperation) -> Result<ShardOp> {
    Ok(ShardOp {
        id: op.id,
        kind: op_kind_from_proto(op.request.unwrap_or_default())?,
        started_at: op.started_at_micros,
        requested: op.requested,
    })
}

pub fn op_kind_to_proto(kind: &OpKind) -> v1::ShardOperationRequest {
    use v1::shard_operation_request::Operation;
    let operation = match *kind {
        OpKind::TransferLeader { shard, to } => Operation::TransferLeader(v1::TransferLeader { shard_id: shard, to }),
        OpKind::MoveReplica { shard, from, to } => {
            Operation::MoveReplica(v1::MoveReplica { shard_id: shard, from, to })
        }
        OpKind::Rebalance => Operation::Rebalance(v1::Rebalance {}),
        OpKind::Split { shard, at, child } => Operation::Split(v1::SplitShard { shard_id: shard, at, child }),
        OpKind::Merge { left, right } => Operation::Merge(v1::MergeShards { left, right }),
    };
    v1::ShardOperationRequest { operation: Some(operation) }
}

pub fn op_kind_from_proto(request: v1::ShardOperationRequest) -> Result<OpKind> {
    use v1::shard_operation_request::Operation;
    Ok(match request.operation {
        Some(Operation::TransferLeader(t)) => OpKind::TransferLeader { shard: t.shard_id, to: t.to },
        Some(Operation::MoveReplica(m)) => OpKind::MoveReplica { shard: m.shard_id, from: m.from, to: m.to },
        Some(Operation::Rebalance(_)) => OpKind::Rebalance,
        Some(Operation::Split(s)) => OpKind::Split { shard: s.shard_id, at: s.at, child: s.child },
        Some(Operation::Merge(m)) => OpKind::Merge { left: m.left, right: m.right },
        None => return Err(Error::InvalidArgument("a shard operation request names no operation".into())),
    })
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
            ..Default::default()
        })
        .unwrap();
        assert_eq!(map.shard_map.shards.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2]);
        let first = map.shard_map.shard_for(50).unwrap();
        assert_eq!((first.epoch, &first.voters), (Epoch { version: 1, conf_ver: 11 }, &vec![1]));
        assert_eq!(map.leader_address(first), Some("b:1"));
        assert_eq!(map.leader_address(map.shard_map.shard(2).unwrap()), None);
        assert_eq!(map.replica_addresses(first), ["b:1"]);
        assert_eq!(shard_route_to_proto(first), v1::ShardRoute { shard_id: 1, version: 1, conf_ver: 11 });
    }

    #[test]
    fn shard_operations_round_trip_and_an_empty_request_is_refused() {
        let op = |id, kind| ShardOp { id, kind, started_at: 5, requested: id % 2 == 0 };
        let map = ClusterMap {
            shard_map: ShardMap::uniform(2, &[1, 2]).unwrap(),
            nodes: [(1, "a:1".to_string())].into(),
            operations: vec![
                op(3, OpKind::TransferLeader { shard: 1, to: 2 }),
                op(4, OpKind::Rebalance),
                op(5, OpKind::Split { shard: 2, at: 1 << 63, child: 3 }),
                op(6, OpKind::Merge { left: 2, right: 3 }),
            ],
            finished: vec![
                FinishedOp {
                    op: op(1, OpKind::MoveReplica { shard: 2, from: 1, to: 3 }),
                    finished_at: 9,
                    outcome: Outcome::Done,
                },
                FinishedOp { op: op(2, OpKind::Rebalance), finished_at: 9, outcome: Outcome::Failed("why".into()) },
            ],
            exported: [(2, 41)].into(),
        };
        let wire = cluster_map_to_proto(&map);
        assert_eq!(wire.operations[0].description, "transfer leadership of shard 1 to node 2");
        assert_eq!(cluster_map_from_proto(wire).unwrap(), map);
        let err = op_kind_from_proto(v1::ShardOperationRequest::default()).unwrap_err();
        assert!(err.to_string().contains("names no operation"), "{err}");
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
