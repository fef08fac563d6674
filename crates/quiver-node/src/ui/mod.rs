//! The dashboard on the node's HTTP port: the catalog (projects, entities, feature sets
//! with owners, tags and versions, vectors, datasets and their lineage), per-feature
//! statistics with histograms, drift over time with the thresholds drawn, and cluster
//! health. Server-rendered HTML with inline SVG; it reads the same merged summaries as
//! `GetStatistics`, never raw data. Each page shows what the caller's token may read
//! (`api::http_gate` puts the caller in the request): the projects it has a role on, and
//! the values of personal features only with the PII grant.

pub(crate) mod html;
mod svg;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use quiver_core::access::{Need, Principal, Role, personal_in};
use quiver_core::audit::{AuditEntry, AuditQuery};
use quiver_core::shard_map::META_GROUP;
use quiver_core::stats::{DriftStatus, DriftThresholds, FeatureSummary, drift};
use quiver_core::table::TableRef;
use quiver_core::time::{format_day, format_timestamp};

use crate::auth::Call;
use crate::node::Node;
use html::{escape, page, segment, table};
use quiver_store::error::Result;
use quiver_store::meta::stats::{self, Origin};

/// Days at the start of a feature set's history that drift over time is measured against.
const REFERENCE_DAYS: usize = 7;
/// Days shown in drift over time.
const RECENT_DAYS: usize = 30;
/// Audit entries on the audit page.
const AUDIT_SHOWN: usize = 200;

type Page = (StatusCode, Html<String>);

pub fn routes() -> axum::Router<Arc<Node>> {
    axum::Router::new()
        .route("/ui", axum::routing::get(catalog))
        .route("/ui/cluster", axum::routing::get(cluster))
        .route("/ui/audit", axum::routing::get(audit))
        .route("/ui/feature-sets/{project}/{set}", axum::routing::get(feature_set))
}

fn respond(title: &str, body: Result<String>) -> Page {
    match body {
        Ok(body) => (StatusCode::OK, Html(page(title, &body))),
        Err(e) => {
            let code = match e.code() {
                "Q3002" => StatusCode::FORBIDDEN,
                c if c.starts_with("Q1") => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (code, Html(page(title, &format!("<p class=\"drift\">{}</p>", escape(&e.to_string())))))
        }
    }
}

async fn catalog(State(node): State<Arc<Node>>, Extension(call): Extension<Arc<Call>>) -> Page {
    respond("Catalog", catalog_body(&node, &call.caller).await)
}

async fn catalog_body(node: &Node, caller: &Principal) -> Result<String> {
    let state = node.meta.caught_up().await?;
    let mut out = String::new();
    if state.registry.projects.is_empty() {
        out.push_str("<p class=\"muted\">No project yet: <code>quiverctl apply -f definitions.yaml</code>.</p>");
    }
    for project in state.registry.projects.values().filter(|p| caller.role_on(&p.name).is_some()) {
        let p = escape(&project.name);
        out += &format!("<h2>Project {p}</h2><p class=\"muted\">{}</p>", escape(&project.description));
        let entities: Vec<Vec<String>> = project
            .entities
            .values()
            .map(|e| {
                let keys: Vec<String> = e.join_keys.iter().map(|k| format!("{} ({})", k.name, k.ty.name())).collect();
                vec![escape(&e.name), escape(&keys.join(", ")), escape(&e.description)]
            })
            .collect();
        out += &format!("<h3>Entities</h3>{}", table(&["entity", "join keys", "description"], &entities));
        let sets: Vec<Vec<String>> = project
            .feature_sets
            .values()
            .filter_map(|versions| versions.last().map(|fs| (fs, versions.len())))
            .map(|(fs, versions)| {
                let link = format!("/ui/feature-sets/{}/{}", segment(&project.name), segment(&fs.name));
                vec![
                    format!("<a href=\"{link}\">{}</a>", escape(&fs.name)),
                    format!("v{} ({versions} in all)", fs.version),
                    escape(&fs.entity),
                    escape(&fs.owner),
                    escape(&fs.tags.join(", ")),
                    fs.features.len().to_string(),
                    escape(&fs.description),
                ]
            })
            .collect();
        let headers = ["feature set", "version", "entity", "owner", "tags", "features", "description"];
        out += &format!("<h3>Feature sets</h3>{}", table(&headers, &sets));
        let vectors: Vec<Vec<String>> = project
            .vectors
            .values()
            .map(|v| vec![escape(&v.name), escape(&v.features.join(", ")), escape(&v.description)])
            .collect();
        out += &format!("<h3>Feature vectors</h3>{}", table(&["vector", "features", "description"], &vectors));
        let datasets: Vec<Vec<String>> = state
            .datasets
            .iter()
            .filter(|((p, _), _)| *p == project.name)
            .map(|(_, d)| {
                vec![
                    escape(&d.name),
                    escape(d.vector.as_deref().unwrap_or("-")),
                    escape(&d.feature_sets.join(", ")),
                    escape(&d.spine),
                    d.rows.to_string(),
                    format!("{} – {}", format_timestamp(d.spine_from), format_timestamp(d.spine_to)),
                    escape(&d.path),
                ]
            })
            .collect();
        let headers = ["dataset", "vector", "built from (lineage)", "spine", "rows", "spine times", "path"];
        out += &format!("<h3>Training datasets</h3>{}", table(&headers, &datasets));
        let tree = node.groups.group(META_GROUP)?.data.clone();
        let mut runs = Vec::new();
        for fs in project.feature_sets.values().filter_map(|v| v.last()) {
            let table_ref = TableRef::new(&project.name, fs);
            runs.extend(run_rows(tree.as_ref(), &table_ref, 1, &withheld(caller, &project.name, fs))?);
        }
        out += &format!(
            "<h3>Recent monitor results</h3>{}",
            table(&["feature set", "run at", "status", "features not ok"], &runs)
        );
    }
    Ok(out)
}

async fn cluster(State(node): State<Arc<Node>>) -> Page {
    respond("Cluster", cluster_body(&node).await)
}

async fn cluster_body(node: &Node) -> Result<String> {
    let status = crate::api::admin::cluster_status(node, None).await?;
    let known = status.liveness_from != 0;
    let nodes: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            let state = match (known || n.id == status.node_id, n.up) {
                (true, true) => "<span class=\"ok\">up</span>",
                (true, false) => "<span class=\"down\">down</span>",
                (false, _) => "unknown (ask the metadata leader's page)",
            };
            let draining = if n.draining { " (draining)" } else { "" };
            let vote = if n.meta_voter { "voter" } else { "learner" };
            vec![
                n.id.to_string(),
                escape(&n.address),
                format!("{state}{draining}"),
                n.replicas.to_string(),
                vote.into(),
                if n.version.is_empty() { "unknown".into() } else { escape(&n.version) },
            ]
        })
        .collect();
    let groups: Vec<Vec<String>> = status
        .groups
        .iter()
        .map(|g| {
            let lag: Vec<String> = g.replicas.iter().map(|r| format!("{}:{}", r.node_id, r.lag)).collect();
            vec![
                g.group_id.to_string(),
                escape(&g.kind),
                if g.has_leader { g.leader_id.to_string() } else { "<span class=\"down\">none</span>".into() },
                escape(&format!("{:?}", g.voters)),
                g.applied_index.to_string(),
                g.committed_index.to_string(),
                escape(&if lag.is_empty() { "-".to_string() } else { lag.join(", ") }),
            ]
        })
        .collect();
    let now = quiver_core::time::now_micros();
    let backups: Vec<Vec<String>> = status
        .backups
        .iter()
        .rev()
        .map(|b| {
            let age =
                std::time::Duration::from_secs((now.saturating_sub(b.finished_at_micros) / 1_000_000).max(0) as u64);
            let kind = match (b.incremental, b.scheduled) {
                (false, false) => "full",
                (true, false) => "incremental",
                (false, true) => "full, scheduled",
                (true, true) => "incremental, scheduled",
            };
            vec![
                escape(&b.id),
                escape(&b.location),
                format!(
                    "{} ({} ago)",
                    quiver_core::time::format_timestamp(b.finished_at_micros),
                    humantime::format_duration(age)
                ),
                format!("{:.1} MiB", b.bytes as f64 / (1 << 20) as f64),
                b.rows.to_string(),
                kind.into(),
            ]
        })
        .collect();
    let backups = match backups.is_empty() {
        true => "<p>No backup yet: <code>quiverctl backup create --to DIR|s3://…</code>, or a <code>[backup]</code> schedule.</p>".to_string(),
        false => table(&["backup", "location", "finished", "size", "rows", "kind"], &backups),
    };
    Ok(format!(
        "<p>As seen by node {} (quiver {}), cluster version {}.</p><h2>Nodes</h2>{}<h2>Groups on this node</h2>{}<h2>Backups</h2>{}",
        status.node_id,
        escape(&status.version),
        status.cluster_version,
        table(&["node", "address", "state", "replicas", "meta", "version"], &nodes),
        table(&["group", "kind", "leader", "voters", "applied", "committed", "replica lag"], &groups),
        backups
    ))
}

async fn audit(State(node): State<Arc<Node>>, Extension(call): Extension<Arc<Call>>) -> Page {
    respond("Audit log", audit_body(&node, &call.caller).await)
}

/// The newest entries first: every project's for a cluster admin, else those of the
/// projects the caller administers.
async fn audit_body(node: &Node, caller: &Principal) -> Result<String> {
    let state = node.meta.caught_up().await?;
    let tree = node.groups.group(META_GROUP)?.data.clone();
    let query = AuditQuery { limit: AUDIT_SHOWN, ..AuditQuery::default() };
    let projects: Vec<&String> =
        state.registry.projects.keys().filter(|p| caller.role_on(p) == Some(Role::Admin)).collect();
    let visible =
        |e: &AuditEntry| caller.is_cluster_admin() || e.project.as_ref().is_some_and(|p| projects.contains(&p));
    let entries = crate::auth::audit::read(tree.as_ref(), &query)?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .rev()
        .filter(|e| visible(e))
        .map(|e| {
            let outcome = if e.outcome == "ok" { "<span class=\"ok\">ok</span>".into() } else { escape(&e.outcome) };
            vec![
                format_timestamp(e.at),
                escape(&e.actor),
                escape(&e.from),
                e.node.to_string(),
                escape(&e.action),
                escape(e.project.as_deref().unwrap_or("-")),
                escape(&e.detail),
                outcome,
            ]
        })
        .collect();
    let headers = ["time", "actor", "from", "node", "action", "project", "what", "outcome"];
    Ok(format!(
        "<p class=\"muted\">Changes, token and cluster operations, refused requests and reads of personal features; \
         the newest {AUDIT_SHOWN} (<code>quiverctl audit</code> reads further back).</p>{}",
        table(&headers, &rows)
    ))
}

async fn feature_set(
    State(node): State<Arc<Node>>,
    Extension(call): Extension<Arc<Call>>,
    Path((project, set)): Path<(String, String)>,
) -> Page {
    let title = format!("Feature set {set}");
    let body = feature_set_body(&node, &call, &project, &set).await;
    if let Err(e @ quiver_store::error::Error::Core(quiver_core::Error::PermissionDenied(_))) = &body {
        let entry = call.entry(node.id, Some(format!("feature set {project}/{set}")), format!("[{}] {e}", e.code()));
        if let Err(e) = node.audit.record(entry).await {
            tracing::warn!("not in the audit log: {e}");
        }
    }
    respond(&title, body)
}

async fn feature_set_body(node: &Node, call: &Call, project: &str, set: &str) -> Result<String> {
    let caller = &call.caller;
    call.allow(Need::Project { project, role: Role::Viewer, action: "reading statistics" })?;
    let state = node.meta.caught_up().await?;
    let fs = state.registry.project(project)?.feature_set(set, None)?;
    let table_ref = TableRef::new(project, fs);
    let tree = node.groups.group(META_GROUP)?.data.clone();
    let days = stats::days(tree.as_ref(), &table_ref, Origin::Offline)?;
    let (all, _) = stats::merged(tree.as_ref(), &table_ref, Origin::Offline, (i64::MIN / 2, i64::MAX / 2))?;
    let mut out = format!(
        "<p>{} · v{} · entity {} · owner {} · tags {} · {} rows over {} days</p>",
        escape(project),
        fs.version,
        escape(&fs.entity),
        escape(&fs.owner),
        escape(&fs.tags.join(", ")),
        all.rows,
        days.len()
    );
    let mut by_name: BTreeMap<String, FeatureSummary> = all.columns.into_iter().collect();
    // Personal features' values (top values, ranges, histograms) only with the PII grant;
    // without it the page says which features it leaves out, and why.
    let withheld = withheld(caller, project, fs);
    let shown = if withheld.is_empty() { personal_in(fs) } else { Vec::new() };
    // `set:feature` less its `set:`.
    let hidden: Vec<&str> = withheld.iter().map(|f| &f[fs.name.len() + 1..]).collect();
    by_name.retain(|name, _| !hidden.contains(&name.as_str()));
    call.record_personal_read(&node.audit, node.id, || Ok(shown)).await?;
    out.push_str("<h2>Statistics</h2>");
    if !hidden.is_empty() {
        out += &format!(
            "<p class=\"drift\">Personal data (tagged pii), not shown: {}. Reading their values needs a token with \
             the PII grant on project {}.</p>",
            escape(&withheld.join(", ")),
            escape(project)
        );
    }
    let rows: Vec<Vec<String>> = fs
        .features
        .iter()
        .filter(|f| !hidden.contains(&f.name.as_str()))
        .map(|f| {
            let s = by_name.get(&f.name).cloned().unwrap_or_else(|| FeatureSummary::new(f.ty));
            let n = |v: Option<f64>| v.map_or_else(|| "-".into(), |x| format!("{x:.4}"));
            let top: Vec<String> = s.top_values().iter().take(3).map(|(v, c)| format!("{v}: {c}")).collect();
            vec![
                escape(&f.name),
                f.ty.name().into(),
                s.count().to_string(),
                s.nulls().to_string(),
                s.distinct().to_string(),
                n(s.min()),
                n(s.mean()),
                n(s.stddev()),
                n(s.quantile(0.5)),
                n(s.max()),
                escape(&top.join(", ")),
            ]
        })
        .collect();
    let headers = ["feature", "type", "count", "nulls", "distinct", "min", "mean", "stddev", "median", "max", "top"];
    out += &table(&headers, &rows);
    for f in &fs.features {
        let Some(s) = by_name.get(&f.name) else { continue };
        // Categorical features: their most frequent values; the others: 20 bins over the range.
        let top: Vec<(String, u64)> = s.top_values().into_iter().take(12).collect();
        let bins: Vec<(f64, f64, u64)> = if top.is_empty() {
            s.histogram(20).into_iter().map(|b| (b.lower, b.upper, b.count)).collect()
        } else {
            top.iter().enumerate().map(|(i, (_, c))| (i as f64, i as f64 + 1.0, *c)).collect()
        };
        let names: Vec<String> = top.into_iter().map(|(v, _)| v).collect();
        let chart = svg::histogram(&f.name, &bins, &names);
        out += &format!("<div class=\"card\"><b>{}</b><br>{chart}</div>", escape(&f.name));
    }
    out += &drift_over_time(tree.as_ref(), &table_ref, fs, &days, &hidden)?;
    out += &monitor_section(tree.as_ref(), &table_ref, fs, &withheld)?;
    Ok(out)
}

/// The personal features of `fs` (`set:feature`) that `caller` may not see, nor anything
/// derived from them: all of them without the PII grant on `project`, else none.
fn withheld(caller: &Principal, project: &str, fs: &quiver_core::registry::FeatureSet) -> Vec<String> {
    if caller.reads_pii(project) { Vec::new() } else { personal_in(fs) }
}

/// Rows of recorded monitor runs: time, status, and the features not ok but the `withheld`.
fn run_rows(
    tree: &dyn quiver_store::storage::KvTree,
    table_ref: &TableRef,
    limit: usize,
    withheld: &[String],
) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for (at, report) in stats::monitor_runs(tree, table_ref, limit)? {
        let hidden = |feature: &str| {
            withheld.iter().any(|w| w == feature || w.strip_prefix(&format!("{}:", table_ref.set)) == Some(feature))
        };
        let flagged: Vec<String> = report
            .features
            .iter()
            .filter(|f| f.status != DriftStatus::Ok && !hidden(&f.feature))
            .map(|f| {
                let detail = match (&f.error, &f.metrics) {
                    (Some(error), _) => error.clone(),
                    (None, Some(m)) => format!("PSI {:.3}", m.psi),
                    (None, None) => String::new(),
                };
                let status = f.status.name();
                format!("<span class=\"{status}\">{}</span> ({})", escape(&f.feature), escape(&detail))
            })
            .collect();
        rows.push(vec![
            escape(&table_ref.set),
            format_timestamp(at),
            format!("<span class=\"{s}\">{s}</span>", s = report.status.name()),
            if flagged.is_empty() { "-".into() } else { flagged.join("<br>") },
        ]);
    }
    Ok(rows)
}

fn monitor_section(
    tree: &dyn quiver_store::storage::KvTree,
    table_ref: &TableRef,
    fs: &quiver_core::registry::FeatureSet,
    withheld: &[String],
) -> Result<String> {
    let mut out = String::from("<h2>Monitor</h2>");
    let Some(m) = fs.monitoring.as_ref().filter(|m| m.reference.is_some()) else {
        out.push_str("<p class=\"muted\">No monitor: add a <code>monitoring:</code> block with a reference.</p>");
        return Ok(out);
    };
    out += &format!(
        "<p>Reference <code>{}</code>, window {}, every {}; PSI warning {} / drift {}.</p>",
        escape(m.reference.as_deref().unwrap_or_default()),
        escape(m.window.as_deref().unwrap_or("1d")),
        escape(m.every.as_deref().unwrap_or("1h")),
        m.thresholds.psi.warning,
        m.thresholds.psi.drift
    );
    out += &table(&["feature set", "run at", "status", "features not ok"], &run_rows(tree, table_ref, 10, withheld)?);
    Ok(out)
}

/// PSI of each recent day against the first days of the history, per feature but the
/// `hidden` ones.
fn drift_over_time(
    tree: &dyn quiver_store::storage::KvTree,
    table_ref: &TableRef,
    fs: &quiver_core::registry::FeatureSet,
    days: &[i64],
    hidden: &[&str],
) -> Result<String> {
    let mut out = String::from("<h2>Drift over time</h2>");
    let (Some(first), Some(last)) = (days.first(), days.get(REFERENCE_DAYS.min(days.len()).saturating_sub(1))) else {
        out.push_str("<p class=\"muted\">No statistics yet.</p>");
        return Ok(out);
    };
    let reference: BTreeMap<String, FeatureSummary> =
        stats::merged(tree, table_ref, Origin::Offline, (*first, last + 1))?.0.columns.into_iter().collect();
    let recent = &days[days.len().saturating_sub(RECENT_DAYS)..];
    let mut series: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for day in recent {
        let current = stats::merged(tree, table_ref, Origin::Offline, (*day, day + 1))?.0.columns;
        for (name, summary) in current {
            if let Some(metrics) = reference.get(&name).and_then(|r| drift(r, &summary).ok()) {
                series.entry(name).or_default().push((format_day(*day), metrics.psi));
            }
        }
    }
    let t = DriftThresholds::default().psi;
    out += &format!(
        "<p class=\"muted\">PSI of each day against the first {} days ({} – {}); dashed lines: warning {} and drift {}.</p>",
        REFERENCE_DAYS.min(days.len()),
        format_day(*first),
        format_day(*last),
        t.warning,
        t.drift
    );
    for f in fs.features.iter().filter(|f| !hidden.contains(&f.name.as_str())) {
        if let Some(points) = series.get(&f.name) {
            out += &format!(
                "<div class=\"card\"><b>{}</b><br>{}</div>",
                escape(&f.name),
                svg::drift_line(&f.name, points, t.warning, t.drift)
            );
        }
    }
    Ok(out)
}
