//! TLS (rustls) on the gRPC port and between nodes. With `[tls] cert, key, ca` the node
//! serves only TLS; it talks TLS to its peers as well, presenting the same certificate
//! (mutual TLS), and checks theirs against `ca`, the cluster's CA. Clients may present a
//! certificate signed by that CA, and need not.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The node's TLS settings, read from their files at start.
#[derive(Clone)]
pub struct Tls {
    pub server: ServerTlsConfig,
    /// For connections to peers.
    pub peers: ClientTlsConfig,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("tls.{setting} = {}: {e}", path.display())))
}

impl Tls {
    /// The TLS the config asks for; `None` when it asks for none.
    pub fn load(config: &TlsConfig) -> Result<Option<Tls>> {
        let (Some(cert), Some(key), Some(ca)) = (&config.cert, &config.key, &config.ca) else { return Ok(None) };
        let identity = Identity::from_pem(read("cert", cert)?, read("key", key)?);
        let ca = Certificate::from_pem(read("ca", ca)?);
        let server =
            ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone()).client_auth_optional(true);
        let peers = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
        Ok(Some(Tls { server, peers }))
    }
}
