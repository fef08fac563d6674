//! `/health` (200 once every group here has a leader, 503 before), `/metrics`, the dashboard
//! under `/ui`, and JSON reads and writes under `/v1` (`rest`): over TLS when the node has
//! it, behind `http_gate`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

use super::http_gate;
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
        .merge(http_gate::routes())
        .merge(super::rest::routes())
        .layer(axum::middleware::from_fn_with_state(node.clone(), http_gate::gate))
        .with_state(node.clone());
    match node.tls.as_ref().map(|t| t.http.clone()) {
        Some(acceptor) => serve_tls(listener, acceptor, app, shutdown).await,
        None => {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!("http server: {e}");
            }
        }
    }
}

/// HTTP on each TLS connection (`tls::accept`), on a task of its own, until `shutdown`.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let connections = crate::tls::accept(listener, acceptor);
    tokio::pin!(shutdown, connections);
    loop {
        let tls = tokio::select! {
            _ = &mut shutdown => return,
            next = connections.next() => match next {
                Some(Ok(tls)) => tls,
                Some(Err(_)) | None => return,
            },
        };
        let Ok(peer) = tls.get_ref().0.peer_addr() else { continue };
        // The caller's address, as `axum::serve` gives it on plaintext, for the audit log.
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(peer))));
        tokio::spawn(async move {
            let http = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = http.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, "http connection: {e}");
            }
        });
    }
}

async fn health(State(node): State<Arc<Node>>) -> (StatusCode, String) {
    let waiting = node.waiting_for();
    let ready = waiting.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "starting" },
        "node_id": node.id,
        "groups": node.groups.all().len(),
        "waiting_for": waiting,
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, body.to_string())
}

async fn metrics(State(node): State<Arc<Node>>) -> String {
    node.metrics.render(&node.groups)
}
