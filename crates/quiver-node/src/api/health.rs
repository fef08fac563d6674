//! `grpc.health.v1` on the gRPC port: for load balancers, Kubernetes probes and `grpcurl`, the
//! node and each of its public services are SERVING while `/health` would answer 200 (the
//! node is ready: `Node::is_ready`), NOT_SERVING otherwise. Like `/health`, it needs no token (`auth::HEALTH_RPCS`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::node::Node;

/// How often readiness is looked at again.
const EVERY: Duration = Duration::from_millis(500);

/// The services a health check may name; "" is the node as a whole.
const SERVICES: [&str; 6] = [
    "",
    "quiver.v1.FeatureService",
    "quiver.v1.RegistryService",
    "quiver.v1.AdminService",
    "quiver.v1.MonitoringService",
    "quiver.v1.OfflineService",
];

/// Keeps `reporter` in step with the node's readiness until `stop` resolves.
pub async fn report(node: Arc<Node>, reporter: HealthReporter, stop: impl Future<Output = ()>) {
    let watch = async {
        let mut last = None;
        loop {
            let status = if node.is_ready() { ServingStatus::Serving } else { ServingStatus::NotServing };
            if last != Some(status) {
                for service in SERVICES {
                    reporter.set_service_status(service, status).await;
                }
                last = Some(status);
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    tokio::select! {
        () = watch => {}
        () = stop => {}
    }
}
