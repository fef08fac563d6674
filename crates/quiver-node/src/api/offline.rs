//! Offline RPCs: ingestion with streamed progress, and historical retrieval streamed back
//! as Arrow IPC.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use quiver_proto::v1::historical_request::Features;
use quiver_proto::v1::offline_service_server::OfflineService;
use quiver_proto::v1::{
    ArrowChunk, DataFileInfo, HistoricalRequest, IngestProgress, IngestRequest, ListFilesRequest, ListFilesResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::node::Node;
use crate::offline::history::{self, FeatureChoice, HistoryRequest};
use crate::offline::ingest;
use crate::shard::TableRef;

/// Bytes of Arrow IPC per streamed message.
const CHUNK_BYTES: usize = 4 << 20;

pub struct OfflineApi {
    pub node: Arc<Node>,
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn channel_stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Streamed<T> {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

fn finish<T>(node: &Node, method: &str, started: Instant, result: &Result<T, Error>) {
    let code = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    node.metrics.observe(method, started, code);
}

#[tonic::async_trait]
impl OfflineService for OfflineApi {
    type IngestStream = Streamed<IngestProgress>;
    type GetHistoricalFeaturesStream = Streamed<ArrowChunk>;

    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<Self::IngestStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (progress_tx, mut progress_rx) = mpsc::channel::<IngestProgress>(16);
            let forward = async {
                while let Some(p) = progress_rx.recv().await {
                    let _ = tx.send(Ok(p)).await;
                }
            };
            // Progress is forwarded on this task, so the final report is always the last message.
            let (result, ()) =
                tokio::join!(ingest::run(node.clone(), req.project, req.feature_set, req.path, progress_tx), forward);
            finish(&node, "Ingest", started, &result);
            let _ = tx.send(result.map_err(Status::from)).await;
        });
        Ok(Response::new(channel_stream(rx)))
    }

    async fn get_historical_features(
        &self,
        request: Request<HistoricalRequest>,
    ) -> Result<Response<Self::GetHistoricalFeaturesStream>, Status> {
        let req = request.into_inner();
        let refs = match req.features {
            Some(Features::Vector(v)) => FeatureChoice::Vector(v),
            Some(Features::Refs(r)) => FeatureChoice::Refs(r.refs),
            None => return Err(Status::invalid_argument("name a feature vector or feature references")),
        };
        let request = HistoryRequest {
            project: req.project,
            refs,
            spine: req.spine.into(),
            spine_format: req.spine_format,
            timestamp_column: if req.timestamp_column.is_empty() {
                "event_timestamp".into()
            } else {
                req.timestamp_column
            },
            short_names: req.short_names,
        };
        let started = Instant::now();
        let result =
            history::run(&self.node, request).await.and_then(|batch| Ok((batch.num_rows(), history::to_ipc(&batch)?)));
        finish(&self.node, "GetHistoricalFeatures", started, &result);
        let (rows, ipc) = result?;
        let chunks: Vec<Result<ArrowChunk, Status>> = ipc
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| Ok(ArrowChunk { data: c.to_vec(), rows: if i == 0 { rows as u64 } else { 0 } }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn list_files(&self, request: Request<ListFilesRequest>) -> Result<Response<ListFilesResponse>, Status> {
        super::observed(&self.node, "ListFiles", async {
            let req = request.into_inner();
            let state = self.node.meta.borrow().clone();
            let fs = state.registry.project(&req.project)?.feature_set_by_ref(&req.feature_set)?;
            let table = TableRef { project: req.project.clone(), set: fs.name.clone(), version: fs.version };
            let files = state
                .manifest
                .get(&table)
                .into_iter()
                .flatten()
                .map(|f| DataFileInfo {
                    path: f.path.clone(),
                    day: f.day,
                    rows: f.rows,
                    bytes: f.bytes,
                    min_ts_micros: f.min_ts,
                    max_ts_micros: f.max_ts,
                })
                .collect();
            Ok(ListFilesResponse { files })
        })
        .await
    }
}
