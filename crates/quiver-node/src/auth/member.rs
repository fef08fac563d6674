//! The RPCs between nodes (Raft, joins, meta catch-up) take no token: with TLS on they need
//! a client certificate signed by the cluster's CA, which only members hold (the TLS layer
//! has checked the signature), so nothing else may call them whatever token it carries.
//! Without TLS they are as open as the port: loopback, or `--insecure`.

use tonic::{Request, Status};

/// Refuses `request` unless it came with a member's certificate, when `required`.
pub fn check<T>(required: bool, method: &str, request: &Request<T>) -> Result<(), Status> {
    let presented = request.peer_certs().is_some_and(|certs| !certs.is_empty());
    if !required || presented {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "{method} is for the cluster's members: it needs a certificate signed by the cluster's CA, whatever token \
         the caller has"
    )))
}
