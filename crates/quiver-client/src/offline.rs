//! The offline store: batch ingestion, point-in-time training sets, saved datasets,
//! materialization into the online store, and the manifest.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::{Stream, StreamExt};
use quiver_core::offline::{DataFile, Dataset, IngestProgress, MaterializeProgress};
use quiver_proto::v1;
use tonic::Streaming;

use crate::arrow_data::{AnswerDecoder, spine_bytes};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::{HistoricalRequest, WriteOutcome};

impl Client {
    /// Waits until the rows of `written` are in the offline store, so that a training set
    /// built next sees them. Written rows reach it through each shard leader's export worker,
    /// about a second later by default (`export_interval_ms`); until then `historical`
    /// answers without them.
    ///
    /// A write sent again after its first answer was lost waits for its shard's next export.
    /// Fails with [`Error::Timeout`] after `within`, naming the shard still behind.
    ///
    /// ```no_run
    /// # async fn demo(client: quiver_client::Client, rows: Vec<quiver_client::InputRow>) -> quiver_client::Result<()> {
    /// let written = client.write("rides", "driver_stats", rows).await?;
    /// client.wait_for_export(&written, std::time::Duration::from_secs(30)).await?;
    /// // A training set built now includes the rows just written.
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_export(&self, written: &WriteOutcome, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let Some((shard, exported, index)) = written.unexported(&self.shard_map().await?) else { return Ok(()) };
            if Instant::now() >= deadline {
                let got = exported.map_or("nothing yet".into(), |e| format!("through log index {e}"));
                return Err(Error::Timeout(format!(
                    "shard {shard} exported {got} after {within:?}; the write is at log index {index}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ingests a Parquet or CSV file, a directory of them, or an `s3://` URL into the offline
    /// store; the latest row per entity also goes online. The node reads the path itself, so
    /// a local path must be one on the node's machine. All or nothing: one bad row rejects
    /// the whole request. The same content ingested twice adds nothing (see
    /// [`IngestProgress::duplicates`]). `progress` sees each update; the last one is returned.
    pub async fn ingest(
        &self,
        project: &str,
        feature_set: &str,
        path: &str,
        progress: impl FnMut(&IngestProgress),
    ) -> Result<IngestProgress> {
        let request = v1::IngestRequest { project: project.into(), feature_set: feature_set.into(), path: path.into() };
        let stream = self.offline.clone().ingest(request).await.map_err(Error::from)?.into_inner();
        let last = self.follow(stream, quiver_proto::ingest_progress_from_proto, progress).await?;
        last.filter(|p| p.done).ok_or_else(|| Error::Rpc(tonic::Status::aborted("ingest ended without a final report")))
    }

    /// Builds a point-in-time-correct training set: every spine row, in order, with its
    /// columns, then one column per feature (the latest value with event time at or before
    /// the row's time and within the TTL, else null) and one event-time column per feature set.
    ///
    /// ```no_run
    /// use quiver_client::{Client, FeatureSelection, HistoricalRequest, Spine};
    ///
    /// # async fn example(client: Client) -> quiver_client::Result<()> {
    /// let spine = std::fs::read("examples/driver_spine.csv").expect("the example spine");
    /// let mut request =
    ///     HistoricalRequest::new("rides", FeatureSelection::Vector("driver_model_v1".into()), Spine::Csv(spine));
    /// request.save_as = Some("train_v1".into()); // also kept in the offline store, with its lineage
    /// let training = client.historical(request).await?;
    /// println!("{} rows x {} columns", training.num_rows(), training.num_columns());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn historical(&self, request: HistoricalRequest) -> Result<RecordBatch> {
        self.historical_with_progress(request, |_| {}).await
    }

    /// [`Client::historical`], calling `progress` with the time the node has spent on the
    /// answer each time it reports (about every second while it computes).
    pub async fn historical_with_progress(
        &self,
        request: HistoricalRequest,
        progress: impl FnMut(Duration),
    ) -> Result<RecordBatch> {
        let mut answer = self.historical_stream(request, progress).await?;
        let schema = answer.schema();
        let mut batches = Vec::new();
        while let Some(batch) = answer.next().await {
            batches.push(batch?);
        }
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| Error::Arrow(e.to_string()))
    }

    /// [`Client::historical`] as it streams: answers once the node starts sending the
    /// training set (calling `progress` until then, as [`Client::historical_with_progress`]),
    /// with its schema and row count; its batches, in spine order, follow as they arrive, so
    /// a caller can write them out without holding the whole set.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// use quiver_client::{Client, FeatureSelection, HistoricalRequest, Spine};
    ///
    /// # async fn example(client: Client) -> quiver_client::Result<()> {
    /// let spine = Spine::Csv(std::fs::read("examples/driver_spine.csv").expect("the example spine"));
    /// let request = HistoricalRequest::new("rides", FeatureSelection::Vector("driver_model_v1".into()), spine);
    /// let mut answer = client.historical_stream(request, |_| {}).await?;
    /// println!("{} rows of {:?}", answer.rows(), answer.schema());
    /// while let Some(batch) = answer.next().await {
    ///     println!("{} rows", batch?.num_rows());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn historical_stream(
        &self,
        request: HistoricalRequest,
        mut progress: impl FnMut(Duration),
    ) -> Result<TrainingSetStream> {
        let (spine, format) = spine_bytes(request.spine)?;
        let proto = v1::HistoricalRequest {
            project: request.project,
            features: Some(quiver_proto::historical_selection_to_proto(request.features)),
            spine,
            spine_format: quiver_proto::spine_format_to_proto(format) as i32,
            timestamp_column: request.timestamp_column.unwrap_or_default(),
            short_names: request.short_names,
            save_as: request.save_as.unwrap_or_default(),
            spine_name: request.spine_name,
        };
        let mut stream = self.offline.clone().get_historical_features(proto).await.map_err(Error::from)?.into_inner();
        let mut decoder = AnswerDecoder::default();
        let (mut rows, mut pending, mut phases) = (0, VecDeque::new(), Vec::new());
        let (mut memory, mut nodes) = (JoinMemory::default(), 1);
        // Progress beats until the answer's first bytes, which carry its schema.
        let schema = loop {
            let Some(chunk) = self.next_message(&mut stream).await? else {
                return Err(Error::Rpc(tonic::Status::aborted("the training set ended before its schema")));
            };
            if let Some(p) = chunk.progress {
                progress(Duration::from_millis(p.elapsed_ms));
                if !p.phases.is_empty() {
                    phases = p.phases.into_iter().map(|p| (p.name, Duration::from_micros(p.micros))).collect();
                    memory = JoinMemory {
                        peak_bytes: p.peak_memory_bytes,
                        spilled_bytes: p.spilled_bytes,
                        partitions: p.partitions,
                    };
                    nodes = p.nodes.max(1);
                }
            }
            rows += chunk.rows;
            pending.extend(decoder.push(chunk.data)?);
            if let Some(schema) = decoder.schema() {
                break schema;
            }
        };
        let client = self.clone();
        let batches = futures::stream::try_unfold(
            (client, stream, decoder, pending),
            |(client, mut stream, mut decoder, mut pending)| async move {
                loop {
                    if let Some(batch) = pending.pop_front() {
                        return Ok(Some((batch, (client, stream, decoder, pending))));
                    }
                    match client.next_message(&mut stream).await? {
                        Some(chunk) => pending.extend(decoder.push(chunk.data)?),
                        None => {
                            decoder.finish()?;
                            return Ok(None);
                        }
                    }
                }
            },
        );
        Ok(TrainingSetStream { schema, rows, phases, memory, nodes, batches: Box::pin(batches) })
    }

    /// Training datasets saved in a project, with their lineage.
    pub async fn datasets(&self, project: &str) -> Result<Vec<Dataset>> {
        let request = v1::ListDatasetsRequest { project: project.into() };
        let reply = self.offline.clone().list_datasets(request).await.map_err(Error::from)?.into_inner();
        Ok(reply.datasets.into_iter().map(quiver_proto::dataset_from_proto).collect())
    }

    /// Loads the latest offline row per entity with event time in `[start, end)` (µs; `None`
    /// is unbounded) into the online store. Idempotent. `progress` sees each update; the
    /// last one is returned.
    pub async fn materialize(
        &self,
        project: &str,
        feature_set: &str,
        window: (Option<i64>, Option<i64>),
        progress: impl FnMut(&MaterializeProgress),
    ) -> Result<MaterializeProgress> {
        let request = v1::MaterializeRequest {
            project: project.into(),
            feature_set: feature_set.into(),
            start_micros: window.0.unwrap_or_default(),
            end_micros: window.1.unwrap_or_default(),
        };
        let stream = self.offline.clone().materialize(request).await.map_err(Error::from)?.into_inner();
        let last = self.follow(stream, quiver_proto::materialize_progress_from_proto, progress).await?;
        last.filter(|p| p.done)
            .ok_or_else(|| Error::Rpc(tonic::Status::aborted("materialize ended without a final report")))
    }

    /// The committed offline files of a feature set (`name` or `name@version`).
    pub async fn files(&self, project: &str, feature_set: &str) -> Result<Vec<DataFile>> {
        let request = v1::ListFilesRequest { project: project.into(), feature_set: feature_set.into() };
        let reply = self.offline.clone().list_files(request).await.map_err(Error::from)?.into_inner();
        Ok(reply.files.into_iter().map(quiver_proto::data_file_from_proto).collect())
    }
}

/// A training set streaming from the node: its schema and row count, then its batches in
/// spine order (a [`futures::Stream`]).
pub struct TrainingSetStream {
    schema: SchemaRef,
    rows: u64,
    phases: Vec<(String, Duration)>,
    memory: JoinMemory,
    nodes: u32,
    batches: std::pin::Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>,
}

impl TrainingSetStream {
    /// The columns: the spine's, then each feature's and each feature set's event time.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// How many rows the batches will hold in all (one per spine row).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Where the node's time went before it sent the first batch, phase by phase: `spine`
    /// (reading and checking it), `read` (reading the files and offering their events to the
    /// spine's rows), `join`, `features` (taking the matched values), `save` (a dataset asked
    /// for).
    pub fn phases(&self) -> &[(String, Duration)] {
        &self.phases
    }

    /// What the node's joins held and spilled for it (with the join split over nodes, the
    /// most one node held and what all of them spilled).
    pub fn memory(&self) -> JoinMemory {
        self.memory
    }

    /// How many nodes joined a part of it: 1 when the receiving node joined it alone.
    pub fn nodes(&self) -> u32 {
        self.nodes
    }
}

/// What a training set's joins took on the node, beside its `[offline] retrieval_memory`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JoinMemory {
    /// The most they held at once, by the node's own accounting of what grows with the
    /// history (events, decoded key columns, spill buffers, a partition's join).
    pub peak_bytes: u64,
    /// What they wrote to the node's spill files.
    pub spilled_bytes: u64,
    /// Partitions of the largest join (1: held in memory).
    pub partitions: u32,
}

impl Stream for TrainingSetStream {
    type Item = Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.batches.as_mut().poll_next(cx)
    }
}

impl Client {
    /// Shows every report of a job's stream to `progress`; the last one, if any.
    pub(crate) async fn follow<P, T>(
        &self,
        mut stream: Streaming<P>,
        convert: impl Fn(P) -> T,
        mut progress: impl FnMut(&T),
    ) -> Result<Option<T>> {
        let mut last = None;
        while let Some(update) = self.next_message(&mut stream).await? {
            let update = convert(update);
            progress(&update);
            last = Some(update);
        }
        Ok(last)
    }

    /// The stream's next message, or an error once the node has been silent for longer than
    /// the client's silence timeout.
    async fn next_message<P>(&self, stream: &mut Streaming<P>) -> Result<Option<P>> {
        match tokio::time::timeout(self.silence, stream.message()).await {
            Ok(message) => Ok(message?),
            Err(_) => {
                let silent = format!("no word from {} for {:?}", self.endpoint(), self.silence);
                Err(Error::Rpc(tonic::Status::deadline_exceeded(silent)))
            }
        }
    }
}
