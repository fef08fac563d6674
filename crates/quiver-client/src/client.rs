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
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use crate::conn::{Conn, Credentials};

use crate::error::{Error, Result};
use crate::routing::Router;
use crate::tls;

/// How many times a call is tried while leaders move (see `Client::redirected`).
const REDIRECT_ATTEMPTS: usize = 20;

pub(crate) use quiver_proto::MAX_MESSAGE_BYTES;

/// HTTP/2 receive window per stream: what a node may send ahead of what this side has read.
const STREAM_WINDOW: u32 = 8 << 20;

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
    /// How it was built: redirects connect to other nodes the same way.
    settings: ClientBuilder,
    /// How long a streamed answer may go without a message.
    pub(crate) silence: Duration,
    pub(crate) router: Arc<Router>,
    pub(crate) features: FeatureServiceClient<Conn>,
    pub(crate) registry: RegistryServiceClient<Conn>,
    pub(crate) admin: AdminServiceClient<Conn>,
    pub(crate) offline: OfflineServiceClient<Conn>,
    pub(crate) monitoring: MonitoringServiceClient<Conn>,
}

/// How a [`Client`] connects: the node, TLS, its token, and how long a call may take.
///
/// ```no_run
/// # async fn example() -> quiver_client::Result<()> {
/// let ca = std::fs::read("certs/ca.pem").expect("the cluster's CA");
/// let token = std::env::var("QUIVER_TOKEN").expect("a token");
/// let client = quiver_client::Client::builder("https://10.0.0.1:7070").ca(ca).token(token).connect().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    endpoint: String,
    ca: Option<Vec<u8>>,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: builders end up in logs.
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.ca.is_some())
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("settings", &self.settings).finish()
    }
}

impl ClientBuilder {
    /// Sends this token (`quiverctl token create`) with every call.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into().trim().to_string());
        self
    }

    /// Trusts this CA (PEM) for the nodes' certificates: every connection uses TLS.
    pub fn ca(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
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
        let settings = self.clone();
        let mut endpoint = self.endpoint;
        if !endpoint.contains("://") {
            let scheme = if self.ca.is_some() { "https" } else { "http" };
            endpoint = format!("{scheme}://{endpoint}");
        }
        let transport =
            |e: &dyn std::error::Error| Error::Transport { endpoint: endpoint.clone(), message: with_causes(e) };
        if endpoint.starts_with("https://") && self.ca.is_none() {
            let why = "an https:// node needs the cluster's CA to check its certificate (ClientBuilder::ca; \
                       quiverctl --ca or QUIVER_CA)";
            return Err(Error::Transport { endpoint, message: why.into() });
        }
        let tls = tls::trusting(self.ca).map_err(|message| Error::Transport { endpoint: endpoint.clone(), message })?;
        let mut builder = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| transport(&e))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.timeout)
            // A training set streams hundreds of MiB: HTTP/2's default 64 KiB window would
            // stop the node every 64 KiB until this side acknowledges it.
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(2 * STREAM_WINDOW);
        if let Some(tls) = &tls {
            builder = tls::secured(builder, tls).map_err(|e| transport(&e))?;
        }
        let credentials = match &self.token {
            Some(token) => {
                let value = format!("Bearer {token}").parse().map_err(|_| Error::Transport {
                    endpoint: endpoint.clone(),
                    message: "the token has characters a header cannot carry".into(),
                })?;
                Credentials(Some(value))
            }
            None => Credentials(None),
        };
        let channel = InterceptedService::new(builder.connect().await.map_err(|e| transport(&e))?, credentials.clone());
        Ok(Client {
            settings,
            router: Arc::new(Router::new(&endpoint, channel.clone(), tls, credentials)),
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
        ClientBuilder { endpoint: endpoint.into(), ca: None, token: None, timeout: Duration::from_secs(30) }
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
                Some(addr) if !target.endpoint.ends_with(&format!("://{addr}")) => {
                    let settings = ClientBuilder { endpoint: addr, ..self.settings.clone() };
                    if let Ok(next) = settings.connect().await {
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
