//! Batch ingestion. Every source is read and checked before anything is written, so a bad
//! row anywhere rejects the request and changes nothing. Then, per source: reserve sequence
//! numbers, write one Parquet file per event day, commit them to the manifest under the
//! source's content hash (a second ingest of the same content adds nothing), and upsert the
//! latest row per entity into the online shards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use bytes::Bytes;
use quiver_core::Error as CoreError;
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::ValidatedRow;
use quiver_core::table::TableRef;
use quiver_offline::convert::{array_value, encode_key_cell};
use quiver_offline::files::{data_path, write_file};
use quiver_offline::ingest::{SourceFormat, SourceRows, day_batches, read_source};
use quiver_offline::schema::columns;
use quiver_offline::store::OfflineStore;
use quiver_proto::v1::IngestProgress;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::raft::now_micros;

/// Rows per online upsert command.
const UPSERT_CHUNK: usize = 10_000;

/// One input file, local to the node or in an S3 bucket.
struct SourceFile {
    name: String,
    size: u64,
    location: Location,
}

enum Location {
    Local(PathBuf),
    Remote(OfflineStore, String),
}

impl SourceFile {
    async fn read(&self) -> Result<Bytes> {
        match &self.location {
            Location::Local(path) => {
                let data =
                    tokio::fs::read(path).await.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                Ok(Bytes::from(data))
            }
            Location::Remote(store, rel) => store.get(rel).await.map_err(|e| Error::from(e.into_core())),
        }
    }

    fn format(&self) -> Result<SourceFormat> {
        SourceFormat::of(&self.name)
            .ok_or_else(|| CoreError::InvalidArgument(format!("{}: not a .parquet or .csv file", self.name)).into())
    }
}

/// The files `path` names: one file, the Parquet/CSV files of a directory, or an s3:// URL
/// of an object or a prefix.
async fn list_sources(node: &Node, path: &str) -> Result<Vec<SourceFile>> {
    let mut sources = Vec::new();
    if let Some(rest) = path.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let store =
            OfflineStore::open(&format!("s3://{bucket}"), &node.config.s3).map_err(|e| Error::from(e.into_core()))?;
        let listed = if SourceFormat::of(key).is_some() {
            vec![(key.to_string(), 0)]
        } else {
            store.list(key).await.map_err(|e| Error::from(e.into_core()))?
        };
        for (rel, size) in listed.into_iter().filter(|(rel, _)| SourceFormat::of(rel).is_some()) {
            sources.push(SourceFile {
                name: format!("s3://{bucket}/{rel}"),
                size,
                location: Location::Remote(store.clone(), rel),
            });
        }
    } else {
        let meta = std::fs::metadata(path)
            .map_err(|e| CoreError::InvalidArgument(format!("{path}: {e} (the node reads local paths itself)")))?;
        let files = if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(format!("listing {path}"), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| SourceFormat::of(&p.display().to_string()).is_some())
                .collect();
            entries.sort();
            entries
        } else {
            vec![PathBuf::from(path)]
        };
        for file in files {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or_default();
            sources.push(SourceFile { name: file.display().to_string(), size, location: Location::Local(file) });
        }
    }
    if sources.is_empty() {
        return Err(CoreError::InvalidArgument(format!("no Parquet or CSV files at {path}")).into());
    }
    Ok(sources)
}

fn in_source(name: &str, e: quiver_offline::Error) -> Error {
    match e.into_core() {
        CoreError::Internal(m) => Error::Core(CoreError::Internal(m)),
        user => Error::Core(CoreError::InvalidArgument(format!("{name}: {user}"))),
    }
}

/// Content hash naming a source: the same bytes ingested twice are detected.
fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Ingests every file under `path` (a file, a directory, or an `s3://` prefix) into
/// `feature_set`, reporting progress per file.
pub async fn ingest_path(
    node: Arc<Node>,
    project: String,
    feature_set: String,
    path: String,
    progress: mpsc::Sender<IngestProgress>,
) -> Result<IngestProgress> {
    let (state, ()) = node
        .meta
        .current(|s| {
            let p = s.registry.project(&project)?;
            p.entity(&p.feature_set_by_ref(&feature_set)?.entity)?;
            Ok(())
        })
        .await?;
    let registry = state.registry.project(&project)?;
    let fs = registry.feature_set_by_ref(&feature_set)?.clone();
    let entity = registry.entity(&fs.entity)?.clone();
    let table = TableRef::new(&project, &fs);
    let sources = list_sources(&node, &path).await?;
    let mut report = IngestProgress {
        total_bytes: sources.iter().map(|s| s.size).sum(),
        files_total: sources.len() as u64,
        ..Default::default()
    };

    // Pass 1: check everything; nothing is written unless every source is good. A single
    // source is kept as read, so it is not read twice.
    let mut warnings = std::collections::BTreeSet::new();
    let mut kept = None;
    for source in &sources {
        let bytes = source.read().await?;
        let hash = content_hash(&bytes);
        let rows = read_source(bytes, source.format()?, &entity, &fs).map_err(|e| in_source(&source.name, e))?;
        rows.check_event_times(&entity, &fs, now_micros(), node.config.ingest.max_future())
            .map_err(|e| in_source(&source.name, e))?;
        warnings.extend(
            rows.ignored
                .iter()
                .map(|c| format!("{}: column '{c}' is not in {} and was ignored", source.name, fs.versioned_name())),
        );
        if sources.len() == 1 {
            kept = Some((hash, rows));
        }
    }
    report.warnings = warnings.into_iter().collect();

    // Pass 2: write, commit, upsert, one source at a time.
    for source in &sources {
        let (hash, rows) = match kept.take() {
            Some(read) => read,
            None => {
                let bytes = source.read().await?;
                let hash = content_hash(&bytes);
                (hash, read_source(bytes, source.format()?, &entity, &fs).map_err(|e| in_source(&source.name, e))?)
            }
        };
        let committed = write_and_commit(&node, &table, &entity, &fs, &rows, &hash).await?;
        crate::failpoint::hit("ingest-after-commit");
        if committed.is_none() {
            report.duplicates.push(source.name.clone());
        }
        report.files_written += committed.unwrap_or_default();
        // Upserting again after a duplicate is harmless (last writer wins) and repairs an
        // online store that missed it when an earlier ingest stopped after its commit.
        upsert_latest(&node, &table, &entity, &fs, &rows).await?;
        if committed.is_some() {
            report.rows += rows.rows as u64;
        }
        report.bytes += source.size;
        report.files_done += 1;
        let _ = progress.send(report.clone()).await;
    }
    report.done = true;
    Ok(report)
}

/// Writes the per-day files of one source and commits them; `None` when the source was
/// committed before (the files just written are removed again).
async fn write_and_commit(
    node: &Node,
    table: &TableRef,
    entity: &Entity,
    fs: &FeatureSet,
    rows: &SourceRows,
    hash: &str,
) -> Result<Option<u64>> {
    let source = format!("ingest:{hash}");
    if node.meta.has_source(table, &source)? {
        return Ok(None);
    }
    let first_seq = node.proposer.reserve_seq(rows.rows as u64).await?;
    let ts_index = entity.join_keys.len();
    let mut files = Vec::new();
    for (day, batch) in day_batches(rows, entity, fs, first_seq).map_err(|e| Error::from(e.into_core()))? {
        let name = format!("{}-{first_seq}", &hash[..16]);
        let path = data_path(&table.project, &table.set, table.version, day, &name);
        files.push(write_file(&node.offline, &path, &batch, ts_index).await.map_err(|e| Error::from(e.into_core()))?);
    }
    let count = files.len() as u64;
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let files = files.into_iter().map(|f| (table.clone(), f)).collect();
    if node.proposer.commit_files(files, (table.clone(), source), None).await? {
        return Ok(Some(count));
    }
    // Refused as a duplicate. If the files listed are these very ones, it was this
    // commit, retried after its answer was lost (a metadata leader died): it counts.
    // Otherwise the source came in before, and the files just written are removed
    // (never one the manifest lists).
    let state = node.meta.caught_up().await?;
    let listed = |p: &String| {
        state.manifest.get(table).is_some_and(|files| files.iter().any(|f| &f.path == p))
            || state.garbage.iter().any(|(g, _)| g == p)
    };
    if paths.iter().all(listed) {
        return Ok(Some(count));
    }
    for path in paths.iter().filter(|p| !listed(p)) {
        let _ = node.offline.delete(path).await;
    }
    Ok(None)
}

/// Proposes the latest row of each entity in `rows` to the online shards.
async fn upsert_latest(
    node: &Node,
    table: &TableRef,
    entity: &Entity,
    fs: &FeatureSet,
    rows: &SourceRows,
) -> Result<()> {
    let cols = columns(entity, fs);
    let keys = entity.join_keys.len();
    let ts = rows.columns[keys].as_ref();
    let mut latest: HashMap<Vec<u8>, (i64, usize)> = HashMap::new();
    let ts = ts.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    for row in 0..rows.rows {
        let mut key = Vec::with_capacity(16);
        for (c, (_, ty, _)) in cols.iter().enumerate().take(keys) {
            encode_key_cell(&mut key, rows.columns[c].as_ref(), row, *ty);
        }
        let event_ts = ts.value(row);
        // Later rows win ties, as later writes do online.
        let entry = latest.entry(key).or_insert((event_ts, row));
        if (event_ts, row) >= *entry {
            *entry = (event_ts, row);
        }
    }
    let mut winners: Vec<usize> = latest.into_values().map(|(_, row)| row).collect();
    winners.sort_unstable();
    for chunk in winners.chunks(UPSERT_CHUNK) {
        let batch: Vec<ValidatedRow> = chunk
            .iter()
            .map(|&row| {
                let value = |c: usize| array_value(rows.columns[c].as_ref(), row, cols[c].1);
                let event_ts = match value(keys) {
                    quiver_core::Value::Timestamp(t) => t,
                    _ => 0,
                };
                ValidatedRow {
                    key: (0..keys).map(value).collect(),
                    event_ts,
                    values: (keys + 1..cols.len()).map(value).collect(),
                }
            })
            .collect();
        node.proposer.put_rows(table, batch, false, None).await?;
    }
    Ok(())
}
