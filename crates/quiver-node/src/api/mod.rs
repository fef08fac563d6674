//! The node's network faces: gRPC (features, registry, admin, Raft, with `grpc.health.v1` and
//! server reflection) on `listen`, and HTTP (`/health`, `/metrics`, the dashboard) on `http`;
//! both behind `auth` and TLS when on. The HTTP port also takes JSON reads and writes for
//! clients without gRPC (`rest`).
//! Every gRPC request is admitted on its headers first (`admission`); each service decodes
//! at most what its requests may need.

mod access;
pub(crate) mod admin;
mod admission;
mod features;
mod health;
mod http;
mod http_gate;
mod json_answer;
pub(crate) mod monitoring;
mod observed;
mod offline;
mod peers;
mod registry;
mod rest;

use std::future::Future;
use std::sync::Arc;

use quiver_proto::MAX_MESSAGE_BYTES;
use quiver_proto::v1::admin_service_server::AdminServiceServer;
use quiver_proto::v1::feature_service_server::FeatureServiceServer;
use quiver_proto::v1::monitoring_service_server::MonitoringServiceServer;
use quiver_proto::v1::offline_service_server::OfflineServiceServer;
use quiver_proto::v1::raft_service_server::RaftServiceServer;
use quiver_proto::v1::registry_service_server::RegistryServiceServer;
use tonic_health::pb::health_server::HealthServer;

use crate::api::peers::RaftRpc;
use crate::node::Node;
use admission::AdmissionLayer;
use quiver_store::error::{Error, Result};

/// What one request to the registry may carry: definitions, never data.
const REGISTRY_MESSAGE_BYTES: usize = 4 << 20;
/// What one request to the admin or monitoring services may carry.
const SMALL_MESSAGE_BYTES: usize = 1 << 20;
/// What a health check or a reflection request may carry: a service or symbol name.
const PROBE_MESSAGE_BYTES: usize = 4 << 10;

/// Serves gRPC and HTTP until `shutdown` resolves.
pub async fn serve(node: Arc<Node>, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_listener = tokio::net::TcpListener::bind(node.config.http)
        .await
        .map_err(|e| Error::io(format!("binding http address {}", node.config.http), e))?;
    let grpc_listener = tokio::net::TcpListener::bind(node.config.listen)
        .await
        .map_err(|e| Error::io(format!("binding listen address {}", node.config.listen), e))?;
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = tokio::spawn(http::serve(node.clone(), http_listener, stopped(stop_rx.clone())));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(quiver_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("server reflection: {e}")))?;
    let server = tonic::transport::Server::builder();
    let admission = AdmissionLayer { gate: node.gate.clone(), metrics: node.metrics.clone() };
    let grpc = server
        .tcp_nodelay(true)
        .layer(admission)
        .add_service(
            FeatureServiceServer::new(features::FeatureApi { node: node.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RegistryServiceServer::new(registry::RegistryApi { node: node.clone() })
                .max_decoding_message_size(REGISTRY_MESSAGE_BYTES),
        )
        .add_service(
            AdminServiceServer::new(admin::AdminApi { node: node.clone() })
                .max_decoding_message_size(SMALL_MESSAGE_BYTES),
        )
        .add_service(
            MonitoringServiceServer::new(monitoring::MonitoringApi { node: node.clone() })
                .max_decoding_message_size(SMALL_MESSAGE_BYTES),
        )
        .add_service(
            OfflineServiceServer::new(offline::OfflineApi { node: node.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServiceServer::new(RaftRpc { groups: node.groups.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            HealthServer::new(health::NodeHealth { node: node.clone() }).max_decoding_message_size(PROBE_MESSAGE_BYTES),
        )
        .add_service(reflection.max_decoding_message_size(PROBE_MESSAGE_BYTES));
    let stop = stopped(stop_rx.clone());
    let tls = node.tls.as_ref().map(|t| t.grpc.clone());
    let grpc = tokio::spawn(async move {
        match tls {
            Some(acceptor) => {
                grpc.serve_with_incoming_shutdown(crate::tls::accept(grpc_listener, acceptor), stop).await
            }
            None => grpc.serve_with_incoming_shutdown(connections(grpc_listener), stop).await,
        }
    });
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = http.await;
    let _ = grpc.await;
    Ok(())
}

fn connections(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((conn, listener))
    })
}
