//! The offline store: batch ingestion, waiting for written rows' export, saved datasets,
//! materialization into the online store, and the manifest (training sets: `training`).

use std::time::{Duration, Instant};

use quiver_core::offline::{DataFile, Dataset, IngestProgress, MaterializeProgress};
use quiver_proto::v1;
use tonic::Streaming;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::WriteOutcome;

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
    pub(crate) async fn next_message<P>(&self, stream: &mut Streaming<P>) -> Result<Option<P>> {
        match tokio::time::timeout(self.silence, stream.message()).await {
            Ok(message) => Ok(message?),
            Err(_) => {
                let silent = format!("no word from {} for {:?}", self.endpoint(), self.silence);
                Err(Error::Rpc(tonic::Status::deadline_exceeded(silent)))
            }
        }
    }
}
