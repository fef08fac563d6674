//! Point-in-time training sets (the `offline` feature): the spine goes up as CSV or Parquet
//! bytes, the answer comes back as an Arrow IPC stream, decoded batch by batch.

use std::collections::VecDeque;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::{Stream, StreamExt};
use quiver_proto::v1;

use crate::arrow_data::{AnswerDecoder, spine_bytes};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::HistoricalRequest;

impl Client {
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
