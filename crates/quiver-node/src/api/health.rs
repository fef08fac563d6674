//! `grpc.health.v1` on the gRPC port: for load balancers, Kubernetes probes and `grpcurl`, the
//! node and each of its public services are SERVING while `/health` answers 200 (the node is
//! ready: `Node::is_ready`), NOT_SERVING otherwise, looked at when asked. Like `/health`, it
//! needs no token (`auth::HEALTH_RPCS`).

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::node::Node;
use crate::streaming::{Streamed, channel_stream};

/// How often a watch looks at readiness again.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// The services a health check may name; "" is the node as a whole.
const SERVICES: [&str; 6] = [
    "",
    "quiver.v1.FeatureService",
    "quiver.v1.RegistryService",
    "quiver.v1.AdminService",
    "quiver.v1.MonitoringService",
    "quiver.v1.OfflineService",
];

pub struct NodeHealth {
    pub node: Arc<Node>,
}

/// The node's status now, or NOT_FOUND for a service it does not have.
fn status(node: &Node, service: &str) -> Result<HealthCheckResponse, Status> {
    if !SERVICES.contains(&service) {
        return Err(Status::not_found(format!("no service {service:?} here; it has {}", SERVICES[1..].join(", "))));
    }
    let status = if node.is_ready() { ServingStatus::Serving } else { ServingStatus::NotServing };
    Ok(HealthCheckResponse { status: status.into() })
}

#[tonic::async_trait]
impl Health for NodeHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        status(&self.node, &request.into_inner().service).map(Response::new)
    }

    type WatchStream = Streamed<HealthCheckResponse>;

    /// The status now, then each change, until the caller goes away.
    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let first = status(&self.node, &service)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut last = first.status;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Ok(now) = status(&node, &service) else { return };
                if now.status != last {
                    last = now.status;
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(channel_stream(rx)))
    }
}
