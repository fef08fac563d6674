//! Offline RPCs: ingestion with streamed progress, and historical retrieval streamed back
//! as Arrow IPC.

use std::sync::Arc;
use std::time::Instant;

use quiver_proto::v1::offline_service_server::OfflineService;
use quiver_proto::v1::{
    ArrowChunk, HistoricalRequest, HistoryProgress, IngestProgress, IngestRequest, JoinPartRequest,
    ListDatasetsRequest, ListDatasetsResponse, ListFilesRequest, ListFilesResponse, MaterializeProgress,
    MaterializeRequest, Phase,
};
use quiver_proto::{data_file_to_proto, dataset_to_proto, historical_selection_from_proto};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::observed::{admit, allowed, observed};
use crate::metrics::Running;
use crate::node::Node;
use crate::offline::history::{self, Answer, HistoryRequest};
use crate::offline::parts;
use crate::offline::{ingest, materialize};
use crate::streaming::{Streamed, channel_stream};
use quiver_core::access::{Need, Role};
use quiver_core::table::TableRef;
use quiver_offline::retrieval::Phases;
use quiver_store::error::Error;

/// Bytes of Arrow IPC per streamed message, about.
const CHUNK_BYTES: usize = 4 << 20;
/// How often a training set being computed reports progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct OfflineApi {
    pub node: Arc<Node>,
}

/// Runs a long job on its own task, streaming its progress reports and then its final one.
/// Progress is forwarded on the job's task, so the final report is always the last message.
pub(super) fn stream_job<P, F, Fut>(node: Arc<Node>, method: &'static str, job: F) -> Streamed<P>
where
    P: Send + 'static,
    F: FnOnce(mpsc::Sender<P>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<P, Error>> + Send,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let started = Instant::now();
        let (progress_tx, mut progress_rx) = mpsc::channel::<P>(16);
        let forward = async {
            while let Some(p) = progress_rx.recv().await {
                let _ = tx.send(Ok(p)).await;
            }
        };
        let (result, ()) = tokio::join!(job(progress_tx), forward);
        finish(&node, method, started, &result);
        let _ = tx.send(result.map_err(Status::from)).await;
    });
    channel_stream(rx)
}

fn finish<T>(node: &Node, method: &str, started: Instant, result: &Result<T, Error>) {
    let code = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    node.metrics.observe(method, started, code);
}

/// Streams a join's answer: progress beats while `work` runs on a task of its own, then the
/// answer as Arrow IPC in messages of about `CHUNK_BYTES`, the first of them saying where
/// the time went. When the caller goes away, the work is dropped: its spill files go with
/// it, and the parts it asked of other nodes stop there too.
fn answer_stream(
    node: Arc<Node>,
    method: &'static str,
    work: impl std::future::Future<Output = Result<Answer, Error>> + Send + 'static,
) -> Streamed<ArrowChunk> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut work = tokio::spawn(work);
        let mut beat = tokio::time::interval(PROGRESS_EVERY);
        beat.tick().await;
        let result = loop {
            tokio::select! {
                joined = &mut work => match joined {
                    Ok(done) => break done,
                    Err(e) => return drop(tx.send(Err(Status::internal(format!("{method} task: {e}")))).await),
                },
                _ = beat.tick() => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    let progress = HistoryProgress { elapsed_ms, ..Default::default() };
                    if tx.send(Ok(ArrowChunk { progress: Some(progress), ..Default::default() })).await.is_err() {
                        // The caller is gone: stop the work too.
                        return work.abort();
                    }
                }
            }
        };
        finish(&node, method, started, &result);
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => return drop(tx.send(Err(Status::from(e))).await),
        };
        let mut messages = history::IpcMessages::new(&answer.batch, CHUNK_BYTES);
        let mut rows = answer.batch.num_rows() as u64;
        let phases = answer.phases.0.iter();
        let mut report = Some(HistoryProgress {
            elapsed_ms: started.elapsed().as_millis() as u64,
            phases: phases.map(|(name, d)| Phase { name: name.to_string(), micros: d.as_micros() as u64 }).collect(),
            peak_memory_bytes: answer.usage.peak_bytes,
            spilled_bytes: answer.usage.spilled_bytes,
            partitions: answer.usage.partitions,
            nodes: answer.nodes,
        });
        loop {
            let data = match messages.next_message() {
                Ok(Some(data)) => data,
                Ok(None) => return,
                Err(e) => return drop(tx.send(Err(Status::from(e))).await),
            };
            let chunk = ArrowChunk { data, rows: std::mem::take(&mut rows), progress: report.take() };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    channel_stream(rx)
}

#[tonic::async_trait]
impl OfflineService for OfflineApi {
    type IngestStream = Streamed<IngestProgress>;
    type GetHistoricalFeaturesStream = Streamed<ArrowChunk>;
    type MaterializeStream = Streamed<MaterializeProgress>;
    type JoinPartStream = Streamed<ArrowChunk>;

    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<Self::IngestStream>, Status> {
        let call = admit(&self.node, "Ingest", &request)?;
        let req = request.into_inner();
        // The audit entry names what was read, and into what.
        let action = format!("ingesting {} into {}", req.path, req.feature_set);
        allowed(&self.node, &call, Need::Project { project: &req.project, role: Role::Writer, action: &action })
            .await?;
        let node = self.node.clone();
        Ok(Response::new(stream_job(self.node.clone(), "Ingest", move |progress| {
            ingest::ingest_path(node, req.project, req.feature_set, req.path, progress)
        })))
    }

    async fn materialize(
        &self,
        request: Request<MaterializeRequest>,
    ) -> Result<Response<Self::MaterializeStream>, Status> {
        let call = admit(&self.node, "Materialize", &request)?;
        let req = request.into_inner();
        let action = format!("materializing {}", req.feature_set);
        allowed(&self.node, &call, Need::Project { project: &req.project, role: Role::Writer, action: &action })
            .await?;
        let node = self.node.clone();
        let bound = |t: i64| (t != 0).then_some(t);
        let window = (bound(req.start_micros), bound(req.end_micros));
        Ok(Response::new(stream_job(self.node.clone(), "Materialize", move |progress| {
            materialize::materialize_online(node, req.project, req.feature_set, window, progress)
        })))
    }

    async fn list_datasets(
        &self,
        request: Request<ListDatasetsRequest>,
    ) -> Result<Response<ListDatasetsResponse>, Status> {
        let call = admit(&self.node, "ListDatasets", &request)?;
        observed(&self.node, &call, async {
            let project = request.into_inner().project;
            call.allow(Need::Project { project: &project, role: Role::Viewer, action: "listing datasets" })?;
            // Read-your-writes through any node: a dataset saved through another is listed.
            let state = self.node.meta.caught_up().await?;
            state.registry.project(&project)?;
            let datasets =
                state.datasets.iter().filter(|((p, _), _)| *p == project).map(|(_, d)| dataset_to_proto(d)).collect();
            Ok(ListDatasetsResponse { datasets })
        })
        .await
    }

    async fn get_historical_features(
        &self,
        request: Request<HistoricalRequest>,
    ) -> Result<Response<Self::GetHistoricalFeaturesStream>, Status> {
        let call = admit(&self.node, "GetHistoricalFeatures", &request)?;
        let req = request.into_inner();
        let project = &req.project;
        allowed(&self.node, &call, Need::Project { project, role: Role::Viewer, action: "building a training set" })
            .await?;
        if !req.save_as.is_empty() {
            let action = format!("saving dataset {}", req.save_as);
            allowed(&self.node, &call, Need::Project { project, role: Role::Admin, action: &action }).await?;
            // Once, before it is built: a saved dataset is a copy of the data.
            let entry = call.entry(self.node.id, None, "ok".into());
            self.node.audit.record(entry).await.map_err(Status::from)?;
        }
        let selection = historical_selection_from_proto(req.features).map_err(Error::from)?;
        let request = HistoryRequest {
            call,
            project: req.project,
            selection,
            spine: req.spine.into(),
            spine_format: quiver_proto::spine_format_from_proto(req.spine_format).map_err(Error::from)?,
            timestamp_column: if req.timestamp_column.is_empty() {
                "event_timestamp".into()
            } else {
                req.timestamp_column
            },
            short_names: req.short_names,
            save_as: (!req.save_as.is_empty()).then_some(req.save_as),
            spine_name: req.spine_name,
        };
        let node = self.node.clone();
        Ok(Response::new(answer_stream(self.node.clone(), "GetHistoricalFeatures", async move {
            let _running = Running::new(&node.metrics, "training_set");
            history::build_training_set(&node, request).await
        })))
    }

    async fn join_part(&self, request: Request<JoinPartRequest>) -> Result<Response<Self::JoinPartStream>, Status> {
        // Admitted as a member's (`trust::member`).
        let req = request.into_inner();
        let node = self.node.clone();
        Ok(Response::new(answer_stream(self.node.clone(), "JoinPart", async move {
            let _running = Running::new(&node.metrics, "part");
            let started = Instant::now();
            let (batch, usage) = parts::join_part(&node, &req.plan, req.spine).await?;
            let mut phases = Phases::default();
            phases.add("part", started);
            Ok(Answer { batch, phases, usage, nodes: 1 })
        })))
    }

    async fn list_files(&self, request: Request<ListFilesRequest>) -> Result<Response<ListFilesResponse>, Status> {
        let call = admit(&self.node, "ListFiles", &request)?;
        observed(&self.node, &call, async {
            let req = request.into_inner();
            call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "listing files" })?;
            let state = self.node.meta.caught_up().await?;
            let fs = state.registry.project(&req.project)?.feature_set_by_ref(&req.feature_set)?;
            let table = TableRef::new(&req.project, fs);
            let files =
                state.manifest.get(&table).into_iter().flatten().map(|f| data_file_to_proto(&f.info())).collect();
            Ok(ListFilesResponse { files })
        })
        .await
    }
}
