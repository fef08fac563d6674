//! Cluster status and the shard map.

use quiver_client::{ClusterMap, ClusterStatus, GroupKind, GroupStatus};

use super::format::table;

pub fn status_table(s: &ClusterStatus) -> String {
    let mut out = format!("node {} (quiver {})\n\n", s.node_id, s.version);
    let nodes: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            let state = match (n.up, n.draining) {
                (true, false) => "up",
                (true, true) => "up, draining",
                (false, false) => "down",
                (false, true) => "down, draining",
            };
            let meta = if n.meta_voter { "voter" } else { "learner" };
            vec![n.id.to_string(), n.address.clone(), state.into(), n.replicas.to_string(), meta.into()]
        })
        .collect();
    out += &table(&["NODE", "ADDRESS", "STATE", "REPLICAS", "META"], &nodes);
    let groups: Vec<Vec<String>> = s
        .groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.to_string(),
                kind_name(g.kind).into(),
                g.leader.map_or_else(|| "none".into(), |id| id.to_string()),
                g.voters.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                g.term.to_string(),
                g.applied_index.to_string(),
                g.committed_index.to_string(),
                g.state.clone(),
                lags(g),
                if g.kind == GroupKind::Shard { hash_range(g.range_start, g.range_end) } else { String::new() },
            ]
        })
        .collect();
    out += "\n";
    let headers = ["GROUP", "KIND", "LEADER", "VOTERS", "TERM", "APPLIED", "COMMITTED", "STATE", "LAG", "HASH RANGE"];
    out += &table(&headers, &groups);
    out
}

fn kind_name(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Meta => "meta",
        GroupKind::Shard => "shard",
    }
}

fn hash_range(start: u64, end: u64) -> String {
    format!("{start:016x}-{end:016x}")
}

/// `node:entries` behind the leader, for each replica (known on the leader only).
fn lags(g: &GroupStatus) -> String {
    let lags: Vec<String> =
        g.replicas.iter().filter(|r| Some(r.node_id) != g.leader).map(|r| format!("{}:{}", r.node_id, r.lag)).collect();
    if lags.is_empty() { "-".into() } else { lags.join(",") }
}

pub fn shard_map_table(map: &ClusterMap) -> String {
    let rows: Vec<Vec<String>> = map
        .shard_map
        .shards
        .iter()
        .map(|s| {
            let leader = map.leaders.get(&s.id).map(|id| format!("{id} ({})", map.leader_address(s).unwrap_or("?")));
            vec![
                s.id.to_string(),
                hash_range(s.start, s.end),
                format!("{}.{}", s.epoch.version, s.epoch.conf_ver),
                s.replicas.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                leader.unwrap_or_else(|| "unknown".into()),
            ]
        })
        .collect();
    table(&["SHARD", "HASH RANGE", "EPOCH", "REPLICAS", "LEADER"], &rows)
}

#[cfg(test)]
mod tests {
    use quiver_client::{NodeStatus, ReplicaLag};

    use super::*;
    use crate::render::format::json;

    fn status() -> ClusterStatus {
        let group = |group_id, kind, leader| GroupStatus {
            group_id,
            kind,
            leader,
            voters: vec![1, 2],
            term: 3,
            applied_index: 9,
            committed_index: 9,
            last_log_index: 10,
            state: "Leader".into(),
            range_start: 0,
            range_end: if kind == GroupKind::Shard { u64::MAX } else { 0 },
            replicas: vec![ReplicaLag { node_id: 2, matched_index: Some(8), lag: 2 }],
        };
        ClusterStatus {
            node_id: 1,
            version: "0.1.0".into(),
            nodes: vec![NodeStatus {
                id: 1,
                address: "127.0.0.1:7070".into(),
                up: true,
                draining: false,
                replicas: 1,
                meta_voter: true,
            }],
            groups: vec![group(0, GroupKind::Meta, Some(1)), group(1, GroupKind::Shard, None)],
        }
    }

    #[test]
    fn status_json_keeps_the_fields_scripts_read() {
        let value: serde_json::Value = serde_json::from_str(&json(&status()).unwrap()).unwrap();
        let expected = serde_json::json!({
            "node_id": 1, "version": "0.1.0",
            "nodes": [{"id": 1, "address": "127.0.0.1:7070", "up": true, "draining": false, "replicas": 1, "meta_voter": true}],
            "groups": [
                {"group_id": 0, "kind": "meta", "leader": 1, "voters": [1, 2], "term": 3, "applied_index": 9,
                 "committed_index": 9, "last_log_index": 10, "state": "Leader", "range_start": 0, "range_end": 0,
                 "replicas": [{"node_id": 2, "matched_index": 8, "lag": 2}]},
                {"group_id": 1, "kind": "shard", "leader": null, "voters": [1, 2], "term": 3, "applied_index": 9,
                 "committed_index": 9, "last_log_index": 10, "state": "Leader", "range_start": 0, "range_end": u64::MAX,
                 "replicas": [{"node_id": 2, "matched_index": 8, "lag": 2}]},
            ],
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn status_table_names_missing_leaders_and_shard_ranges() {
        let text = status_table(&status());
        let shard = text.lines().find(|l| l.starts_with("1 ") && l.contains("shard")).unwrap();
        assert!(shard.contains("none") && shard.contains("0000000000000000-ffffffffffffffff"), "{text}");
    }
}
