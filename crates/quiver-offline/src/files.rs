//! Parquet files of the offline store: where they go, how they are written, how they are
//! read back, and the manifest entry that makes one visible.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use parquet::file::statistics::Statistics;
use quiver_core::time::{day_of, format_day};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::cpu;
use crate::schema::SEQ_COLUMN;
use crate::store::{OfflineStore, open_local, read_local};

/// A committed Parquet file: what the manifest in the meta group lists. A file on the
/// store that no manifest lists is invisible (an ingest that failed or has not committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the offline store's location.
    pub path: String,
    /// Days since the Unix epoch of every event in the file.
    pub day: i64,
    pub rows: u64,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub min_seq: u64,
    pub max_seq: u64,
}

impl DataFile {
    /// What users are shown of a committed file.
    pub fn info(&self) -> quiver_core::offline::DataFile {
        quiver_core::offline::DataFile {
            path: self.path.clone(),
            day: self.day,
            rows: self.rows,
            bytes: self.bytes,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        }
    }
}

/// `project/set/v{version}/{yyyy-mm-dd}/{name}.parquet`.
pub fn data_path(project: &str, set: &str, version: u32, day: i64, name: &str) -> String {
    let date = format_day(day);
    format!("{project}/{set}/v{version}/{date}/{name}.parquet")
}

/// Rows per row group of the files Quiver writes.
pub const ROWS_PER_GROUP: usize = 128 * 1024;

pub(crate) fn writer_properties(rows_per_group: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .build()
}

/// Footer key of a file sorted by entity-key hash (`sorted`): per row group, its first and
/// last hash (`lo-hi` in hex, comma-separated).
pub(crate) const KEY_HASHES: &str = "quiver.key_hashes";

/// Writes any batch to `path` as Parquet (multipart upload on S3); returns the bytes written.
pub async fn write_batch(store: &OfflineStore, path: &str, batch: &RecordBatch) -> Result<u64> {
    write_with(store, path, batch, ROWS_PER_GROUP, |_| None).await
}

/// Writes `batch` in row groups of `rows_per_group`, then adds to the footer what `footer`
/// makes of the row groups written; returns the bytes written.
pub(crate) async fn write_with(
    store: &OfflineStore,
    path: &str,
    batch: &RecordBatch,
    rows_per_group: usize,
    footer: impl FnOnce(&[parquet::file::metadata::RowGroupMetaData]) -> Option<KeyValue>,
) -> Result<u64> {
    let writer = BufWriter::new(store.object_store(), store.path(path));
    let mut parquet = AsyncArrowWriter::try_new(writer, batch.schema(), Some(writer_properties(rows_per_group)))?;
    parquet.write(batch).await?;
    parquet.flush().await?;
    if let Some(entry) = footer(parquet.flushed_row_groups()) {
        parquet.append_key_value_metadata(entry);
    }
    // `finish` writes the footer and completes the upload; the count then covers the file.
    parquet.finish().await?;
    Ok(parquet.bytes_written() as u64)
}

/// Writes one batch (in file schema, sequence column included) to `path`; returns its
/// manifest entry. The batch's timestamp column is `ts_index`.
pub async fn write_file(store: &OfflineStore, path: &str, batch: &RecordBatch, ts_index: usize) -> Result<DataFile> {
    let bytes = write_batch(store, path, batch).await?;
    Ok(data_file(path, batch, ts_index, bytes))
}

/// The manifest entry of `batch`, written to `path` in `bytes`.
pub(crate) fn data_file(path: &str, batch: &RecordBatch, ts_index: usize, bytes: u64) -> DataFile {
    let ts = batch.column(ts_index).as_primitive::<TimestampMicrosecondType>().values();
    let (min_ts, max_ts) = (ts.iter().min().copied().unwrap_or_default(), ts.iter().max().copied().unwrap_or_default());
    let seq = batch.column_by_name(SEQ_COLUMN).map(|c| c.as_primitive::<UInt64Type>().values().clone());
    let min_seq = seq.as_ref().and_then(|s| s.iter().min().copied()).unwrap_or_default();
    let max_seq = seq.as_ref().and_then(|s| s.iter().max().copied()).unwrap_or_default();
    DataFile {
        path: path.to_string(),
        day: day_of(min_ts),
        rows: batch.num_rows() as u64,
        bytes,
        min_ts,
        max_ts,
        min_seq,
        max_seq,
    }
}

/// Reads Parquet bytes into batches, keeping only the named columns (all when `None`).
pub fn read_parquet(bytes: Bytes, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    catch_damage(|| {
        let builder = select(ParquetRecordBatchReaderBuilder::try_new(bytes)?, columns, None);
        Ok(builder.build()?.collect::<Result<Vec<_>, _>>()?)
    })
}

/// Runs a read of a client's Parquet file. The parquet and arrow readers panic on some
/// damaged files (fuzzing found negative column offsets in the footer, and validity bitmaps
/// shorter than their columns): such a file gets an error like any other unreadable one,
/// rather than ending the request.
pub(crate) fn catch_damage<T>(read: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|_| {
        Err(parquet::errors::ParquetError::General("the file is damaged: the Parquet reader failed on it".into())
            .into())
    })
}

/// Narrows a reader to the named columns and to the row groups `window` can match.
fn select<T>(
    builder: ArrowReaderBuilder<T>,
    columns: Option<&[&str]>,
    window: Option<&TimeWindow>,
) -> ArrowReaderBuilder<T> {
    let mut builder = builder.with_batch_size(64 * 1024);
    if let Some(names) = columns {
        let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some(w) = window {
        let groups = row_groups_in(builder.metadata(), w);
        builder = builder.with_row_groups(groups);
    }
    builder
}

/// Event times a reader needs: row groups whose `column` statistics fall outside `[lo, hi]`
/// are skipped.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    pub column: String,
    pub lo: i64,
    pub hi: i64,
    /// Only rows whose entity-key hash is in this range (inclusive) are needed: row groups
    /// of a file sorted by key hash (`sorted`) that hold none are skipped too.
    pub key_hashes: Option<(u64, u64)>,
}

/// Reads ranges of one object — the footer, then the row groups and columns a query needs —
/// rather than the whole file.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store.get_range(&self.path, range).await.map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let reader = ParquetMetaDataReader::new().with_prefetch_hint(Some(64 * 1024));
            Ok(Arc::new(reader.load_and_finish(&mut *self, size).await?))
        })
    }
}

/// Files up to this size are fetched whole, with one request: the footer and the column
/// chunks of a small file would otherwise cost a request each (a GET each on S3, a read
/// each on a local disk). Larger files are read by ranges, only what a query needs.
const WHOLE_FILE_BYTES: u64 = 16 << 20;

/// Reads a committed file: only `columns` (all when `None`), and with a `window`, only the
/// row groups that can hold events in it. The same window always selects the same rows, so
/// row positions agree between two reads of a file. Decoded on the `cpu` pool, but for a
/// large file of a remote store, decoded as its ranges arrive.
pub async fn read_file(
    store: &OfflineStore,
    file: &DataFile,
    columns: Option<&[&str]>,
    window: Option<&TimeWindow>,
) -> Result<Vec<RecordBatch>> {
    let Some(fetched) = fetch_whole(store, file).await? else {
        return read_ranges(store, file, columns, window).await;
    };
    let names: Option<Vec<String>> = columns.map(|c| c.iter().map(|n| n.to_string()).collect());
    let (file, window) = (file.clone(), window.cloned());
    cpu::run("decoding a file", move || {
        let names: Option<Vec<&str>> = names.as_ref().map(|n| n.iter().map(String::as_str).collect());
        fetched.batches(&file, names.as_deref(), window.as_ref())
    })
    .await?
}

/// Decodes a file's bytes, or a file read by ranges.
fn decode<T: ChunkReader + 'static>(
    input: T,
    columns: Option<&[&str]>,
    window: Option<&TimeWindow>,
) -> Result<Vec<RecordBatch>> {
    let builder = select(ParquetRecordBatchReaderBuilder::try_new(input)?, columns, window);
    Ok(builder.build()?.collect::<Result<Vec<_>, _>>()?)
}

/// Decodes a local store's file of `bytes` on the calling thread: read whole when small,
/// else by ranges from the file itself, only what the columns and the window select.
fn decode_local(
    path: &std::path::Path,
    bytes: u64,
    columns: Option<&[&str]>,
    window: Option<&TimeWindow>,
) -> Result<Vec<RecordBatch>> {
    match bytes <= WHOLE_FILE_BYTES {
        true => decode(read_local(path)?, columns, window),
        false => decode(open_local(path)?, columns, window),
    }
}

async fn read_ranges(
    store: &OfflineStore,
    file: &DataFile,
    columns: Option<&[&str]>,
    window: Option<&TimeWindow>,
) -> Result<Vec<RecordBatch>> {
    let reader = ObjectReader { store: store.object_store(), path: store.path(&file.path), size: file.bytes };
    let builder = select(ParquetRecordBatchStreamBuilder::new(reader).await?, columns, window);
    Ok(builder.build()?.try_collect().await?)
}

/// Reads `files` (the named columns, the row groups `window` selects) and runs `then` on
/// each one's batches, as many at once as there are cores; yields each result with the
/// file's position in `files` as soon as it is ready (in order, a core would wait on a
/// slower file before starting the next). `then` gets that position too.
pub fn read_files<T, F>(
    store: &OfflineStore,
    files: &[DataFile],
    columns: Vec<String>,
    window: &TimeWindow,
    then: F,
) -> impl Stream<Item = Result<(usize, T)>> + use<T, F>
where
    T: Send + 'static,
    F: Fn(usize, &DataFile, Vec<RecordBatch>) -> Result<T> + Send + Sync + 'static,
{
    let groups = (0..files.len()).map(|i| i..i + 1).collect();
    // Groups of one file: a group's position is its file's.
    read_groups(store, files, groups, columns, window, move |read| {
        let [one] = <[FileBatches; 1]>::try_from(read)
            .map_err(|_| quiver_core::Error::Internal("a group of one file had another count".into()))?;
        then(one.at, &one.file, one.batches)
    })
}

/// A file's batches, as `read_groups` gives them: its position in the files read, the file.
pub struct FileBatches {
    pub at: usize,
    pub file: DataFile,
    pub batches: Vec<RecordBatch>,
}

/// What a group's task has of a file before decoding: a local file to read where it is
/// decoded, the whole file's bytes, or the batches of a large file read by ranges.
enum Fetched {
    Local(std::path::PathBuf),
    Whole(Bytes),
    Decoded(Vec<RecordBatch>),
}

impl Fetched {
    /// The file's batches, decoded here unless they were read by ranges: CPU work, for the
    /// `cpu` pool.
    fn batches(
        self,
        file: &DataFile,
        columns: Option<&[&str]>,
        window: Option<&TimeWindow>,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Fetched::Local(path) => decode_local(&path, file.bytes, columns, window),
            Fetched::Whole(bytes) => decode(bytes, columns, window),
            Fetched::Decoded(batches) => Ok(batches),
        }
    }
}

/// As `read_files`, for `groups` of `files` (ranges of positions) read by one task each:
/// `then` gets a group's files together, in order, and its result is yielded with the
/// group's position in `groups`.
pub fn read_groups<T, F>(
    store: &OfflineStore,
    files: &[DataFile],
    groups: Vec<Range<usize>>,
    columns: Vec<String>,
    window: &TimeWindow,
    then: F,
) -> impl Stream<Item = Result<(usize, T)>> + use<T, F>
where
    T: Send + 'static,
    F: Fn(Vec<FileBatches>) -> Result<T> + Send + Sync + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Decoding takes a core (`cpu`, a thread per core): as many groups as that are fetched
    // ahead, so that the cores seldom wait on a store's latency.
    let (columns, then) = (Arc::new(columns), Arc::new(then));
    let reads: Vec<_> = (groups.into_iter().enumerate())
        .map(|(g, positions)| {
            let group: Vec<(usize, DataFile)> = positions.map(|at| (at, files[at].clone())).collect();
            let (store, window) = (store.clone(), window.clone());
            let (columns, then) = (columns.clone(), then.clone());
            async move {
                let fetches = group.into_iter().map(|(at, file)| {
                    let (store, columns, window) = (store.clone(), columns.clone(), window.clone());
                    async move { Ok::<_, crate::Error>((at, fetch(&store, &file, &columns, &window).await?, file)) }
                });
                let fetched = futures::future::try_join_all(fetches).await?;
                // Decoding and `then` are CPU work: off the runtime's workers, so that online
                // reads on this node's tasks stay fast.
                let work = move || {
                    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
                    let read = (fetched.into_iter())
                        .map(|(at, got, file)| {
                            let batches = got.batches(&file, Some(&names), Some(&window))?;
                            Ok(FileBatches { at, file, batches })
                        })
                        .collect::<Result<_>>()?;
                    then(read)
                };
                Ok((g, cpu::run("reading files", work).await??))
            }
        })
        .collect();
    futures::stream::iter(reads).buffer_unordered(2 * cores)
}

/// A local file to read where it is decoded; else a file's bytes when small, else its
/// batches read by ranges, decoding as they come on a task of its own.
async fn fetch(
    store: &OfflineStore,
    file: &DataFile,
    columns: &Arc<Vec<String>>,
    window: &TimeWindow,
) -> Result<Fetched> {
    if let Some(fetched) = fetch_whole(store, file).await? {
        return Ok(fetched);
    }
    let (store, file, columns, window) = (store.clone(), file.clone(), columns.clone(), window.clone());
    let task = tokio::spawn(async move {
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        read_ranges(&store, &file, Some(&names), Some(&window)).await
    });
    Ok(Fetched::Decoded(task.await.map_err(joined)??))
}

/// A file to decode whole: a local one, read where it is decoded, or a small one's bytes.
/// `None` for a large file of a remote store, which is read by ranges.
async fn fetch_whole(store: &OfflineStore, file: &DataFile) -> Result<Option<Fetched>> {
    if let Some(path) = store.local_file(&file.path) {
        return Ok(Some(Fetched::Local(path)));
    }
    if file.bytes <= WHOLE_FILE_BYTES {
        return Ok(Some(Fetched::Whole(store.get(&file.path).await?)));
    }
    Ok(None)
}

fn joined(e: tokio::task::JoinError) -> quiver_core::Error {
    quiver_core::Error::Internal(format!("reading a file: {e}"))
}

fn row_groups_in(meta: &ParquetMetaData, w: &TimeWindow) -> Vec<usize> {
    let column = meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == w.column);
    let hashes = w.key_hashes.and_then(|range| Some((range, key_hash_bounds(meta)?)));
    (0..meta.num_row_groups())
        .filter(|&i| {
            let stats = column.and_then(|c| meta.row_group(i).column(c).statistics());
            let in_time = match stats {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(min), Some(max)) => *max >= w.lo && *min <= w.hi,
                    _ => true,
                },
                _ => true,
            };
            let in_keys = hashes.as_ref().is_none_or(|((lo, hi), bounds)| bounds[i].1 >= *lo && bounds[i].0 <= *hi);
            in_time && in_keys
        })
        .collect()
}

/// Each row group's first and last entity-key hash, when the file was written sorted by
/// them (one pair per row group, else none).
fn key_hash_bounds(meta: &ParquetMetaData) -> Option<Vec<(u64, u64)>> {
    let entries = meta.file_metadata().key_value_metadata()?;
    let text = entries.iter().find(|kv| kv.key == KEY_HASHES)?.value.as_deref()?;
    let bounds: Vec<(u64, u64)> = text
        .split(',')
        .map(|pair| {
            let (lo, hi) = pair.split_once('-')?;
            Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?))
        })
        .collect::<Option<_>>()?;
    (bounds.len() == meta.num_row_groups()).then_some(bounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, TimestampMicrosecondArray, UInt64Array};
    use quiver_core::time::DAY_MICROS;

    /// Every way of reading a file (whole, and by ranges for large files; from a local
    /// directory, both ways) selects the same columns and row groups.
    #[tokio::test]
    async fn whole_and_ranged_reads_agree() {
        let store = OfflineStore::open("memory://", &Default::default()).unwrap();
        // Three row groups of 128 Ki rows, one day apart.
        let rows = 3 * 128 * 1024;
        let ts: Vec<i64> = (0..rows as i64).map(|i| (i / (128 * 1024)) * DAY_MICROS + i).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..rows as i64)) as _),
            ("ts", Arc::new(TimestampMicrosecondArray::from(ts)) as _),
            (SEQ_COLUMN, Arc::new(UInt64Array::from_iter_values(0..rows as u64)) as _),
        ])
        .unwrap();
        let file = write_file(&store, "t/day.parquet", &batch, 1).await.unwrap();
        let window = TimeWindow { column: "ts".into(), lo: DAY_MICROS, hi: DAY_MICROS + rows as i64, key_hashes: None };
        let dir = tempfile::tempdir().unwrap();
        let local = OfflineStore::open(&dir.path().display().to_string(), &Default::default()).unwrap();
        let local_file = write_file(&local, "t/day.parquet", &batch, 1).await.unwrap();
        let path = local.local_file(&local_file.path).unwrap();
        for (columns, window) in [(None, None), (Some(&["id"][..]), Some(&window))] {
            let whole = read_file(&store, &file, columns, window).await.unwrap();
            let ranged = read_ranges(&store, &file, columns, window).await.unwrap();
            assert_eq!(whole, ranged);
            for size in [0, WHOLE_FILE_BYTES + 1] {
                let here = decode_local(&path, size, columns, window).unwrap();
                assert_eq!(whole, here, "a local file read as one of {size} bytes");
            }
            let read: usize = whole.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(read, if window.is_some() { 128 * 1024 } else { rows }, "the window keeps one row group");
        }
    }
}
