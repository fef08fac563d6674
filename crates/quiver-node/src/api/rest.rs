//! JSON over HTTP, for model servers and sources that do not speak gRPC: `POST /v1/features`
//! reads online values and `POST /v1/push` writes rows, through the same `online` path,
//! authorization, PII check, audit, metrics and limits as `FeatureService` (the HTTP gate has
//! admitted the caller by its bearer token and rate first). Values are typed by the
//! registry: join keys by their entity's declared types, row fields by their columns'.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use quiver_core::access::{Need, Role};
use quiver_core::online::{Consistency, FeatureSelection, OnlineFeatures};
use quiver_core::row::{Columns, InputRow};
use quiver_core::time::format_timestamp;
use quiver_core::{Error as CoreError, Value, ValueType};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as JsonValue};

use super::json_answer;
use super::observed::run;
use crate::auth::Call;
use crate::node::Node;
use crate::online;
use quiver_store::error::Result;

/// The largest body either route reads; `[limits] max_request_bytes` may cap it lower.
const MAX_BODY_BYTES: usize = 64 << 20;

pub fn routes() -> axum::Router<Arc<Node>> {
    axum::Router::new()
        .route("/v1/features", post(features))
        .route("/v1/push", post(push))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum JsonConsistency {
    #[default]
    Linearizable,
    Stale,
}

/// `POST /v1/features`: feature references or a vector, and entities by join key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeaturesRequest {
    project: String,
    features: Option<Vec<String>>,
    vector: Option<String>,
    entities: Vec<Map<String, JsonValue>>,
    #[serde(default)]
    consistency: JsonConsistency,
}

/// `POST /v1/push`: rows of one feature set, all written or none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    project: String,
    /// `name` for the current version, or `name@version`.
    feature_set: String,
    rows: Vec<Map<String, JsonValue>>,
    /// Makes a retried push apply at most once.
    #[serde(default)]
    request_id: Option<String>,
}

/// The body as `what`, or `InvalidArgument` naming what is wrong with it.
fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> std::result::Result<T, CoreError> {
    serde_json::from_slice(body).map_err(|e| CoreError::InvalidArgument(format!("the body is not {what}: {e}")))
}

fn answer(result: Result<JsonValue>) -> Response {
    match result {
        Ok(body) => json_answer::body(StatusCode::OK, &body),
        Err(e) => json_answer::error(e.into_core()),
    }
}

async fn features(State(node): State<Arc<Node>>, Extension(gate): Extension<Arc<Call>>, body: Bytes) -> Response {
    let call = gate.as_method("GetOnlineFeatures");
    answer(
        run(&node, &call, async {
            let req: FeaturesRequest = parse(&body, "a features request")?;
            let features = match (req.features, req.vector) {
                (Some(refs), None) => FeatureSelection::Refs(refs),
                (None, Some(vector)) => FeatureSelection::Vector(vector),
                _ => {
                    let why = "give either features (a list of \"set:feature\") or vector (a name)";
                    return Err(CoreError::InvalidArgument(why.into()).into());
                }
            };
            call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "reading online values" })?;
            let entities = typed_entities(&node, &req.project, req.entities).await?;
            let consistency = match req.consistency {
                JsonConsistency::Linearizable => Consistency::Linearizable,
                JsonConsistency::Stale => Consistency::Stale,
            };
            let read = online::Read { project: req.project, features, entities, consistency, routes: Vec::new() };
            Ok(features_json(online::read(&node, &call, read).await?, node.id))
        })
        .await,
    )
}

async fn push(State(node): State<Arc<Node>>, Extension(gate): Extension<Arc<Call>>, body: Bytes) -> Response {
    let call = gate.as_method("WriteFeatures");
    answer(
        run(&node, &call, async {
            let req: PushRequest = parse(&body, "a push request")?;
            call.allow(Need::Project { project: &req.project, role: Role::Writer, action: "writing rows" })?;
            let state = online::knowing(&node, &req.project, &req.feature_set).await?;
            let project = state.registry.project(&req.project)?;
            let fs = project.feature_set_by_ref(&req.feature_set)?;
            let columns = Columns::of(project.entity(&fs.entity)?, fs);
            let rows: Vec<InputRow> = req
                .rows
                .into_iter()
                .enumerate()
                .map(|(i, row)| columns.from_json(i + 1, row))
                .collect::<std::result::Result<_, _>>()?;
            let write = online::Write {
                project: req.project,
                feature_set: req.feature_set,
                rows,
                request_id: req.request_id.map(String::into_bytes).unwrap_or_default(),
                ..Default::default()
            };
            let written = online::write(&node, &call, write).await?;
            Ok(serde_json::json!({"rows_written": written.rows}))
        })
        .await,
    )
}

/// Each entity's join keys, typed as the project's entities declare them.
async fn typed_entities(
    node: &Node,
    project: &str,
    entities: Vec<Map<String, JsonValue>>,
) -> Result<Vec<BTreeMap<String, Value>>> {
    let (state, ()) = node.meta.current(|s| s.registry.project(project).map(|_| ()).map_err(Into::into)).await?;
    let project = state.registry.project(project)?;
    let types: HashMap<&str, ValueType> =
        project.entities.values().flat_map(|e| e.join_keys.iter().map(|k| (k.name.as_str(), k.ty))).collect();
    let typed = entities.into_iter().enumerate().map(|(i, keys)| {
        keys.into_iter()
            .map(|(key, json)| {
                let bad = |reason: String| CoreError::InvalidEntityKey { entity: i + 1, key: key.clone(), reason };
                let Some(ty) = types.get(key.as_str()) else {
                    let mut known: Vec<&str> = types.keys().copied().collect();
                    known.sort_unstable();
                    return Err(bad(format!(
                        "not a join key of project {} (it has: {})",
                        project.name,
                        known.join(", ")
                    )));
                };
                let value = Value::from_json(&json, *ty).map_err(bad)?;
                Ok((key, value))
            })
            .collect::<std::result::Result<BTreeMap<_, _>, CoreError>>()
    });
    Ok(typed.collect::<std::result::Result<_, _>>()?)
}

/// The answer as JSON: per entity, its values, statuses and event times in `features` order.
fn features_json(answer: OnlineFeatures, served_by: u64) -> JsonValue {
    let results: Vec<JsonValue> = answer
        .rows
        .into_iter()
        .map(|row| {
            serde_json::json!({
                "values": row.iter().map(|v| v.value.to_json()).collect::<Vec<_>>(),
                "statuses": row.iter().map(|v| v.status.name()).collect::<Vec<_>>(),
                "event_timestamps": row.iter().map(|v| v.event_ts.map(format_timestamp)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "features": answer.features,
        "results": results,
        "staleness_bound_ms": answer.staleness_bound_ms,
        "served_by": served_by,
    })
}
