//! The RPCs between nodes (Raft, joins, meta catch-up, parts of a training set) take no
//! token: they are served only to a caller that proves it is a member, from the request's
//! headers, before its body is read. With TLS on, a member presents a member certificate:
//! signed by the cluster's CA (the TLS layer checked that) and naming
//! `quiver_core::access::MEMBER_CERT_NAME`, which `quiverctl cert create-node` writes and
//! `cert create-client` never does, so a client's certificate is never a member's however
//! it was signed. Without TLS, a member sends the cluster secret (`secret`).
//!
//! Beside the proof, a member's RPC names its cluster's id once it knows it
//! (`x-quiver-cluster`), and a member of another cluster is refused: two clusters restored
//! from different backups, or sharing a CA or a secret by mistake, never mix their members.
//! It names its node id too (`x-quiver-node`), so a node the cluster has forgotten (`node
//! remove`) is told so (`REMOVED`) and stops, rather than serving a stale view.

use std::sync::{Arc, OnceLock};

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

/// The header a member's RPC names its cluster's id in.
pub const CLUSTER_HEADER: &str = "x-quiver-cluster";
/// The header a member's RPC names its node id in.
pub const NODE_HEADER: &str = "x-quiver-node";
/// What the refusal of a forgotten node's RPC says, for that node to recognise.
pub const REMOVED: &str = "was removed from this cluster";

/// Who this node is in its cluster, once known: the cluster's id (from `identity.toml`, or
/// learned from the meta state when the cluster has made it) and the node's id. Each is
/// set once; shared by admission and by the credentials of the node's own RPCs.
#[derive(Clone, Default, Debug)]
pub struct ClusterMark {
    cluster: Arc<OnceLock<String>>,
    node: Arc<OnceLock<u64>>,
}

impl ClusterMark {
    pub fn get(&self) -> Option<&str> {
        self.cluster.get().map(String::as_str)
    }

    /// Sets the id unless one is set; answers the one that stands.
    pub fn set(&self, id: &str) -> &str {
        self.cluster.get_or_init(|| id.to_string())
    }

    pub fn set_node(&self, id: u64) {
        self.node.get_or_init(|| id);
    }

    /// Refuses a member's RPC that names another cluster. One that names none comes from a
    /// node that has not learned its cluster's id yet (a joiner, a member of a cluster that
    /// has just formed) and was admitted by its proof alone.
    pub fn admit(&self, method: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let (Some(ours), Some(theirs)) = (self.get(), headers.get(CLUSTER_HEADER)) else { return Ok(()) };
        if theirs.as_bytes() == ours.as_bytes() {
            return Ok(());
        }
        let theirs = String::from_utf8_lossy(theirs.as_bytes());
        Err(Status::permission_denied(format!(
            "{method}: the caller is a member of cluster {theirs}, this node of cluster {ours};              members of two clusters never serve each other"
        )))
    }
}

/// Does the certificate name the member mark among its names?
fn is_member_certificate(cert: &CertificateDer<'_>) -> bool {
    let Ok(name) = ServerName::try_from(quiver_core::access::MEMBER_CERT_NAME) else { return false };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

/// What a node's own RPCs to its peers carry: the secret's header, when it has one, and
/// its cluster's id, once known.
#[derive(Clone, Default)]
pub struct Credentials {
    secret: Option<Arc<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>,
    cluster: ClusterMark,
}

impl Credentials {
    pub fn new(secret: Option<&ClusterSecret>, cluster: ClusterMark) -> Credentials {
        Credentials { secret: secret.map(|s| Arc::new(s.header())), cluster }
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.secret {
            request.metadata_mut().insert(secret::HEADER, (**value).clone());
        }
        // An id is hex, as this node made or learned it; one that is not stays unsent.
        if let Some(id) = self.cluster.get().and_then(|id| id.parse().ok()) {
            request.metadata_mut().insert(CLUSTER_HEADER, id);
        }
        if let Some(node) = self.cluster.node.get() {
            request.metadata_mut().insert(NODE_HEADER, (*node).into());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_of_another_cluster_is_refused_and_one_that_names_none_is_not() {
        let mark = ClusterMark::default();
        let named = |id: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(CLUSTER_HEADER, id.parse().unwrap());
            headers
        };
        // Before this node knows its cluster, nothing to compare.
        assert!(mark.admit("AppendEntries", &named("c2")).is_ok());
        assert_eq!(mark.set("c1"), "c1");
        assert_eq!(mark.set("c9"), "c1", "the first id stands");
        assert!(mark.admit("AppendEntries", &named("c1")).is_ok());
        assert!(mark.admit("AppendEntries", &http::HeaderMap::new()).is_ok());
        let refused = mark.admit("AppendEntries", &named("c2")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("cluster c2") && refused.message().contains("cluster c1"));

        // A node's own RPCs name its cluster once it knows it.
        let unnamed = ClusterMark::default();
        let mut credentials = Credentials::new(None, unnamed.clone());
        let sent = tonic::service::Interceptor::call(&mut credentials, tonic::Request::new(())).unwrap();
        assert!(sent.metadata().get(CLUSTER_HEADER).is_none());
        unnamed.set("c3");
        unnamed.set_node(7);
        let sent = tonic::service::Interceptor::call(&mut credentials, tonic::Request::new(())).unwrap();
        assert_eq!(sent.metadata().get(CLUSTER_HEADER).unwrap(), "c3");
        assert_eq!(sent.metadata().get(NODE_HEADER).unwrap(), "7");
    }

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
