//! What every request goes through: admission (its caller and limits, `auth`), then a
//! tracing span, a count and a latency by method and outcome code, and the typed error
//! turned into a gRPC status.

use std::future::Future;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth::Call;
use crate::error::{Error, Result};
use crate::node::Node;

/// Admits a request (`auth::Gate::admit`); a refusal counts as the method's outcome.
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

/// Runs the handler of an admitted call inside a tracing span, counting and timing it.
pub async fn observed<T>(
    node: &Node,
    call: &Call,
    handler: impl Future<Output = Result<T>>,
) -> std::result::Result<Response<T>, Status> {
    let started = Instant::now();
    let method = call.method;
    let result = handler.instrument(tracing::info_span!("rpc", method, caller = %call.caller.name)).await;
    let code = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    node.metrics.observe(method, started, code);
    result.map(Response::new).map_err(|e| for_clients(node, e)).map_err(|e| {
        if !matches!(&e, Error::Core(c) if c.is_user_error()) {
            tracing::warn!(method, "request failed: {e}");
        }
        Status::from(e)
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
