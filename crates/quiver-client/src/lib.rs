//! Rust client for Quiver.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use quiver_client::{Client, Consistency, FeatureSelection, OnlineRequest, Value};
//!
//! # async fn example() -> Result<(), quiver_client::Error> {
//! let client = Client::connect("http://127.0.0.1:7070").await?;
//!
//! // Write one row of the `driver_stats` feature set.
//! let row = BTreeMap::from([
//!     ("driver_id".to_string(), Value::Int64(1001)),
//!     ("event_timestamp".to_string(), Value::Timestamp(1_764_000_000_000_000)),
//!     ("conv_rate".to_string(), Value::Float64(0.87)),
//! ]);
//! client.write("rides", "driver_stats", vec![row]).await?;
//!
//! // Read the latest vector for two drivers.
//! let answer = client
//!     .get_online(OnlineRequest {
//!         project: "rides".into(),
//!         features: FeatureSelection::Vector("driver_model_v1".into()),
//!         entities: vec![
//!             BTreeMap::from([("driver_id".to_string(), Value::Int64(1001))]),
//!             BTreeMap::from([("driver_id".to_string(), Value::Int64(1002))]),
//!         ],
//!         consistency: Consistency::Linearizable,
//!     })
//!     .await?;
//! for (name, value) in answer.features.iter().zip(&answer.rows[0]) {
//!     println!("{name} = {} ({:?})", value.value, value.status);
//! }
//! # Ok(())
//! # }
//! ```

pub mod error;
mod routing;

use std::collections::BTreeMap;
use std::sync::Arc;

use quiver_proto::v1;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_proto::v1::feature_service_client::FeatureServiceClient;
use quiver_proto::v1::offline_service_client::OfflineServiceClient;
use quiver_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::routing::Router;

pub use arrow_array::RecordBatch;
pub use error::{Error, Result};
pub use quiver_core::registry::{Change, Project};
pub use quiver_core::row::{Freshness, InputRow};
pub use quiver_core::spec::Definitions;
pub use quiver_core::{Value, ValueType};
pub use quiver_proto::v1::{
    ApplyResponse, DataFileInfo, Dataset, FeatureDrift, FeatureStatistics, GetDriftResponse as DriftReport,
    GetShardMapResponse as ShardMap, GetStatisticsResponse as Statistics, GroupStatus, IngestProgress,
    MaterializeProgress, StatusResponse,
};

/// How many times a call is tried while leaders move (see `Client::redirected`).
const REDIRECT_ATTEMPTS: usize = 20;

/// Largest message the client sends or accepts.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A connection to a Quiver cluster through one of its nodes. Online reads and writes are
/// routed to the shards' leaders (see `routing`); other calls go to that node and follow
/// its redirects. Cheap to clone; clones share connections and caches.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    router: Arc<Router>,
    features: FeatureServiceClient<Channel>,
    registry: RegistryServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    offline: OfflineServiceClient<Channel>,
}

/// Which features a read asks for.
#[derive(Debug, Clone)]
pub enum FeatureSelection {
    /// A feature vector declared in the registry.
    Vector(String),
    /// `set:feature`, `set@2:feature` or `set:*` references, possibly from several sets.
    Refs(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read (a read-index round).
    #[default]
    Linearizable,
    /// Whatever the replica has applied; cheaper, may lag.
    Stale,
}

#[derive(Debug, Clone)]
pub struct OnlineRequest {
    pub project: String,
    pub features: FeatureSelection,
    /// One map of join-key values per entity.
    pub entities: Vec<BTreeMap<String, Value>>,
    pub consistency: Consistency,
}

/// One value of an online answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureValue {
    /// `Value::Null` unless the status is `Present`.
    pub value: Value,
    /// Event time of the stored row, microseconds; `None` when not found.
    pub event_ts: Option<i64>,
    pub status: Freshness,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnlineFeatures {
    /// Column names, `set:feature`.
    pub features: Vec<String>,
    /// One row per requested entity, in request order; values in `features` order.
    pub rows: Vec<Vec<FeatureValue>>,
    /// Stale reads: an upper bound on the answer's age in milliseconds (the largest of the
    /// replicas that answered); 0 for linearizable reads.
    pub staleness_bound_ms: u64,
}

/// A point-in-time training-set request.
#[derive(Debug, Clone)]
pub struct HistoricalRequest {
    pub project: String,
    pub features: FeatureSelection,
    /// The spine file's bytes: join keys, a time column, and any other columns (labels).
    pub spine: Vec<u8>,
    pub spine_format: SpineFormat,
    /// The spine's time column; `event_timestamp` when `None`.
    pub timestamp_column: Option<String>,
    /// Name columns `feature` instead of `set:feature` where unambiguous.
    pub short_names: bool,
    /// Also store the answer as a training dataset of this name, with its lineage.
    pub save_as: Option<String>,
    /// Where the spine came from, recorded in a saved dataset's lineage.
    pub spine_name: String,
}

impl HistoricalRequest {
    /// A request with the defaults: time column `event_timestamp`, `set:feature` names, not saved.
    pub fn new(project: &str, features: FeatureSelection, spine: Vec<u8>, spine_format: SpineFormat) -> Self {
        HistoricalRequest {
            project: project.into(),
            features,
            spine,
            spine_format,
            timestamp_column: None,
            short_names: false,
            save_as: None,
            spine_name: String::new(),
        }
    }
}

/// What statistics describe. Times are microseconds, `[from, to)` in whole UTC days;
/// `None` leaves a side open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsWindow {
    /// Offline rows by event time.
    Offline { from: Option<i64>, to: Option<i64> },
    /// A saved training dataset.
    Dataset(String),
    /// Values served online, by time served.
    Serving { from: Option<i64>, to: Option<i64> },
}

impl StatsWindow {
    fn to_proto(&self) -> v1::Window {
        use v1::window::Source;
        let range = |from: &Option<i64>, to: &Option<i64>| v1::TimeRange {
            from_micros: from.unwrap_or_default(),
            to_micros: to.unwrap_or_default(),
        };
        let source = match self {
            StatsWindow::Offline { from, to } => Source::Offline(range(from, to)),
            StatsWindow::Dataset(name) => Source::Dataset(name.clone()),
            StatsWindow::Serving { from, to } => Source::Serving(range(from, to)),
        };
        v1::Window { source: Some(source) }
    }
}

/// What a drift report compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftTarget {
    FeatureSet(String),
    Vector(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineFormat {
    Csv,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub rows_written: u64,
}

impl Client {
    /// Connects to a node, e.g. `http://127.0.0.1:7070` (the scheme may be omitted).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client> {
        let mut endpoint = endpoint.into();
        if !endpoint.contains("://") {
            endpoint = format!("http://{endpoint}");
        }
        let transport =
            |e: &dyn std::fmt::Display| Error::Transport { endpoint: endpoint.clone(), message: e.to_string() };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| transport(&e))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(5))
            // A node that stopped answering (paused, partitioned) fails calls instead of hanging them.
            .timeout(std::time::Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| transport(&e))?;
        Ok(Client {
            router: Arc::new(Router::new(&endpoint, channel.clone())),
            features: FeatureServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            registry: RegistryServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            offline: OfflineServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            endpoint,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `call`, following `NotLeader` answers to the node they name: the cluster
    /// redirects rather than proxies. While a leader is being elected (no hint, or a hint
    /// naming a node that is down) it backs off and asks this node again. Bounded: after
    /// `REDIRECT_ATTEMPTS` tries the last answer is returned. Only answers that guarantee
    /// the call was not applied are retried, so a write is never applied twice.
    async fn redirected<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut target = self.clone();
        let mut backoff = std::time::Duration::from_millis(50);
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
            backoff = (backoff * 2).min(std::time::Duration::from_millis(500));
            target = self.clone();
        }
        call(target).await
    }

    /// Applies definitions: idempotent, all-or-nothing; says what changed.
    pub async fn apply(&self, defs: &Definitions) -> Result<ApplyResponse> {
        let request = quiver_proto::definitions_to_proto(defs);
        self.redirected(|c| {
            let request = request.clone();
            async move { Ok(c.registry.clone().apply(request).await.map_err(Error::from)?.into_inner()) }
        })
        .await
    }

    pub async fn projects(&self) -> Result<Vec<String>> {
        let reply = self.registry.clone().list_projects(v1::ListProjectsRequest {}).await;
        Ok(reply.map_err(Error::from)?.into_inner().projects)
    }

    /// Everything a project declares, every feature-set version included.
    pub async fn project(&self, name: &str) -> Result<Project> {
        let reply = self.registry.clone().get_project(v1::GetProjectRequest { project: name.into() }).await;
        Ok(quiver_proto::project_from_proto(reply.map_err(Error::from)?.into_inner())?)
    }

    /// Writes rows of one feature set (`name` or `name@version`). The whole batch is
    /// validated first: one bad row rejects the batch and nothing is written. Rows are sent
    /// to their shards' leaders in parallel; each shard applies its part atomically.
    pub async fn write(&self, project: &str, feature_set: &str, rows: Vec<InputRow>) -> Result<WriteOutcome> {
        let request_id = self.router.request_id();
        let make = |rows: Vec<InputRow>| v1::WriteFeaturesRequest {
            project: project.into(),
            feature_set: feature_set.into(),
            rows: rows.into_iter().map(|r| v1::Row { fields: quiver_proto::fields_to_proto(r) }).collect(),
            route: None,
            request_id: request_id.clone(),
        };
        let hashes = self.router.with_project(project, |p| routing::row_hashes(p, feature_set, &rows)).await;
        let Some(hashes) = hashes else {
            // Not routable here (unknown names, a bad row): the node validates and says why.
            let request = make(rows);
            let reply = self
                .redirected(|c| {
                    let request = request.clone();
                    async move { Ok(c.features.clone().write_features(request).await.map_err(Error::from)?.into_inner()) }
                })
                .await?;
            return Ok(WriteOutcome { rows_written: reply.rows_written });
        };
        let parts = self.router.split(hashes.into_iter().zip(rows).collect()).await?;
        let sends = parts.into_iter().map(|(shard, rows)| {
            let mut request = make(rows);
            // Each part has its own id, the same on every retry of that part.
            request.request_id.extend_from_slice(&shard.to_be_bytes());
            self.router.send(shard, true, move |channel, route| {
                let request = v1::WriteFeaturesRequest { route: Some(route), ..request.clone() };
                async move {
                    let mut client = FeatureServiceClient::new(channel).max_encoding_message_size(MAX_MESSAGE_BYTES);
                    Ok(client.write_features(request).await.map_err(Error::from)?.into_inner().rows_written)
                }
            })
        });
        let written = futures::future::try_join_all(sends).await?;
        Ok(WriteOutcome { rows_written: written.into_iter().sum() })
    }

    /// Reads the parts one node serves: in one request, or when that fails (a leader moved,
    /// the map changed), shard by shard with the router's retries. Returns each reply with
    /// the request positions of its entities.
    async fn read_node(
        &self,
        addr: String,
        parts: routing::Parts<ReadItem>,
        leader_only: bool,
        make: &impl Fn(Vec<v1::EntityKey>) -> v1::GetOnlineFeaturesRequest,
    ) -> Result<Vec<(Vec<usize>, v1::GetOnlineFeaturesResponse)>> {
        if parts.len() > 1 {
            let shards: Vec<u64> = parts.iter().map(|(shard, _)| *shard).collect();
            let items = parts.iter().flat_map(|(_, items)| items);
            let positions = items.clone().map(|(i, _)| *i).collect();
            let proto = make(items.map(|(_, key)| key.clone()).collect());
            let once = self.router.send_once(&addr, &shards, leader_only, |channel, routes| {
                get_online_features(channel, v1::GetOnlineFeaturesRequest { routes, ..proto })
            });
            if let Ok(reply) = once.await {
                return Ok(vec![(positions, reply)]);
            }
        }
        let reads = parts.into_iter().map(|(shard, items)| {
            let (positions, keys): (Vec<usize>, Vec<v1::EntityKey>) = items.into_iter().unzip();
            let proto = make(keys);
            let read = self.router.send(shard, leader_only, move |channel, route| {
                get_online_features(channel, v1::GetOnlineFeaturesRequest { routes: vec![route], ..proto.clone() })
            });
            async move { Ok((positions, read.await?)) }
        });
        futures::future::try_join_all(reads).await
    }

    /// Reads the latest values of features for entities. Entities are grouped by shard,
    /// each group bound for its shard's leader (linearizable) or any replica (stale); the
    /// groups bound for one node go in one request, and the nodes are asked in parallel.
    pub async fn get_online(&self, request: OnlineRequest) -> Result<OnlineFeatures> {
        let consistency = match request.consistency {
            Consistency::Linearizable => v1::Consistency::Linearizable,
            Consistency::Stale => v1::Consistency::Stale,
        };
        let features = Some(match &request.features {
            FeatureSelection::Vector(v) => v1::get_online_features_request::Features::Vector(v.clone()),
            FeatureSelection::Refs(refs) => {
                v1::get_online_features_request::Features::Refs(v1::FeatureRefs { refs: refs.clone() })
            }
        });
        let make = |entities: Vec<v1::EntityKey>| v1::GetOnlineFeaturesRequest {
            project: request.project.clone(),
            features: features.clone(),
            entities,
            consistency: consistency as i32,
            routes: Vec::new(),
        };
        let hashes = self
            .router
            .with_project(&request.project, |p| {
                let refs = match &request.features {
                    FeatureSelection::Vector(v) => p.vector(v).ok()?.features.clone(),
                    FeatureSelection::Refs(refs) => refs.clone(),
                };
                routing::entity_hashes(p, &refs, &request.entities)
            })
            .await;
        let entities: Vec<v1::EntityKey> = request
            .entities
            .into_iter()
            .map(|keys| v1::EntityKey { keys: quiver_proto::fields_to_proto(keys) })
            .collect();
        let Some(hashes) = hashes.filter(|h| !h.is_empty()) else {
            let proto = make(entities);
            let reply = self
                .redirected(|c| {
                    let proto = proto.clone();
                    async move { Ok(c.features.clone().get_online_features(proto).await.map_err(Error::from)?.into_inner()) }
                })
                .await?;
            return Ok(online_features(vec![(0..reply.results.len()).collect()], vec![reply]));
        };
        let count = entities.len();
        let indexed = hashes.into_iter().zip(entities.into_iter().enumerate()).collect();
        let parts = self.router.split(indexed).await?;
        let leader_only = request.consistency == Consistency::Linearizable;
        let nodes = self.router.by_node(parts, leader_only).await?;
        let reads = nodes.into_iter().map(|(addr, parts)| self.read_node(addr, parts, leader_only, &make));
        let (positions, replies): (Vec<_>, Vec<_>) =
            futures::future::try_join_all(reads).await?.into_iter().flatten().unzip();
        let answer = online_features(positions, replies);
        debug_assert_eq!(answer.rows.len(), count);
        Ok(answer)
    }

    /// Ingests a Parquet or CSV file, a directory of them, or an `s3://` URL. The node reads
    /// the path itself. `progress` sees each update; the last one is returned.
    pub async fn ingest(
        &self,
        project: &str,
        feature_set: &str,
        path: &str,
        mut progress: impl FnMut(&IngestProgress),
    ) -> Result<IngestProgress> {
        let request = v1::IngestRequest { project: project.into(), feature_set: feature_set.into(), path: path.into() };
        let mut stream = self.offline.clone().ingest(request).await.map_err(Error::from)?.into_inner();
        let mut last = None;
        while let Some(update) = stream.message().await.map_err(Error::from)? {
            progress(&update);
            last = Some(update);
        }
        last.filter(|p| p.done).ok_or_else(|| Error::Rpc(tonic::Status::aborted("ingest ended without a final report")))
    }

    /// Builds a point-in-time-correct training set: every spine row, in order, with its
    /// columns, then one column per feature and one event-time column per feature set.
    pub async fn historical(&self, request: HistoricalRequest) -> Result<RecordBatch> {
        let features = Some(match request.features {
            FeatureSelection::Vector(v) => v1::historical_request::Features::Vector(v),
            FeatureSelection::Refs(refs) => v1::historical_request::Features::Refs(v1::FeatureRefList { refs }),
        });
        let proto = v1::HistoricalRequest {
            project: request.project,
            features,
            spine: request.spine,
            spine_format: match request.spine_format {
                SpineFormat::Csv => "csv".into(),
                SpineFormat::Parquet => "parquet".into(),
            },
            timestamp_column: request.timestamp_column.unwrap_or_default(),
            short_names: request.short_names,
            save_as: request.save_as.unwrap_or_default(),
            spine_name: request.spine_name,
        };
        let mut stream = self.offline.clone().get_historical_features(proto).await.map_err(Error::from)?.into_inner();
        let mut ipc = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(Error::from)? {
            ipc.extend_from_slice(&chunk.data);
        }
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .map_err(|e| Error::Rpc(tonic::Status::data_loss(format!("answer is not Arrow IPC: {e}"))))?;
        let schema = reader.schema();
        let mut batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Rpc(tonic::Status::data_loss(format!("answer is not Arrow IPC: {e}"))))?;
        // The node answers with one batch; an empty stream is an empty answer.
        match batches.len() {
            0 => Ok(RecordBatch::new_empty(schema)),
            1 => Ok(batches.remove(0)),
            n => Err(Error::Rpc(tonic::Status::data_loss(format!("answer held {n} batches; expected one")))),
        }
    }

    /// Training datasets saved in a project, with their lineage.
    pub async fn datasets(&self, project: &str) -> Result<Vec<Dataset>> {
        let request = v1::ListDatasetsRequest { project: project.into() };
        Ok(self.offline.clone().list_datasets(request).await.map_err(Error::from)?.into_inner().datasets)
    }

    /// Loads the latest offline row per entity with event time in `[start, end)` (µs; `None`
    /// is unbounded) into the online store. Idempotent.
    pub async fn materialize(
        &self,
        project: &str,
        feature_set: &str,
        window: (Option<i64>, Option<i64>),
        mut progress: impl FnMut(&MaterializeProgress),
    ) -> Result<MaterializeProgress> {
        let request = v1::MaterializeRequest {
            project: project.into(),
            feature_set: feature_set.into(),
            start_micros: window.0.unwrap_or_default(),
            end_micros: window.1.unwrap_or_default(),
        };
        let mut stream = self.offline.clone().materialize(request).await.map_err(Error::from)?.into_inner();
        let mut last = None;
        while let Some(update) = stream.message().await.map_err(Error::from)? {
            progress(&update);
            last = Some(update);
        }
        last.filter(|p| p.done)
            .ok_or_else(|| Error::Rpc(tonic::Status::aborted("materialize ended without a final report")))
    }

    /// The committed offline files of a feature set (`name` or `name@version`).
    pub async fn files(&self, project: &str, feature_set: &str) -> Result<Vec<DataFileInfo>> {
        let request = v1::ListFilesRequest { project: project.into(), feature_set: feature_set.into() };
        Ok(self.offline.clone().list_files(request).await.map_err(Error::from)?.into_inner().files)
    }

    /// Drains node `id`: the metadata leader moves its replicas to the other nodes, then
    /// removes it from the cluster. Returns once the drain is recorded; watch `status`.
    pub async fn remove_node(&self, id: u64) -> Result<()> {
        self.admin.clone().remove_node(v1::RemoveNodeRequest { node_id: id }).await.map_err(Error::from)?;
        Ok(())
    }

    /// The shard map as the node knows it: ranges, epochs, replicas, leader hints.
    pub async fn shard_map(&self) -> Result<ShardMap> {
        Ok(self.admin.clone().get_shard_map(v1::GetShardMapRequest {}).await.map_err(Error::from)?.into_inner())
    }

    /// Statistics of every feature of a feature set (`name` or `name@version`) over a window,
    /// merged from recorded summaries.
    pub async fn statistics(&self, project: &str, feature_set: &str, window: &StatsWindow) -> Result<Statistics> {
        let request = v1::GetStatisticsRequest {
            project: project.into(),
            feature_set: feature_set.into(),
            window: Some(window.to_proto()),
        };
        let mut client = v1::monitoring_service_client::MonitoringServiceClient::new(self.admin_channel());
        Ok(client.get_statistics(request).await.map_err(Error::from)?.into_inner())
    }

    /// Per feature drift metrics (PSI, KS, Jensen–Shannon, Hellinger, TVD) and status between
    /// a reference and a current window.
    pub async fn drift(
        &self,
        project: &str,
        target: &DriftTarget,
        reference: &StatsWindow,
        current: &StatsWindow,
    ) -> Result<DriftReport> {
        let target = match target {
            DriftTarget::FeatureSet(s) => v1::get_drift_request::Target::FeatureSet(s.clone()),
            DriftTarget::Vector(v) => v1::get_drift_request::Target::Vector(v.clone()),
        };
        let request = v1::GetDriftRequest {
            project: project.into(),
            target: Some(target),
            reference: Some(reference.to_proto()),
            current: Some(current.to_proto()),
        };
        let mut client = v1::monitoring_service_client::MonitoringServiceClient::new(self.admin_channel());
        Ok(client.get_drift(request).await.map_err(Error::from)?.into_inner())
    }

    fn admin_channel(&self) -> Channel {
        self.router.seed_channel()
    }

    /// The node's view of the cluster: nodes, groups, leaders, indexes.
    pub async fn status(&self) -> Result<StatusResponse> {
        Ok(self.admin.clone().status(v1::StatusRequest {}).await.map_err(Error::from)?.into_inner())
    }
}

/// Puts the parts' answers back in request order: `positions[i]` are the request indexes of
/// the entities part `i` answered.
/// A part of a read: (position in the request, entity key).
type ReadItem = (usize, v1::EntityKey);

async fn get_online_features(
    channel: Channel,
    proto: v1::GetOnlineFeaturesRequest,
) -> Result<v1::GetOnlineFeaturesResponse> {
    let mut client = FeatureServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    Ok(client.get_online_features(proto).await.map_err(Error::from)?.into_inner())
}

fn online_features(positions: Vec<Vec<usize>>, replies: Vec<v1::GetOnlineFeaturesResponse>) -> OnlineFeatures {
    let count = positions.iter().map(Vec::len).sum();
    let mut rows = vec![Vec::new(); count];
    let mut features = Vec::new();
    let mut staleness_bound_ms = 0;
    for (positions, reply) in positions.into_iter().zip(replies) {
        staleness_bound_ms = staleness_bound_ms.max(reply.staleness_bound_ms);
        features = reply.features;
        for (i, result) in positions.into_iter().zip(reply.results) {
            rows[i] = result.values.into_iter().map(feature_value).collect();
        }
    }
    OnlineFeatures { features, rows, staleness_bound_ms }
}

fn feature_value(v: v1::FeatureValue) -> FeatureValue {
    let status = match v1::Status::try_from(v.status).unwrap_or(v1::Status::NotFound) {
        v1::Status::Present => Freshness::Present,
        v1::Status::NotFound => Freshness::NotFound,
        v1::Status::Expired => Freshness::Expired,
    };
    FeatureValue {
        value: v.value.map(quiver_proto::value_from_proto).unwrap_or_default(),
        event_ts: (status != Freshness::NotFound).then_some(v.event_timestamp_micros),
        status,
    }
}
