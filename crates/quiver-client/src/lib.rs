//! Rust client for Quiver, a distributed feature store.
//!
//! Define features once, then use them twice: the latest values served to a model online,
//! and point-in-time-correct training sets built from every row ever ingested. Everything
//! goes through a [`Client`], connected to any node of a cluster.
//!
//! # A first program
//!
//! With `quiver-client` and `tokio` as the only dependencies, and a node serving on 7070
//! (`quiver-node --data-dir ./quiver-data`):
//!
//! ```no_run
//! use quiver_client::{Client, Definitions, InputRow, OnlineRequest, Value};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::connect("http://127.0.0.1:7070").await?;
//!     client.apply(&Definitions::from_path("examples/rides.yaml")?).await?;
//!     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
//!     let row = InputRow::from([
//!         ("driver_id".into(), Value::from(1001_i64)),
//!         ("event_timestamp".into(), Value::Timestamp(now)),
//!         ("conv_rate".into(), Value::from(0.87)),
//!     ]);
//!     client.write("rides", "driver_stats", vec![row]).await?;
//!     let read = OnlineRequest::features("rides", ["driver_stats:conv_rate"]).entity("driver_id", 1001_i64);
//!     let answer = client.get_online(read).await?;
//!     println!("conv_rate: {:?}", answer.get(0, "conv_rate").map(|v| &v.value));
//!     Ok(())
//! }
//! ```
//!
//! As with `etcd-client`, `tikv-client`'s `RawClient` or `redis-rs`, one connected
//! [`Client`] is all a program holds: it is cheap to clone (share it between tasks), every
//! call is `async`, and nothing needs setting up first (it learns the shard map and the
//! registry entries it needs on its own). Requests are plain structs with builders
//! ([`OnlineRequest::features`], [`HistoricalRequest::new`]); answers are Quiver's own types
//! ([`OnlineFeatures::get`] reads a value by feature name), and [`Value`] converts to and
//! from plain Rust values (`Value::from(0.5)`, `f64::try_from(value)`).
//!
//! # A walk-through
//!
//! ```no_run
//! use quiver_client::{Client, Definitions, FeatureSelection, HistoricalRequest, InputRow, OnlineRequest, Spine, Value};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. Connect to a node.
//! let client = Client::connect("http://127.0.0.1:7070").await?;
//!
//! // 2. Declare an entity, a feature set and a feature vector, as YAML (what `quiverctl
//! //    apply` reads) or as `Definitions` built in code. Applying is idempotent and
//! //    all-or-nothing; it says what changed.
//! let defs = Definitions::from_yaml(
//!     "project: rides
//! entities:
//!   - {name: driver, join_keys: [{name: driver_id, type: int64}]}
//! feature_sets:
//!   - name: driver_stats
//!     entity: driver
//!     timestamp: event_timestamp
//!     ttl: 7d
//!     features: [{name: conv_rate, type: float64}, {name: trips, type: int64}]
//! feature_vectors:
//!   - {name: driver_model_v1, features: ['driver_stats:*']}",
//! )?;
//! for change in client.apply(&defs).await? {
//!     println!("{change}");
//! }
//!
//! // 3. Push rows: join keys, the event time (µs since the epoch) and features, by name.
//! //    A row older than its feature set's TTL (7 days here) reads as expired.
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
//! let row = InputRow::from([
//!     ("driver_id".to_string(), Value::from(1001_i64)),
//!     ("event_timestamp".to_string(), Value::Timestamp(now)),
//!     ("conv_rate".to_string(), Value::from(0.87)),
//!     ("trips".to_string(), Value::from(12_i64)),
//! ]);
//! client.write("rides", "driver_stats", vec![row]).await?;
//!
//! // 4. Read the latest vector of two drivers: one row each, in request order.
//! let read = OnlineRequest::vector("rides", "driver_model_v1").entity("driver_id", 1001_i64).entity("driver_id", 1002_i64);
//! let answer = client.get_online(read).await?;
//! for (name, value) in answer.features.iter().zip(&answer.rows[0]) {
//!     println!("{name} = {} ({:?})", value.value, value.status);
//! }
//!
//! // 5. Build a training set: for each spine row, the latest values as of its time
//! //    (RFC 3339 or µs), here a second after the row was written. Rows written online
//! //    reach the offline store with the next export (every second by default): a
//! //    training set built at once may not hold them yet.
//! let spine = format!("driver_id,event_timestamp,label\n1001,{},1\n", now + 1_000_000).into_bytes();
//! let request = HistoricalRequest::new("rides", FeatureSelection::Vector("driver_model_v1".into()), Spine::Csv(spine));
//! let training = client.historical(request).await?; // an Arrow RecordBatch
//! println!("{} rows", training.num_rows());
//! # Ok(())
//! # }
//! ```
//!
//! # What the client offers
//!
//! - **Registry**: [`Client::apply`] definitions; [`Client::projects`], [`Client::project`]
//!   to read them back as [`Project`]s.
//! - **Online**: [`Client::write`] rows, [`Client::get_online`] the latest values, each with
//!   its event time and [`Freshness`] (present, not found, or expired by the feature set's TTL).
//! - **Offline**: [`Client::ingest`] Parquet or CSV files (read by the node),
//!   [`Client::historical`] training sets from a [`Spine`] given as CSV, Parquet or Arrow
//!   record batches, [`Client::datasets`] saved with their lineage, [`Client::materialize`]
//!   offline rows into the online store, [`Client::files`] of the manifest.
//! - **Monitoring**: [`Client::statistics`] of a feature set over a [`StatsWindow`], and
//!   [`Client::drift`] between two windows.
//! - **Cluster**: [`Client::status`], [`Client::shard_map`], [`Client::remove_node`].
//!
//! Answers are Quiver's own types (from `quiver-core`, re-exported here); most implement
//! `serde::Serialize`, which is how `quiverctl --format json` prints them.
//!
//! # Routing, retries and consistency
//!
//! The client keeps a copy of the shard map and of the registry entries it needs to hash
//! entity keys. A write or a read is split by shard and each part sent, in parallel, straight
//! to the node that can answer it: the shard's leader, or with [`Consistency::Stale`] any
//! replica (the answer then bounds its age). A read's parts bound for one node travel in one
//! request. When leaders move the client follows `NotLeader` hints, refreshes the map on
//! epoch mismatches, waits out elections and `Busy` answers, all bounded; a write part
//! retried after a timeout is applied once, as writes carry request ids.
//!
//! # Features
//!
//! `offline` (training sets: [`Client::historical`] and its kin, with the Arrow and Parquet
//! crates) and `tls` (`https://` nodes) are on by default. A service that only serves online
//! values over plain HTTP/2 builds in half the time with `default-features = false`.
//!
//! # Errors
//!
//! Every call returns [`Result`]. A node's own errors come back typed as
//! [`Error::Server`] with the same variants and stable codes as on the node
//! (`Q1201 InvalidRow`, …): bad input rejects the whole request, naming the row and field.
//! New error variants may come in any release (the error enums are `#[non_exhaustive]`);
//! branch on [`ServerError::kind`] (not found, invalid argument, unavailable, …) where a
//! variant's details do not matter. The data types that mirror the wire and stored formats
//! (`Value`, `ValueType`, `FeatureSelection`, `OpKind`, …) are matched exhaustively, here and
//! in the node: a new variant of one of them is a breaking release.

#![warn(missing_docs)]

mod access;
#[cfg(feature = "offline")]
mod arrow_data;
mod client;
mod cluster;
mod conn;
pub mod error;
mod keys;
mod monitoring;
mod offline;
mod online;
mod reassemble;
mod registry;
mod routing;
mod table;
mod tls;
#[cfg(feature = "offline")]
mod training;
mod types;

pub use access::NewToken;
#[cfg(feature = "offline")]
pub use arrow_array::RecordBatch;
pub use client::{Client, ClientBuilder};
pub use cluster::BackupOptions;
pub use error::{Error, Result};
/// The node's errors, as `Error::Server` carries them (with their stable codes).
pub use quiver_core::Error as ServerError;
pub use quiver_core::access::{Role, Scope, TokenInfo};
pub use quiver_core::audit::{AuditEntry, AuditQuery};
pub use quiver_core::backup::{BackupProgress, BackupRecord};
pub use quiver_core::cluster::{ClusterMap, ClusterStatus, GroupKind, GroupStatus, NodeStatus, ReplicaLag};
pub use quiver_core::error::ErrorKind;
pub use quiver_core::offline::{DataFile, Dataset, IngestProgress, MaterializeProgress, SpineFormat};
pub use quiver_core::online::{Consistency, FeatureSelection, FeatureValue, OnlineFeatures};
pub use quiver_core::registry::{Action, Change, ObjectKind, Project};
pub use quiver_core::row::{Freshness, InputRow};
pub use quiver_core::shard_map::{Epoch, Shard, ShardMap};
pub use quiver_core::shard_ops::{FinishedOp, OpKind, Outcome, ShardOp};
pub use quiver_core::spec::{Definitions, EntitySpec, FeatureSetSpec, FeatureSpec, JoinKey, VectorSpec};
pub use quiver_core::stats::{
    DriftMetrics, DriftReport, DriftStatus, DriftTarget, FeatureDrift, FeatureStatistics, HistogramBin, Quantile,
    Statistics, StatsWindow, TopValue,
};
pub use quiver_core::{Value, ValueType};
#[cfg(feature = "offline")]
pub use training::{JoinMemory, TrainingSetStream};
#[cfg(feature = "offline")]
pub use types::{HistoricalRequest, Spine};
pub use types::{OnlineRequest, WriteOutcome};
/// The Arrow crates whose types answers use (`RecordBatch`, schemas), at the client's versions.
#[cfg(feature = "offline")]
pub use {arrow_array, arrow_schema};
