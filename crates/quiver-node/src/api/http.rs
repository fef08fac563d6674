//! `/health` (200 once every group here has a leader, 503 before), `/metrics`, and the
//! dashboard under `/ui`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::node::Node;

pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::ui::routes())
        .with_state(node);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("http server: {e}");
    }
}

async fn health(State(node): State<Arc<Node>>) -> (StatusCode, String) {
    let ready = node.is_ready();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "starting" },
        "node_id": node.id,
        "groups": node.groups.all().len(),
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, body.to_string())
}

async fn metrics(State(node): State<Arc<Node>>) -> String {
    node.metrics.render(&node.groups)
}
