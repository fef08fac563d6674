//! The connection to a cluster: the node it was opened on, the routing state shared by its
//! clones, and the redirect loop of calls that must reach the metadata leader.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_proto::v1::feature_service_client::FeatureServiceClient;
use quiver_proto::v1::monitoring_service_client::MonitoringServiceClient;
use quiver_proto::v1::offline_service_client::OfflineServiceClient;
use quiver_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};
use crate::routing::Router;

/// How many times a call is tried while leaders move (see `Client::redirected`).
const REDIRECT_ATTEMPTS: usize = 20;

pub(crate) use quiver_proto::MAX_MESSAGE_BYTES;

/// How long a streamed answer may be silent before the call fails, unless set otherwise.
const SILENCE: Duration = Duration::from_secs(30);

/// A connection to a Quiver cluster through one of its nodes.
///
/// Online reads and writes are split by shard and sent straight to the nodes that hold them
/// (see the crate docs); other calls go to the node connected to, which forwards what
/// only the metadata leader can do. Cheap to clone: clones share connections and caches,
/// so one client can serve a whole program.
///
/// ```no_run
/// # async fn example() -> quiver_client::Result<()> {
/// let client = quiver_client::Client::connect("http://127.0.0.1:7070").await?;
/// println!("connected to {}", client.endpoint());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    /// How long a streamed answer may go without a message.
    pub(crate) silence: Duration,
    pub(crate) router: Arc<Router>,
    pub(crate) features: FeatureServiceClient<Channel>,
    pub(crate) registry: RegistryServiceClient<Channel>,
    pub(crate) admin: AdminServiceClient<Channel>,
    pub(crate) offline: OfflineServiceClient<Channel>,
    pub(crate) monitoring: MonitoringServiceClient<Channel>,
}

/// How a [`Client`] connects: the node, TLS, and how long a call may take.
///
/// ```no_run
/// # async fn example() -> quiver_client::Result<()> {
/// let ca = std::fs::read("certs/ca.pem").expect("the cluster's CA");
/// let client = quiver_client::Client::builder("https://10.0.0.1:7070").ca_pem(ca).connect().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: String,
    ca: Option<Vec<u8>>,
    timeout: Duration,
}

impl ClientBuilder {
    /// Trusts this CA (PEM) for the nodes' certificates: every connection uses TLS.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.ca = Some(pem.into());
        self
    }

    /// How long one call may wait for its answer before failing; 30 s by default, so that a
    /// node that stopped answering (paused, partitioned) fails calls instead of hanging them.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// Connects; fails with [`Error::Transport`] when the node cannot be reached within 5
    /// seconds, or its certificate is not trusted.
    pub async fn connect(self) -> Result<Client> {
        let mut endpoint = self.endpoint;
        if !endpoint.contains("://") {
            let scheme = if self.ca.is_some() { "https" } else { "http" };
            endpoint = format!("{scheme}://{endpoint}");
        }
        let transport =
            |e: &dyn std::error::Error| Error::Transport { endpoint: endpoint.clone(), message: with_causes(e) };
        if endpoint.starts_with("https://") && self.ca.is_none() {
            let why = "an https:// node needs the cluster's CA to check its certificate (ClientBuilder::ca_pem; \
                       quiverctl --ca or QUIVER_CA)";
            return Err(Error::Transport { endpoint, message: why.into() });
        }
        let tls = self.ca.map(|ca| ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)));
        let mut builder = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| transport(&e))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.timeout);
        if let Some(tls) = &tls {
            builder = builder.tls_config(tls.clone()).map_err(|e| transport(&e))?;
        }
        let channel = builder.connect().await.map_err(|e| transport(&e))?;
        Ok(Client {
            router: Arc::new(Router::new(&endpoint, channel.clone(), tls)),
            features: FeatureServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            registry: RegistryServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            monitoring: MonitoringServiceClient::new(channel.clone()),
            offline: OfflineServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            endpoint,
            silence: SILENCE,
        })
    }
}

/// An error and its causes, `outer: inner: …`: a transport error alone says only that.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text += &format!(": {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl Client {
    /// Starts building a client of the node at `endpoint`, e.g. `https://10.0.0.1:7070`.
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder { endpoint: endpoint.into(), ca: None, timeout: Duration::from_secs(30) }
    }

    /// Connects to a node, e.g. `http://127.0.0.1:7070` (the scheme may be left out), over
    /// plaintext; [`Client::builder`] sets TLS and timeouts.
    /// Fails with [`Error::Transport`] when the node cannot be reached within 5 seconds.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client> {
        Client::builder(endpoint).connect().await
    }

    /// How long a long job's answer (ingest, training set, materialization) may go without
    /// a message from the node before the call fails; 30 s by default. Nodes report
    /// progress about every second, so a job never fails for taking long, only for
    /// falling silent (a paused or partitioned node).
    pub fn with_silence_timeout(mut self, silence: Duration) -> Client {
        self.silence = silence;
        self
    }

    /// The node connected to, as a URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `call`, following `NotLeader` answers to the node they name: the cluster
    /// redirects rather than proxies. While a leader is being elected (no hint, or a hint
    /// naming a node that is down) it backs off and asks this node again. Bounded: after
    /// `REDIRECT_ATTEMPTS` tries the last answer is returned. Only answers that guarantee
    /// the call was not applied are retried, so a write is never applied twice.
    pub(crate) async fn redirected<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut target = self.clone();
        let mut backoff = Duration::from_millis(50);
        for _ in 1..REDIRECT_ATTEMPTS {
            let leader = match call(target.clone()).await {
                Err(Error::Server(quiver_core::Error::NotLeader { leader, .. })) => leader,
                other => return other,
            };
            match leader {
                Some(addr) if addr != target.endpoint.trim_start_matches("http://") => {
                    if let Ok(next) = Client::connect(addr).await {
                        target = next;
                        continue;
                    }
                }
                _ => {}
            }
            // No reachable leader yet: wait for the election, then ask this node again.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            target = self.clone();
        }
        call(target).await
    }
}
