//! How `quiverctl` prints answers: aligned tables for people, JSON for scripts.

use std::collections::BTreeMap;

use quiver_client::{
    ClusterMap, ClusterStatus, Dataset, DriftReport, FeatureStatistics, FeatureValue, Freshness, GroupKind,
    GroupStatus, OnlineFeatures, Project, Statistics, Value, drift_status_name,
};
use quiver_core::time::{format_timestamp, format_ttl};
use serde::Serialize;

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

/// The JSON form of an answer (`--format json`): the same for every command.
pub fn json(answer: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string(answer)
}

/// `quiverctl get --format json`: one line per entity, see [`EntityLine`].
pub fn online_json(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures) -> serde_json::Result<String> {
    let lines = entities
        .iter()
        .zip(&answer.rows)
        .map(|(keys, values)| json(&EntityLine { keys, features: &answer.features, values }).map(|line| line + "\n"));
    lines.collect()
}

/// One entity of an online answer as one JSON object: its join keys first, then each
/// feature reference with its value (null when absent or expired).
struct EntityLine<'a> {
    keys: &'a BTreeMap<String, Value>,
    features: &'a [String],
    values: &'a [FeatureValue],
}

impl Serialize for EntityLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.keys.len() + self.features.len()))?;
        for (name, value) in self.keys {
            map.serialize_entry(name, &value.to_json())?;
        }
        for (name, value) in self.features.iter().zip(self.values) {
            map.serialize_entry(name, &value.value.to_json())?;
        }
        map.end()
    }
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

pub fn dataset_listing(datasets: &[Dataset]) -> String {
    let rows: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.rows.to_string(),
                d.feature_sets.join(", "),
                d.spine.clone(),
                format_timestamp(d.created_at),
            ]
        })
        .collect();
    table(&["DATASET", "ROWS", "FEATURE SETS", "SPINE", "CREATED"], &rows)
}

pub fn describe_dataset(d: &Dataset) -> String {
    format!(
        "dataset       {}\npath          {}\nrows          {}\nbytes         {}\nvector        {}\nfeature sets  {}\nfeatures      {}\nspine         {}\nspine times   {} .. {}\ncreated       {}\n",
        d.name,
        d.path,
        d.rows,
        d.bytes,
        d.vector.as_deref().unwrap_or("-"),
        d.feature_sets.join(", "),
        d.features.join(", "),
        d.spine,
        format_timestamp(d.spine_from),
        format_timestamp(d.spine_to),
        format_timestamp(d.created_at),
    )
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

fn quantile(f: &FeatureStatistics, q: f64) -> Option<f64> {
    f.quantiles.iter().find(|x| (x.q - q).abs() < 1e-9).map(|x| x.value)
}

pub fn statistics_table(s: &Statistics) -> String {
    let mut out = format!("{}@{}: {} rows over {} days\n", s.feature_set, s.version, s.rows, s.days);
    let rows: Vec<Vec<String>> = s
        .features
        .iter()
        .map(|f| {
            let top = f.top_values.iter().take(3).map(|t| format!("{}:{}", t.value, t.count)).collect::<Vec<_>>();
            vec![
                f.feature.clone(),
                f.value_type.to_string(),
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

pub fn drift_table(r: &DriftReport) -> String {
    let rows: Vec<Vec<String>> = r
        .features
        .iter()
        .map(|f| {
            let metric = |pick: fn(&quiver_client::DriftMetrics) -> Option<f64>| {
                f.metrics.as_ref().and_then(pick).map_or_else(|| "-".into(), |v| format!("{v:.4}"))
            };
            let status = drift_status_name(f.status);
            vec![
                f.feature.clone(),
                metric(|m| Some(m.psi)),
                metric(|m| m.ks),
                metric(|m| Some(m.js_distance)),
                metric(|m| Some(m.hellinger)),
                metric(|m| Some(m.tvd)),
                format!("{}/{}", f.reference_count, f.current_count),
                f.error.as_ref().map_or_else(|| status.to_string(), |e| format!("{status} ({e})")),
            ]
        })
        .collect();
    let headers = ["FEATURE", "PSI", "KS", "JS", "HELLINGER", "TVD", "REF/CUR", "STATUS"];
    format!("{}overall: {}\n", table(&headers, &rows), drift_status_name(r.status))
}
