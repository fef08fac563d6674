//! How `quiverctl` prints answers: aligned tables for people, JSON for scripts.

use std::collections::BTreeMap;

use quiver_client::{FeatureValue, Freshness, OnlineFeatures, Project, StatusResponse, Value};
use quiver_core::time::{format_timestamp, format_ttl};

/// Left-aligned columns separated by two spaces, with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

fn cell(v: &FeatureValue) -> String {
    match v.status {
        Freshness::Present => v.value.to_string(),
        Freshness::NotFound => "-".into(),
        Freshness::Expired => "(expired)".into(),
    }
}

/// `quiverctl get --format table`: one line per entity, join keys then features.
pub fn online_table(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures) -> String {
    let key_names: Vec<&str> = entities.first().map(|e| e.keys().map(String::as_str).collect()).unwrap_or_default();
    let headers: Vec<&str> = key_names.iter().copied().chain(answer.features.iter().map(String::as_str)).collect();
    let rows: Vec<Vec<String>> = entities
        .iter()
        .zip(&answer.rows)
        .map(|(keys, values)| keys.values().map(Value::to_string).chain(values.iter().map(cell)).collect())
        .collect();
    table(&headers, &rows)
}

/// `quiverctl get --format json`: one object per entity, join keys first, then each
/// feature reference with its value (null when absent or expired).
pub fn online_json(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures) -> String {
    let mut out = String::new();
    for (keys, values) in entities.iter().zip(&answer.rows) {
        let fields = keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_json()))
            .chain(answer.features.iter().zip(values).map(|(f, v)| (f.as_str(), v.value.to_json())));
        let parts: Vec<String> = fields.map(|(k, v)| format!("{}:{}", serde_json::Value::from(k), v)).collect();
        out += &format!("{{{}}}\n", parts.join(","));
    }
    out
}

pub fn project_listing(p: &Project) -> String {
    let mut out = format!(
        "project {}{}\n\n",
        p.name,
        if p.description.is_empty() { String::new() } else { format!(" — {}", p.description) }
    );
    let entities: Vec<Vec<String>> = p
        .entities
        .values()
        .map(|e| {
            vec![
                e.name.clone(),
                e.join_keys.iter().map(|k| format!("{}:{}", k.name, k.ty)).collect::<Vec<_>>().join(", "),
            ]
        })
        .collect();
    out += &table(&["ENTITY", "JOIN KEYS"], &entities);
    let sets: Vec<Vec<String>> = p
        .feature_sets
        .values()
        .filter_map(|versions| versions.last())
        .map(|fs| {
            vec![
                fs.name.clone(),
                fs.version.to_string(),
                fs.entity.clone(),
                fs.features.len().to_string(),
                format_ttl(fs.ttl_secs),
                fs.owner.clone(),
            ]
        })
        .collect();
    out += "\n";
    out += &table(&["FEATURE SET", "VERSION", "ENTITY", "FEATURES", "TTL", "OWNER"], &sets);
    let vectors: Vec<Vec<String>> = p.vectors.values().map(|v| vec![v.name.clone(), v.features.join(", ")]).collect();
    out += "\n";
    out += &table(&["VECTOR", "FEATURES"], &vectors);
    out
}

pub fn describe_feature_set(p: &Project, name: &str) -> quiver_core::Result<String> {
    let fs = p.feature_set_by_ref(name)?;
    let versions: Vec<String> = p.feature_sets[&fs.name].iter().map(|v| v.version.to_string()).collect();
    let mut out = format!(
        "feature set  {}\nversion      {} (versions: {})\nentity       {}\ntimestamp    {}\nttl          {}\nowner        {}\ndescription  {}\ntags         {}\ncreated      {}\nupdated      {}\n\n",
        fs.name,
        fs.version,
        versions.join(", "),
        fs.entity,
        fs.timestamp_column,
        format_ttl(fs.ttl_secs),
        fs.owner,
        fs.description,
        fs.tags.join(", "),
        format_timestamp(fs.created_at),
        format_timestamp(fs.updated_at),
    );
    let rows: Vec<Vec<String>> = fs
        .features
        .iter()
        .map(|f| vec![f.name.clone(), f.ty.to_string(), f.tags.join(","), f.description.clone()])
        .collect();
    out += &table(&["FEATURE", "TYPE", "TAGS", "DESCRIPTION"], &rows);
    Ok(out)
}

pub fn describe_entity(p: &Project, name: &str) -> quiver_core::Result<String> {
    let e = p.entity(name)?;
    let mut out = format!("entity       {}\ndescription  {}\n\n", e.name, e.description);
    let keys: Vec<Vec<String>> = e.join_keys.iter().map(|k| vec![k.name.clone(), k.ty.to_string()]).collect();
    out += &table(&["JOIN KEY", "TYPE"], &keys);
    let sets: Vec<String> = p
        .feature_sets
        .values()
        .filter_map(|v| v.last())
        .filter(|fs| fs.entity == e.name)
        .map(|fs| fs.versioned_name())
        .collect();
    out += &format!("\nfeature sets: {}\n", sets.join(", "));
    Ok(out)
}

pub fn describe_vector(p: &Project, name: &str) -> quiver_core::Result<String> {
    let v = p.vector(name)?;
    let mut out = format!("feature vector  {}\ndescription     {}\n\n", v.name, v.description);
    let rows: Vec<Vec<String>> = p
        .resolve(&v.features)?
        .into_iter()
        .map(|f| vec![f.reference, f.ty.to_string(), format!("{}@{}", f.set, f.version)])
        .collect();
    out += &table(&["FEATURE", "TYPE", "FROM"], &rows);
    Ok(out)
}

pub fn status_table(s: &StatusResponse) -> String {
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
                g.kind.clone(),
                if g.has_leader { g.leader_id.to_string() } else { "none".into() },
                g.voters.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                g.term.to_string(),
                g.applied_index.to_string(),
                g.committed_index.to_string(),
                g.state.clone(),
                lags(g),
                if g.kind == "shard" { format!("{:016x}-{:016x}", g.range_start, g.range_end) } else { String::new() },
            ]
        })
        .collect();
    out += "\n";
    let headers = ["GROUP", "KIND", "LEADER", "VOTERS", "TERM", "APPLIED", "COMMITTED", "STATE", "LAG", "HASH RANGE"];
    out += &table(&headers, &groups);
    out
}

/// `node:entries` behind the leader, for each replica (known on the leader only).
fn lags(g: &quiver_client::GroupStatus) -> String {
    let lags: Vec<String> =
        g.replicas.iter().filter(|r| r.node_id != g.leader_id).map(|r| format!("{}:{}", r.node_id, r.lag)).collect();
    if lags.is_empty() { "-".into() } else { lags.join(",") }
}

pub fn status_json(s: &StatusResponse) -> String {
    let nodes: Vec<_> = s
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id, "address": n.address, "up": n.up, "draining": n.draining,
                "replicas": n.replicas, "meta_voter": n.meta_voter,
            })
        })
        .collect();
    let groups: Vec<_> = s
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "group_id": g.group_id, "kind": g.kind, "leader": g.has_leader.then_some(g.leader_id),
                "voters": g.voters, "term": g.term, "applied_index": g.applied_index,
                "committed_index": g.committed_index, "last_log_index": g.last_log_index, "state": g.state,
                "range_start": g.range_start, "range_end": g.range_end,
                "replicas": g.replicas.iter().map(|r| serde_json::json!({
                    "node_id": r.node_id, "matched_index": r.matched_index, "lag": r.lag,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"node_id": s.node_id, "version": s.version, "nodes": nodes, "groups": groups}).to_string()
}

pub fn shard_map_table(map: &quiver_client::ShardMap) -> String {
    let addr = |id: u64| map.nodes.iter().find(|n| n.id == id).map_or_else(|| "?".into(), |n| n.address.clone());
    let rows: Vec<Vec<String>> = map
        .shards
        .iter()
        .map(|s| {
            vec![
                s.shard_id.to_string(),
                format!("{:016x}-{:016x}", s.start, s.end),
                format!("{}.{}", s.version, s.conf_ver),
                s.replicas.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                s.leader_hint.map_or_else(|| "unknown".into(), |id| format!("{id} ({})", addr(id))),
            ]
        })
        .collect();
    table(&["SHARD", "HASH RANGE", "EPOCH", "REPLICAS", "LEADER"], &rows)
}

pub fn shard_map_json(map: &quiver_client::ShardMap) -> String {
    let shards: Vec<_> = map
        .shards
        .iter()
        .map(|s| {
            serde_json::json!({
                "shard_id": s.shard_id, "start": s.start, "end": s.end, "version": s.version,
                "conf_ver": s.conf_ver, "replicas": s.replicas, "leader": s.leader_hint,
            })
        })
        .collect();
    let nodes: Vec<_> = map.nodes.iter().map(|n| serde_json::json!({"id": n.id, "address": n.address})).collect();
    serde_json::json!({"shards": shards, "nodes": nodes}).to_string()
}

/// The first `limit` rows of a batch as a table, with a line saying how many there are.
pub fn batch_preview(batch: &arrow_array::RecordBatch, limit: usize) -> anyhow::Result<String> {
    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema();
    let headers: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows: Vec<Vec<String>> =
        (0..batch.num_rows().min(limit)).map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect()).collect();
    let mut out = table(&headers, &rows);
    if batch.num_rows() > limit {
        out += &format!("... {} more rows\n", batch.num_rows() - limit);
    }
    Ok(out)
}

pub fn dataset_listing(datasets: &[quiver_client::Dataset]) -> String {
    let rows: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.rows.to_string(),
                d.feature_sets.join(", "),
                d.spine.clone(),
                format_timestamp(d.created_at_micros),
            ]
        })
        .collect();
    table(&["DATASET", "ROWS", "FEATURE SETS", "SPINE", "CREATED"], &rows)
}

pub fn describe_dataset(d: &quiver_client::Dataset) -> String {
    format!(
        "dataset       {}\npath          {}\nrows          {}\nbytes         {}\nvector        {}\nfeature sets  {}\nfeatures      {}\nspine         {}\nspine times   {} .. {}\ncreated       {}\n",
        d.name,
        d.path,
        d.rows,
        d.bytes,
        if d.vector.is_empty() { "-" } else { &d.vector },
        d.feature_sets.join(", "),
        d.features.join(", "),
        d.spine,
        format_timestamp(d.spine_from_micros),
        format_timestamp(d.spine_to_micros),
        format_timestamp(d.created_at_micros),
    )
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

fn quantile(f: &quiver_client::FeatureStatistics, q: f64) -> Option<f64> {
    f.quantiles.iter().find(|x| (x.q - q).abs() < 1e-9).map(|x| x.value)
}

pub fn statistics_table(s: &quiver_client::Statistics) -> String {
    let mut out = format!("{}@{}: {} rows over {} days\n", s.feature_set, s.version, s.rows, s.days);
    let rows: Vec<Vec<String>> = s
        .features
        .iter()
        .map(|f| {
            let top = f.top_values.iter().take(3).map(|t| format!("{}:{}", t.value, t.count)).collect::<Vec<_>>();
            vec![
                f.feature.clone(),
                f.r#type.clone(),
                f.count.to_string(),
                f.nulls.to_string(),
                f.distinct.to_string(),
                number(f.min),
                number(f.mean),
                number(f.stddev),
                number(quantile(f, 0.5)),
                number(quantile(f, 0.99)),
                number(f.max),
                if top.is_empty() { "-".into() } else { top.join(" ") },
            ]
        })
        .collect();
    let headers =
        ["FEATURE", "TYPE", "COUNT", "NULLS", "DISTINCT", "MIN", "MEAN", "STDDEV", "P50", "P99", "MAX", "TOP"];
    out += &table(&headers, &rows);
    out
}

pub fn statistics_json(s: &quiver_client::Statistics) -> String {
    let features: Vec<_> = s
        .features
        .iter()
        .map(|f| {
            serde_json::json!({
                "feature": f.feature, "type": f.r#type, "count": f.count, "nulls": f.nulls,
                "distinct": f.distinct, "min": f.min, "max": f.max, "mean": f.mean, "stddev": f.stddev,
                "quantiles": f.quantiles.iter().map(|q| serde_json::json!({"q": q.q, "value": q.value})).collect::<Vec<_>>(),
                "histogram": f.histogram.iter()
                    .map(|b| serde_json::json!({"lower": b.lower, "upper": b.upper, "count": b.count}))
                    .collect::<Vec<_>>(),
                "top_values": f.top_values.iter()
                    .map(|t| serde_json::json!({"value": t.value, "count": t.count}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "feature_set": s.feature_set, "version": s.version, "rows": s.rows, "days": s.days, "features": features,
    })
    .to_string()
}

pub fn drift_table(r: &quiver_client::DriftReport) -> String {
    let rows: Vec<Vec<String>> = r
        .features
        .iter()
        .map(|f| {
            let metric = |v: f64| if f.error.is_empty() { format!("{v:.4}") } else { "-".into() };
            vec![
                f.feature.clone(),
                metric(f.psi),
                f.ks.map_or_else(|| "-".into(), |k| format!("{k:.4}")),
                metric(f.js_distance),
                metric(f.hellinger),
                metric(f.tvd),
                format!("{}/{}", f.reference_count, f.current_count),
                if f.error.is_empty() { f.status.clone() } else { format!("{} ({})", f.status, f.error) },
            ]
        })
        .collect();
    let headers = ["FEATURE", "PSI", "KS", "JS", "HELLINGER", "TVD", "REF/CUR", "STATUS"];
    format!("{}overall: {}\n", table(&headers, &rows), r.status)
}

pub fn drift_json(r: &quiver_client::DriftReport) -> String {
    let features: Vec<_> = r
        .features
        .iter()
        .map(|f| {
            serde_json::json!({
                "feature": f.feature, "psi": f.psi, "ks": f.ks, "js_distance": f.js_distance,
                "hellinger": f.hellinger, "tvd": f.tvd, "status": f.status,
                "error": (!f.error.is_empty()).then_some(&f.error),
                "reference_count": f.reference_count, "current_count": f.current_count,
            })
        })
        .collect();
    serde_json::json!({"status": r.status, "features": features}).to_string()
}
