//! Batch ingestion, in two passes. Pass 1 reads every source once, a chunk at a time
//! (`SourceChunks`: Parquet by batches of its row groups, CSV by lines), checks each chunk,
//! reserves its sequence numbers and stages its rows in per-day files on local disk
//! (`Staged`), keeping the latest row of each entity over all sources; a bad row anywhere
//! rejects the request and changes nothing. Pass 2, per source: upload the staged files and
//! commit them to the manifest under the source's content hash (a second ingest of the same
//! content adds nothing); then the latest rows are upserted into the online shards. Memory is
//! a chunk, the row groups being filled and a row per entity, whatever the size of the files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use quiver_core::Error as CoreError;
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::ValidatedRow;
use quiver_core::table::TableRef;
use quiver_offline::convert::{array_value, encode_key_cell};
use quiver_offline::files::{DataFile, data_path};

use super::source_policy::SourcePolicy;
use quiver_offline::ingest::{SourceChunks, SourceData, SourceFormat, SourceRows, day_batches};
use quiver_offline::schema::{columns, file_schema};
use quiver_offline::spill::INGEST_PREFIX;
use quiver_offline::staging::{Sealed, Staged};
use quiver_offline::store::OfflineStore;
use quiver_proto::v1::IngestProgress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use xxhash_rust::xxh3::Xxh3;

use crate::node::Node;
use quiver_core::time::now_micros;
use quiver_store::command::MetaCommand;
use quiver_store::error::{Error, Result};

/// Rows per online upsert command.
const UPSERT_CHUNK: usize = 10_000;
/// Row-group bytes a source's staged files hold in memory at most.
const STAGING_BUFFER: usize = 256 << 20;
/// Bytes read at a time to hash or download a source.
const BLOCK: usize = 8 << 20;

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

/// A source on this node's disk (a download of a remote one lives as long as this), and the
/// content hash that names it.
struct LocalSource {
    path: PathBuf,
    hash: String,
    _download: Option<tempfile::TempPath>,
}

impl SourceFile {
    /// The source on local disk, hashed as it is read (a remote one is downloaded into
    /// `scratch` on the way).
    async fn fetch(&self, scratch: &std::path::Path) -> Result<LocalSource> {
        let mut hasher = Xxh3::new();
        match &self.location {
            Location::Local(path) => {
                let mut file = tokio::fs::File::open(path).await.map_err(|e| Error::io(reading(path), e))?;
                let mut block = vec![0u8; BLOCK];
                loop {
                    let read = file.read(&mut block).await.map_err(|e| Error::io(reading(path), e))?;
                    if read == 0 {
                        break;
                    }
                    hasher.update(&block[..read]);
                }
                Ok(LocalSource { path: path.clone(), hash: content_hash(&hasher), _download: None })
            }
            Location::Remote(store, rel) => {
                std::fs::create_dir_all(scratch)
                    .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
                let download = tempfile::Builder::new()
                    .prefix(&format!("{INGEST_PREFIX}source-"))
                    .tempfile_in(scratch)
                    .map_err(|e| Error::io(format!("creating a file in {}", scratch.display()), e))?
                    .into_temp_path();
                let path = download.to_path_buf();
                let mut file = tokio::fs::File::create(&path).await.map_err(|e| Error::io(reading(&path), e))?;
                let mut stream = store.object_store().get(&store.path(rel)).await.map_err(stored)?.into_stream();
                while let Some(block) = stream.next().await {
                    let block = block.map_err(stored)?;
                    hasher.update(&block);
                    file.write_all(&block).await.map_err(|e| Error::io(reading(&path), e))?;
                }
                file.flush().await.map_err(|e| Error::io(reading(&path), e))?;
                Ok(LocalSource { path, hash: content_hash(&hasher), _download: Some(download) })
            }
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
    let backups = node.meta.latest().backups.iter().map(|b| b.location.clone()).collect::<Vec<_>>();
    let policy = SourcePolicy::new(&node.config, backups);
    if let Some(rest) = path.strip_prefix("s3://") {
        policy.s3(path)?;
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
        let path = &policy.local(path)?.display().to_string();
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
            policy.file(&file)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or_default();
            sources.push(SourceFile { name: file.display().to_string(), size, location: Location::Local(file) });
        }
    }
    if sources.is_empty() {
        return Err(CoreError::InvalidArgument(format!("no Parquet or CSV files at {path}")).into());
    }
    Ok(sources)
}

fn reading(path: &std::path::Path) -> String {
    format!("reading {}", path.display())
}

fn stored(e: object_store::Error) -> Error {
    Error::from(quiver_offline::Error::from(e).into_core())
}

fn in_source(name: &str, e: quiver_offline::Error) -> Error {
    match e.into_core() {
        CoreError::Internal(m) => Error::Core(CoreError::Internal(m)),
        user => Error::Core(CoreError::InvalidArgument(format!("{name}: {user}"))),
    }
}

/// Content hash naming a source: the same bytes ingested twice are detected.
fn content_hash(hasher: &Xxh3) -> String {
    format!("{:032x}", hasher.digest128())
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

    // Pass 1: read, check and stage every source; nothing reaches the store or the online
    // shards unless every one is good.
    let scratch = node.config.spill_dir();
    let mut warnings = std::collections::BTreeSet::new();
    let mut read = Vec::with_capacity(sources.len());
    let mut latest = Latest::new();
    for (source_no, source) in sources.iter().enumerate() {
        let local = source.fetch(&scratch).await?;
        let format = source.format()?;
        // A source ingested before is read again only for its latest rows (see below).
        let stage = !node.meta.has_source(&table, &format!("ingest:{}", local.hash))?;
        let hash = local.hash.clone();
        let (node, name, entity, set, scratch) =
            (node.clone(), source.name.clone(), entity.clone(), fs.clone(), scratch.clone());
        let runtime = tokio::runtime::Handle::current();
        let (mut checked, progress) = (report.clone(), progress.clone());
        let source_read = tokio::task::spawn_blocking(move || {
            let staged = stage
                .then(|| Staged::new(&scratch, file_schema(&entity, &set), entity.join_keys.len(), STAGING_BUFFER));
            let staged = staged.transpose().map_err(|e| in_source(&name, e))?;
            let mut chunk_read = |rows: usize| {
                checked.rows_checked += rows as u64;
                let _ = progress.blocking_send(checked.clone());
            };
            let source = ((source_no, name.as_str()), &local);
            read_source(&node, &runtime, source, format, (&entity, &set), staged, latest, &mut chunk_read)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("reading {}: {e}", source.name)))??;
        report.rows_checked += source_read.rows;
        warnings.extend(
            source_read
                .ignored
                .iter()
                .map(|c| format!("{}: column '{c}' is not in {} and was ignored", source.name, fs.versioned_name())),
        );
        latest = source_read.latest;
        read.push((hash, source_read.staged));
    }
    report.warnings = warnings.into_iter().collect();

    // Pass 2: upload every new source's files; then publish them — commit one source at a
    // time, then upsert — in one window no backup cuts into, so that a backup holds the
    // ingest whole or not at all.
    let mut uploaded = Vec::with_capacity(read.len());
    for (hash, staged) in read {
        let rows = staged.as_ref().map_or(0, Sealed::rows);
        let files = match staged {
            Some(staged) => Some(upload(&node, &table, staged, &hash).await?),
            None => None,
        };
        uploaded.push((hash, rows, files));
    }
    let id = format!("{}-{}", node.id, now_micros());
    begin_publish(&node, &id).await?;
    let published = async {
        for (source, (hash, rows, files)) in sources.iter().zip(uploaded) {
            let committed = match files {
                Some(files) => commit(&node, &table, files, &hash).await?,
                None => None,
            };
            crate::failpoint::hit("ingest-after-commit");
            if committed.is_none() {
                report.duplicates.push(source.name.clone());
            }
            report.files_written += committed.unwrap_or_default();
            if committed.is_some() {
                report.rows += rows;
            }
            report.bytes += source.size;
            report.files_done += 1;
            let _ = progress.send(report.clone()).await;
        }
        crate::failpoint::delay("ingest-publish").await;
        // Duplicates' rows too: upserting again is harmless (last writer wins), and repairs
        // an online store that missed them when an earlier ingest stopped after its commit.
        upsert_latest(&node, &table, latest, &id).await
    }
    .await;
    // A lease left behind would hold backups until it lapses.
    if let Err(e) = node.proposer.write_meta(MetaCommand::EndPublish { id: id.clone() }).await {
        tracing::warn!(ingest = id, "ending its publishing window: {e}");
    }
    published?;
    report.done = true;
    Ok(report)
}

/// How long an ingest's publishing window lasts unless extended (each upsert chunk does).
const PUBLISH_LEASE_MS: u64 = 600_000;
/// How long an ingest waits for a backup's cut to end before it publishes.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens (or extends) ingest `id`'s publishing window, waiting out a backup's cut.
async fn begin_publish(node: &Node, id: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + PUBLISH_WAIT;
    loop {
        let begin = MetaCommand::BeginPublish { id: id.to_string(), lease_ms: PUBLISH_LEASE_MS };
        match node.proposer.write_meta(begin).await {
            Err(Error::Core(CoreError::Busy { retry_after_ms, .. })) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms)).await;
            }
            other => return other.map(drop),
        }
    }
}

/// The latest row of each entity of a request's sources, by encoded key: (event time,
/// (source, row in the source), the row). Later rows win ties, as later writes do online.
type Latest = HashMap<Vec<u8>, (i64, (usize, usize), ValidatedRow)>;

/// What pass 1 made of a source.
struct SourceRead {
    /// Its files, unless it was ingested before.
    staged: Option<Sealed>,
    latest: Latest,
    rows: u64,
    /// Input columns the feature set does not declare.
    ignored: Vec<String>,
}

/// Reads one source (its position and name, and where it is) a chunk at a time: checks each
/// chunk, folds its rows into `latest`, and with `staged`, reserves its sequence numbers and
/// stages its rows by event day, closing the files at the end; tells `chunk_read` each
/// chunk's rows. Runs on the blocking pool; `runtime` makes the reservations.
#[allow(clippy::too_many_arguments)]
fn read_source(
    node: &Node,
    runtime: &tokio::runtime::Handle,
    ((source_no, name), local): ((usize, &str), &LocalSource),
    format: SourceFormat,
    (entity, fs): (&Entity, &FeatureSet),
    mut staged: Option<Staged>,
    mut latest: Latest,
    chunk_read: &mut dyn FnMut(usize),
) -> Result<SourceRead> {
    let file = std::fs::File::open(&local.path).map_err(|e| Error::io(reading(&local.path), e))?;
    let bad = |e| in_source(name, e);
    let mut chunks = SourceChunks::open(SourceData::File(file), format, entity, fs).map_err(bad)?;
    let mut rows = 0u64;
    while let Some(chunk) = chunks.next_chunk().map_err(bad)? {
        chunk.check_event_times(entity, fs, now_micros(), node.config.ingest.max_future()).map_err(bad)?;
        if let Some(staged) = staged.as_mut() {
            let first_seq = runtime.block_on(node.proposer.reserve_seq(chunk.rows as u64))?;
            for (day, batch) in day_batches(&chunk, entity, fs, first_seq).map_err(bad)? {
                staged.append(day, &batch).map_err(bad)?;
            }
        }
        keep_latest(&mut latest, source_no, &chunk, entity, fs);
        rows += chunk.rows as u64;
        chunk_read(chunk.rows);
    }
    // Closed now, so a staged source holds no memory while the next ones are read.
    let staged = staged.map(Staged::seal).transpose().map_err(bad)?;
    Ok(SourceRead { staged, latest, rows, ignored: chunks.ignored().to_vec() })
}

/// Uploads a source's staged files and commits them; `None` when the source was committed
/// before (the files just uploaded are removed again).
/// Writes a staged source's files to the offline store, not yet listed anywhere.
async fn upload(node: &Node, table: &TableRef, staged: Sealed, hash: &str) -> Result<Vec<DataFile>> {
    let name = format!("{}-{}", &hash[..16], now_micros());
    let path_of = |day| data_path(&table.project, &table.set, table.version, day, &name);
    staged.upload(&node.offline, path_of).await.map_err(|e| Error::from(e.into_core()))
}

/// Commits a source's uploaded files; how many, or `None` when the source came in before.
async fn commit(node: &Node, table: &TableRef, files: Vec<DataFile>, hash: &str) -> Result<Option<u64>> {
    let source = format!("ingest:{hash}");
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

/// Folds a chunk's rows into `latest`: the chunk's own latest row per entity first, so a
/// row is built only for an entity whose value the chunk changes.
fn keep_latest(latest: &mut Latest, source_no: usize, chunk: &SourceRows, entity: &Entity, fs: &FeatureSet) {
    let cols = columns(entity, fs);
    let keys = entity.join_keys.len();
    let ts = chunk.columns[keys].as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    let mut in_chunk: HashMap<Vec<u8>, (i64, usize)> = HashMap::new();
    for row in 0..chunk.rows {
        let mut key = Vec::with_capacity(16);
        for (c, (_, ty, _)) in cols.iter().enumerate().take(keys) {
            encode_key_cell(&mut key, chunk.columns[c].as_ref(), row, *ty);
        }
        let entry = in_chunk.entry(key).or_insert((ts.value(row), row));
        if (ts.value(row), row) >= *entry {
            *entry = (ts.value(row), row);
        }
    }
    for (key, (event_ts, row)) in in_chunk {
        let at = (source_no, chunk.first_row + row);
        if latest.get(&key).is_some_and(|(t, r, _)| (*t, *r) > (event_ts, at)) {
            continue;
        }
        let value = |c: usize| array_value(chunk.columns[c].as_ref(), row, cols[c].1);
        let stored = ValidatedRow {
            key: (0..keys).map(value).collect(),
            event_ts,
            values: (keys + 1..cols.len()).map(value).collect(),
        };
        latest.insert(key, (event_ts, at, stored));
    }
}

/// Proposes the latest row of each entity to the online shards, extending ingest `id`'s
/// publishing window before each chunk.
async fn upsert_latest(node: &Node, table: &TableRef, latest: Latest, id: &str) -> Result<()> {
    let mut rows: Vec<((usize, usize), ValidatedRow)> = latest.into_values().map(|(_, at, row)| (at, row)).collect();
    rows.sort_unstable_by_key(|(at, _)| *at);
    let mut rows = rows.into_iter().map(|(_, row)| row).peekable();
    while rows.peek().is_some() {
        begin_publish(node, id).await?;
        let batch: Vec<ValidatedRow> = rows.by_ref().take(UPSERT_CHUNK).collect();
        node.proposer.put_rows(table, batch, false, None).await?;
    }
    Ok(())
}
