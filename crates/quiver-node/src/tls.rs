//! TLS (rustls) on the gRPC and HTTP ports and between nodes. With `[tls] cert, key, ca`
//! the node serves only TLS; it talks TLS to its peers as well, presenting the same
//! certificate (mutual TLS), and checks theirs against `ca`, the cluster's CA. Clients may
//! present a certificate signed by that CA, and need not.

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
    /// The HTTP port's (`/health`, `/metrics`, the dashboard): no client certificates.
    pub http: tokio_rustls::TlsAcceptor,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("tls.{setting} = {}: {e}", path.display())))
}

impl Tls {
    /// The TLS the config asks for; `None` when it asks for none.
    pub fn load(config: &TlsConfig) -> Result<Option<Tls>> {
        let (Some(cert), Some(key), Some(ca)) = (&config.cert, &config.key, &config.ca) else { return Ok(None) };
        let (cert_pem, key_pem) = (read("cert", cert)?, read("key", key)?);
        let http = http_acceptor(&cert_pem, &key_pem)?;
        let identity = Identity::from_pem(cert_pem, key_pem);
        let ca = Certificate::from_pem(read("ca", ca)?);
        let server =
            ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone()).client_auth_optional(true);
        let peers = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
        Ok(Some(Tls { server, peers, http }))
    }
}

fn http_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("tls.{what}: {e}"));
    let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad("cert", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("key", &e))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("cert", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}
