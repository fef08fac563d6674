//! TLS (rustls) on the gRPC and HTTP ports and between nodes. With `[tls] cert, key, ca`
//! the node serves only TLS; it talks TLS to its peers as well, presenting the same
//! certificate (mutual TLS), and checks theirs against `ca`, the cluster's CA. Clients may
//! present a certificate signed by that CA, and need not. The certificate and key files are
//! read again when they change (looked at once a second at most), so a renewed certificate is
//! served, and presented to peers on new connections, without a restart; the CA is read at
//! start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use quiver_store::config::TlsConfig;
use quiver_store::error::{Error, Result};

/// How often the certificate files are looked at for a renewal, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The node's TLS settings.
#[derive(Clone)]
pub struct Tls {
    /// The gRPC port's: client certificates optional, checked against the CA.
    pub grpc: tokio_rustls::TlsAcceptor,
    /// The HTTP port's (`/health`, `/metrics`, the dashboard): no client certificates.
    pub http: tokio_rustls::TlsAcceptor,
    files: Arc<CertFiles>,
    ca_pem: Arc<Vec<u8>>,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("tls.{setting} = {}: {e}", path.display())))
}

fn bad(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Config(format!("tls.{what}: {e}"))
}

impl Tls {
    /// The TLS the config asks for; `None` when it asks for none.
    pub fn load(config: &TlsConfig) -> Result<Option<Tls>> {
        let (Some(cert), Some(key), Some(ca)) = (&config.cert, &config.key, &config.ca) else { return Ok(None) };
        let files = Arc::new(CertFiles::load(cert, key)?);
        let ca_pem = read("ca", ca)?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(ca.map_err(|e| bad("ca", &e))?).map_err(|e| bad("ca", &e))?;
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad("ca", &e))?;
        let mut grpc = ServerConfig::builder().with_client_cert_verifier(verifier).with_cert_resolver(files.clone());
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        let mut http = ServerConfig::builder().with_no_client_auth().with_cert_resolver(files.clone());
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Tls {
            grpc: tokio_rustls::TlsAcceptor::from(Arc::new(grpc)),
            http: tokio_rustls::TlsAcceptor::from(Arc::new(http)),
            files,
            ca_pem: Arc::new(ca_pem),
        }))
    }

    /// The generation of the certificate as it is now, which a renewal moves on.
    pub fn generation(&self) -> u64 {
        self.files.current().generation
    }

    /// The client side of mutual TLS to peers, with the certificate as it is now.
    pub fn peers(&self) -> ClientTlsConfig {
        let loaded = self.files.current();
        let identity = Identity::from_pem(&loaded.cert_pem, &loaded.key_pem);
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&*self.ca_pem)).identity(identity)
    }

    /// When the certificate this node serves stops being valid, if its chain to the CA can
    /// be read: webpki, asked to check it at the end of time, says when it expired.
    pub fn expires(&self) -> Option<SystemTime> {
        let loaded = self.files.current();
        let cert = CertificateDer::pem_slice_iter(&loaded.cert_pem).next()?.ok()?;
        let ca = CertificateDer::pem_slice_iter(&self.ca_pem).next()?.ok()?;
        let anchors = [webpki::anchor_from_trusted_cert(&ca).ok()?];
        let end = webpki::EndEntityCert::try_from(&cert).ok()?;
        let never = UnixTime::since_unix_epoch(Duration::from_secs(i64::MAX as u64 / 4));
        let checked = end.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            never,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        match checked {
            Err(webpki::Error::CertExpired { not_after, .. }) => {
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.as_secs()))
            }
            _ => None,
        }
    }
}

/// TLS connections to `listener` with the certificate as it is then, each handshake on a task
/// of its own so that a slow or plaintext client holds up no other; with the address each came
/// from. Accepting stops when the stream is dropped.
pub fn accept(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    // A client that speaks plaintext, does not trust the CA, or never finishes.
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|conn| (conn, rx)) })
}

/// The certificate and key files, as last read.
#[derive(Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Watched>,
}

/// What was last read, and what the files looked like at the last look.
#[derive(Debug)]
struct Watched {
    loaded: Arc<Loaded>,
    seen: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    generation: u64,
}

/// When the files at `cert` and `key` last changed.
fn modified(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (at(cert), at(key))
}

impl CertFiles {
    fn load(cert: &Path, key: &Path) -> Result<CertFiles> {
        let seen = modified(cert, key);
        let loaded = Arc::new(CertFiles::read(cert, key, 0)?);
        let state = Mutex::new(Watched { loaded, seen, checked: Instant::now() });
        Ok(CertFiles { cert: cert.to_path_buf(), key: key.to_path_buf(), state })
    }

    fn read(cert: &Path, key: &Path, generation: u64) -> Result<Loaded> {
        let (cert_pem, key_pem) = (read("cert", cert)?, read("key", key)?);
        let certs =
            CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad("cert", &e))?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad("key", &e))?;
        let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(certs, private, &provider).map_err(|e| bad("cert", &e))?;
        Ok(Loaded { certified: Arc::new(certified), cert_pem, key_pem, generation })
    }

    /// The files as they are now: read again when they changed since the last look (a look
    /// at most every `RELOAD_CHECK`). A renewal that cannot be read leaves the last one in
    /// use, and says why in the log once.
    fn current(&self) -> Arc<Loaded> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() < RELOAD_CHECK {
            return state.loaded.clone();
        }
        state.checked = Instant::now();
        let now = modified(&self.cert, &self.key);
        if now != state.seen {
            state.seen = now;
            match CertFiles::read(&self.cert, &self.key, state.loaded.generation + 1) {
                Ok(renewed) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate renewed: serving the new one");
                    state.loaded = Arc::new(renewed);
                }
                Err(e) => tracing::warn!("TLS certificate changed but cannot be used, keeping the last one: {e}"),
            }
        }
        state.loaded.clone()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified.clone())
    }
}
