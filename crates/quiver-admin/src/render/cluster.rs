//! Cluster status and the shard map.

use quiver_client::{ClusterMap, ClusterStatus, GroupKind, GroupStatus, Outcome};
use quiver_core::time::now_micros;

use super::format::table;

pub fn status_table(s: &ClusterStatus) -> String {
    let mut out = format!("node {} (quiver {})", s.node_id, s.version);
    if let Some(version) = s.cluster_version {
        out += &format!(", cluster version {version}");
    }
    if let (Some(oldest), Some(newest)) = (s.oldest_release(), s.newest_release())
        && oldest != newest
    {
        out += &format!("; nodes run {oldest} to {newest}: an upgrade under way");
    }
    out += "\n\n";
    let nodes: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            let state = match (s.up(n), n.draining) {
                (Some(true), false) => "up",
                (Some(true), true) => "up, draining",
                (Some(false), false) => "down",
                (Some(false), true) => "down, draining",
                (None, false) => "unknown",
                (None, true) => "unknown, draining",
            };
            let meta = if n.meta_voter { "voter" } else { "learner" };
            let version = n.version.clone().unwrap_or_else(|| "unknown".into());
            vec![n.id.to_string(), n.address.clone(), state.into(), n.replicas.to_string(), meta.into(), version]
        })
        .collect();
    out += &table(&["NODE", "ADDRESS", "STATE", "REPLICAS", "META", "VERSION"], &nodes);
    let groups: Vec<Vec<String>> = s
        .groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.to_string(),
                g.kind.name().into(),
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
    out += &match s.backups.last() {
        Some(b) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let age = now.saturating_sub(std::time::Duration::from_micros(b.finished_at.max(0) as u64));
            format!(
                "\nlast backup: {} in {}, {} ago, {}, {} rows{}\n",
                b.id,
                b.location,
                indicatif::HumanDuration(age),
                indicatif::HumanBytes(b.bytes),
                b.rows,
                if b.incremental { ", incremental" } else { "" }
            )
        }
        None => "\nlast backup: none\n".into(),
    };
    if let Some(expires) = s.certificate_expires {
        out += &certificate_line(s.node_id, expires, now_micros());
    }
    out
}

/// Within this many days of its end a certificate is called out: time to renew it.
const RENEW_WITHIN_DAYS: i64 = 30;

/// When node `node`'s certificate ends, as seen at `now`, with a warning near the end.
fn certificate_line(node: u64, expires: i64, now: i64) -> String {
    let days = (expires - now).div_euclid(86_400_000_000);
    let when = quiver_core::time::format_timestamp(expires);
    match days {
        ..0 => format!("WARNING: node {node}'s TLS certificate expired at {when}\n"),
        0..RENEW_WITHIN_DAYS => format!(
            "WARNING: node {node}'s TLS certificate expires in {days} days ({when}): renew it (quiverctl cert \
             create-node), and the node serves the new files without a restart\n"
        ),
        _ => format!("TLS certificate of node {node}: valid until {when} ({days} days)\n"),
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

/// Finished operations `quiverctl shards` lists, newest last.
const FINISHED_SHOWN: usize = 5;

pub fn shard_map_table(map: &ClusterMap) -> String {
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = map
        .shard_map
        .shards
        .iter()
        .map(|s| {
            let leader = s.leader.map(|id| format!("{id} ({})", map.leader_address(s).unwrap_or("?")));
            let replicas =
                if s.moving() { format!("{} (voters {})", ids(&s.replicas), ids(&s.voters)) } else { ids(&s.replicas) };
            vec![
                s.id.to_string(),
                hash_range(s.start, s.end),
                format!("{}.{}", s.epoch.version, s.epoch.conf_ver),
                replicas,
                leader.unwrap_or_else(|| "unknown".into()),
            ]
        })
        .collect();
    let mut out = table(&["SHARD", "HASH RANGE", "EPOCH", "REPLICAS", "LEADER"], &rows);
    let in_flight: Vec<Vec<String>> = map
        .operations
        .iter()
        .map(|op| vec![op.id.to_string(), "under way".into(), origin(op.requested).into(), op.kind.to_string()])
        .collect();
    let finished = map.finished.iter().rev().take(FINISHED_SHOWN).rev().map(|f| {
        let state = match &f.outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Failed(why) => format!("failed: {why}"),
        };
        vec![f.op.id.to_string(), state, origin(f.op.requested).into(), f.op.kind.to_string()]
    });
    let ops: Vec<Vec<String>> = finished.chain(in_flight).collect();
    if !ops.is_empty() {
        out += "\n";
        out += &table(&["OPERATION", "STATE", "BY", "WHAT"], &ops);
    }
    out
}

fn origin(requested: bool) -> &'static str {
    if requested { "operator" } else { "placement" }
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
                version: Some("0.1.0".into()),
            }],
            groups: vec![group(0, GroupKind::Meta, Some(1)), group(1, GroupKind::Shard, None)],
            backups: vec![quiver_client::BackupRecord { id: "b1".into(), bytes: 2048, rows: 5, ..Default::default() }],
            certificate_expires: None,
            liveness_from: Some(1),
            cluster_version: Some(2),
        }
    }

    #[test]
    fn a_node_the_metadata_leader_was_not_asked_about_is_unknown() {
        let mut s = status();
        let other = NodeStatus { id: 2, address: "127.0.0.1:7071".into(), up: false, ..s.nodes[0].clone() };
        s.nodes.push(other);
        assert!(status_table(&s).contains("down"), "{}", status_table(&s));
        s.liveness_from = None;
        let table = status_table(&s);
        let line = |id: &str| table.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_string();
        assert!(line("1 ").contains("up") && line("2 ").contains("unknown"), "{table}");
    }

    #[test]
    fn each_nodes_version_is_shown_with_the_cluster_version_and_an_upgrade_under_way() {
        let mut s = status();
        assert!(status_table(&s).starts_with("node 1 (quiver 0.1.0), cluster version 2\n"), "{}", status_table(&s));
        let newer = NodeStatus { id: 2, version: Some("0.10.0".into()), ..s.nodes[0].clone() };
        let silent = NodeStatus { id: 3, version: None, ..s.nodes[0].clone() };
        s.nodes.extend([newer, silent]);
        let table = status_table(&s);
        let header = "node 1 (quiver 0.1.0), cluster version 2; nodes run 0.1.0 to 0.10.0: an upgrade under way";
        assert!(table.starts_with(header), "{table}");
        let line = |id: &str| table.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_string();
        assert!(line("2 ").ends_with("0.10.0") && line("3 ").ends_with("unknown"), "{table}");
    }

    #[test]
    fn a_certificate_near_its_end_is_called_out() {
        let day = 86_400_000_000;
        assert!(certificate_line(2, 400 * day, 0).starts_with("TLS certificate of node 2: valid until"));
        let soon = certificate_line(2, 10 * day, 0);
        assert!(soon.starts_with("WARNING") && soon.contains("in 10 days"), "{soon}");
        assert!(certificate_line(2, -day, 0).contains("expired"));
    }

    #[test]
    fn status_json_keeps_the_fields_scripts_read() {
        let value: serde_json::Value = serde_json::from_str(&json(&status()).unwrap()).unwrap();
        let expected = serde_json::json!({
            "node_id": 1, "version": "0.1.0", "certificate_expires": null, "liveness_from": 1, "cluster_version": 2,
            "nodes": [{"id": 1, "address": "127.0.0.1:7070", "up": true, "draining": false, "replicas": 1, "meta_voter": true,
                       "version": "0.1.0"}],
            "groups": [
                {"group_id": 0, "kind": "meta", "leader": 1, "voters": [1, 2], "term": 3, "applied_index": 9,
                 "committed_index": 9, "last_log_index": 10, "state": "Leader", "range_start": 0, "range_end": 0,
                 "replicas": [{"node_id": 2, "matched_index": 8, "lag": 2}]},
                {"group_id": 1, "kind": "shard", "leader": null, "voters": [1, 2], "term": 3, "applied_index": 9,
                 "committed_index": 9, "last_log_index": 10, "state": "Leader", "range_start": 0, "range_end": u64::MAX,
                 "replicas": [{"node_id": 2, "matched_index": 8, "lag": 2}]},
            ],
            "backups": [{"id": "b1", "location": "", "finished_at": 0, "bytes": 2048, "rows": 5, "incremental": false,
                         "scheduled": false}],
        });
        assert!(status_table(&status()).contains("last backup: b1"), "{}", status_table(&status()));
        assert_eq!(value, expected);
    }

    #[test]
    fn the_shard_map_shows_moves_and_operations() {
        use quiver_client::{FinishedOp, OpKind, ShardMap, ShardOp};
        let mut shard_map = ShardMap::uniform(2, &[1, 2]).unwrap();
        shard_map.shards[0].leader = Some(2);
        shard_map.shards[1].replicas = vec![1, 3];
        let op = |id, kind| ShardOp { id, kind, started_at: 0, requested: id == 7 };
        let map = ClusterMap {
            shard_map,
            nodes: [(2, "127.0.0.1:7071".to_string())].into(),
            operations: vec![op(7, OpKind::TransferLeader { shard: 1, to: 1 })],
            finished: vec![FinishedOp {
                op: op(6, OpKind::Rebalance),
                finished_at: 0,
                outcome: Outcome::Failed("no way".into()),
            }],
            ..ClusterMap::default()
        };
        let text = shard_map_table(&map);
        assert!(text.contains("2 (127.0.0.1:7071)") && text.contains("1,3 (voters 1,2)"), "{text}");
        let ops: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("OPERATION")).skip(1).collect();
        assert!(
            ops[0].starts_with("6 ") && ops[0].contains("failed: no way") && ops[0].contains("placement"),
            "{text}"
        );
        assert!(ops[1].contains("under way") && ops[1].contains("transfer leadership of shard 1 to node 1"), "{text}");
    }

    #[test]
    fn status_table_names_missing_leaders_and_shard_ranges() {
        let text = status_table(&status());
        let shard = text.lines().find(|l| l.starts_with("1 ") && l.contains("shard")).unwrap();
        assert!(shard.contains("none") && shard.contains("0000000000000000-ffffffffffffffff"), "{text}");
    }
}
