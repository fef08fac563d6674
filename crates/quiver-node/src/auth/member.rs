//! The RPCs between nodes (Raft, joins, meta catch-up, parts of a training set) take no
//! token: they are served only to a caller that proves it is a member, from the request's
//! headers, before its body is read. With TLS on, a member presents a member certificate:
//! signed by the cluster's CA (the TLS layer checked that) and naming
//! `quiver_core::access::MEMBER_CERT_NAME`, which `quiverctl cert create-node` writes and
//! `cert create-client` never does, so a client's certificate is never a member's however
//! it was signed. Without TLS, a member sends the cluster secret (`secret`).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::secret::{self, ClusterSecret};

/// The gRPC paths only members may call: whole services, or single methods.
const MEMBER_SERVICES: &[&str] = &["/quiver.v1.RaftService/"];
const MEMBER_METHODS: &[&str] =
    &["/quiver.v1.AdminService/Join", "/quiver.v1.AdminService/MetaReadIndex", "/quiver.v1.OfflineService/JoinPart"];

/// Is `path` (`/package.Service/Method`) an RPC between nodes?
pub fn is_member_route(path: &str) -> bool {
    MEMBER_METHODS.contains(&path) || MEMBER_SERVICES.iter().any(|s| path.starts_with(s))
}

/// How this node's members prove themselves.
#[derive(Clone, Debug)]
pub enum Proof {
    /// A member certificate over mutual TLS.
    Certificate,
    /// The cluster secret in a header.
    Secret(ClusterSecret),
}

impl Proof {
    /// Refuses a request to a member route unless it carries this proof.
    pub fn check<B>(&self, method: &str, request: &http::Request<B>) -> Result<(), Status> {
        match self {
            Proof::Certificate => {
                let certs = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|t| t.peer_certs());
                if certs.as_deref().and_then(|c| c.first()).is_some_and(is_member_certificate) {
                    return Ok(());
                }
                Err(Status::permission_denied(format!(
                    "{method} is for the cluster's members: it needs a member certificate (quiverctl cert create-node); \
                     a client's certificate or token is not one"
                )))
            }
            Proof::Secret(secret) => match request.headers().get(secret::HEADER) {
                Some(value) if secret.matches(value.as_bytes()) => Ok(()),
                Some(_) => Err(Status::permission_denied(format!("{method}: not this cluster's member secret"))),
                None => Err(Status::unauthenticated(format!(
                    "{method} is for the cluster's members: it needs the cluster secret, whatever token the caller has"
                ))),
            },
        }
    }
}

/// Does the certificate name the member mark among its names?
fn is_member_certificate(cert: &CertificateDer<'_>) -> bool {
    let Ok(name) = ServerName::try_from(quiver_core::access::MEMBER_CERT_NAME) else { return false };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The proof a node's own RPCs to its peers carry: the secret's header, when it has one.
#[derive(Clone, Default)]
pub struct Credentials(Option<Arc<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>);

impl Credentials {
    pub fn new(secret: Option<&ClusterSecret>) -> Credentials {
        Credentials(secret.map(|s| Arc::new(s.header())))
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(secret::HEADER, (**value).clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_routes_are_the_node_to_node_rpcs_only() {
        for path in [
            "/quiver.v1.RaftService/AppendEntries",
            "/quiver.v1.RaftService/Propose",
            "/quiver.v1.AdminService/Join",
            "/quiver.v1.OfflineService/JoinPart",
        ] {
            assert!(is_member_route(path), "{path}");
        }
        for path in ["/quiver.v1.AdminService/JoinX", "/quiver.v1.AdminService/Status", "/quiver.v1.RaftServiceX/A"] {
            assert!(!is_member_route(path), "{path}");
        }
    }
}
