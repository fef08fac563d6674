//! What every request goes through: admission (its caller and limits, `auth`), then a
//! tracing span, a count and a latency by method and outcome code, the audit log for
//! changes, refusals and reads of personal data, and the typed error turned into a gRPC
//! status.

use std::future::Future;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use quiver_core::Error as CoreError;
use quiver_core::access::Need;

use crate::auth::Call;
use crate::node::Node;
use quiver_store::error::{Error, Result};

/// What changes the cluster or who may use it: on record whatever the outcome.
const CHANGES: &[&str] = &[
    "Apply",
    "CreateToken",
    "RevokeToken",
    "RemoveNode",
    "StartShardOperation",
    "Join",
    "CreateBackup",
    "Ingest",
    "Materialize",
    "SetAuditRetention",
    "FinalizeUpgrade",
];

/// Admits a request to its handler (`auth::Gate::admit`: its caller as found on its
/// headers, within its size limit); a refusal counts as the method's outcome.
pub fn admit<T: prost::Message>(
    node: &Node,
    method: &'static str,
    request: &Request<T>,
) -> std::result::Result<Call, Status> {
    let started = Instant::now();
    node.gate.admit(method, request).map_err(|e| {
        node.metrics.observe(method, started, e.code());
        Status::from(e)
    })
}

fn outcome<T>(result: &std::result::Result<T, &Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("[{}] {e}", e.code()),
    }
}

/// Puts a change or a refusal of `call` on record. A change that happened stays answered
/// as it was when its entry cannot be written (the node's log says so).
async fn audited<T>(node: &Node, call: &Call, result: Result<T>) -> Result<T> {
    let refused = matches!(&result, Err(Error::Core(CoreError::PermissionDenied(_))));
    if refused || CHANGES.contains(&call.method) {
        let entry = call.entry(node.id, None, outcome(&result.as_ref()));
        if let Err(e) = node.audit.record(entry).await {
            tracing::warn!(method = call.method, "not in the audit log: {e}");
        }
    }
    result
}

/// `call.allow(need)` for handlers that answer with a stream: a refusal, or the start of
/// a change, goes on record first.
pub async fn allowed(node: &Node, call: &Call, need: Need<'_>) -> std::result::Result<(), Status> {
    let result = call.allow(need);
    audited(node, call, result).await.map_err(Status::from)
}

/// Runs the handler of an admitted call inside a tracing span, counting and timing it.
pub async fn observed<T>(
    node: &Node,
    call: &Call,
    handler: impl Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    // Boxed: inside a handler's future, the whole request's future would nest past the
    // compiler's query depth (`cargo check` of this crate alone).
    Box::pin(run(node, call, handler)).await.map(Response::new).map_err(Status::from)
}

/// `observed` for any front end: the handler's answer, or the error a client is told.
pub async fn run<T>(node: &Node, call: &Call, handler: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let method = call.method;
    let result = handler.instrument(tracing::info_span!("rpc", method, caller = %call.caller.name)).await;
    let result = audited(node, call, result).await;
    let code = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    node.metrics.observe(method, started, code);
    result.map_err(|e| for_clients(node, e)).inspect_err(|e| {
        if !matches!(e, Error::Core(c) if c.is_user_error()) {
            tracing::warn!(method, "request failed: {e}");
        }
    })
}

/// A leader hint names the leader as peers reach it: clients get its client address.
fn for_clients(node: &Node, error: Error) -> Error {
    match error {
        Error::Core(quiver_core::Error::NotLeader { group, leader: Some(peer) }) => {
            let state = node.meta.latest();
            let client = state.nodes.values().find(|n| n.addr == peer).map_or(peer, |n| n.client_addr.clone());
            quiver_core::Error::NotLeader { group, leader: Some(client) }.into()
        }
        other => other,
    }
}
