//! An ingest's per-day Parquet files, written to local disk as a source's chunks arrive
//! (`Staged`), closed once the source is read (`Sealed`), and uploaded to the offline store
//! once every source of the request was read and checked. What an ingest holds in memory is
//! a chunk and the row groups being filled (at most `buffer` bytes of writer memory),
//! whatever the size of its sources; a failed ingest leaves nothing in the store, and its
//! staging directory goes with it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_schema::SchemaRef;
use object_store::{ObjectStoreExt, WriteMultipart};
use parquet::arrow::ArrowWriter;
use tokio::io::AsyncReadExt;

use crate::Result;
use crate::files::{DataFile, ROWS_PER_GROUP, writer_properties};
use crate::schema::SEQ_COLUMN;
use crate::spill::{INGEST_PREFIX, spill_err};
use crate::store::OfflineStore;

/// Bytes read from a staged file per part of its upload.
const UPLOAD_PART: usize = 8 << 20;

/// One event day's file being written.
struct Day {
    writer: ArrowWriter<File>,
    file: DayFile,
}

/// What a day's file holds.
struct DayFile {
    path: PathBuf,
    rows: u64,
    ts: (i64, i64),
    seq: (u64, u64),
}

/// Per-day files of one source, on local disk until `upload`.
pub struct Staged {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    ts_index: usize,
    days: BTreeMap<i64, Day>,
    buffer: usize,
}

impl Staged {
    /// Stages files of `schema` (event time at `ts_index`, sequence column included) in a
    /// directory of their own under `dir`; row groups being filled take at most `buffer`
    /// bytes in all.
    pub fn new(dir: &Path, schema: SchemaRef, ts_index: usize, buffer: usize) -> Result<Staged> {
        std::fs::create_dir_all(dir).map_err(spill_err(dir))?;
        let staging = tempfile::Builder::new().prefix(INGEST_PREFIX).tempdir_in(dir).map_err(spill_err(dir))?;
        Ok(Staged { dir: staging, schema, ts_index, days: BTreeMap::new(), buffer })
    }

    /// Appends rows of event day `day` (in the staged schema).
    pub fn append(&mut self, day: i64, batch: &RecordBatch) -> Result<()> {
        let entry = match self.days.entry(day) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let path = self.dir.path().join(format!("{day}.parquet"));
                let file = File::create(&path).map_err(spill_err(&path))?;
                let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(writer_properties(ROWS_PER_GROUP)))?;
                let file = DayFile { path, rows: 0, ts: (i64::MAX, i64::MIN), seq: (u64::MAX, 0) };
                e.insert(Day { writer, file })
            }
        };
        entry.writer.write(batch)?;
        let file = &mut entry.file;
        file.rows += batch.num_rows() as u64;
        let ts = batch.column(self.ts_index).as_primitive::<TimestampMicrosecondType>().values();
        for t in ts.iter() {
            file.ts = (file.ts.0.min(*t), file.ts.1.max(*t));
        }
        if let Some(seq) = batch.column_by_name(SEQ_COLUMN) {
            for s in seq.as_primitive::<UInt64Type>().values().iter() {
                file.seq = (file.seq.0.min(*s), file.seq.1.max(*s));
            }
        }
        // Row groups fill in memory: past the buffer, the largest is written out.
        while self.days.values().map(|d| d.writer.memory_size()).sum::<usize>() > self.buffer {
            let Some(largest) = self.days.values_mut().max_by_key(|d| d.writer.memory_size()) else { break };
            largest.writer.flush()?;
        }
        Ok(())
    }

    /// Closes every day's file: what stays is on disk.
    pub fn seal(self) -> Result<Sealed> {
        let mut days = Vec::with_capacity(self.days.len());
        for (day, staged) in self.days {
            staged.writer.close()?;
            days.push((day, staged.file));
        }
        Ok(Sealed { _dir: self.dir, days })
    }
}

/// A source's per-day files, closed, on local disk until `upload`.
pub struct Sealed {
    /// Removed with the files when this is dropped.
    _dir: tempfile::TempDir,
    days: Vec<(i64, DayFile)>,
}

impl Sealed {
    pub fn rows(&self) -> u64 {
        self.days.iter().map(|(_, f)| f.rows).sum()
    }

    /// Uploads every day's file to `store` at `path_of(day)`, one at a time; answers their
    /// manifest entries.
    pub async fn upload(self, store: &OfflineStore, path_of: impl Fn(i64) -> String) -> Result<Vec<DataFile>> {
        let mut files = Vec::with_capacity(self.days.len());
        for (day, staged) in &self.days {
            let path = path_of(*day);
            let bytes = upload_file(store, &staged.path, &path).await?;
            let ((min_ts, max_ts), (min_seq, max_seq)) = (staged.ts, staged.seq);
            files.push(DataFile { path, day: *day, rows: staged.rows, bytes, min_ts, max_ts, min_seq, max_seq });
        }
        Ok(files)
    }
}

/// Streams local file `from` to `to` in the store (a multipart upload on S3); answers its size.
async fn upload_file(store: &OfflineStore, from: &Path, to: &str) -> Result<u64> {
    let mut file = tokio::fs::File::open(from).await.map_err(spill_err(from))?;
    let upload = store.object_store().put_multipart(&store.path(to)).await?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
    let (mut part, mut total) = (vec![0u8; UPLOAD_PART], 0u64);
    loop {
        let read = file.read(&mut part).await.map_err(spill_err(from))?;
        if read == 0 {
            break;
        }
        upload.wait_for_capacity(2).await?;
        upload.write(&part[..read]);
        total += read as u64;
    }
    upload.finish().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, TimestampMicrosecondArray, UInt64Array};
    use quiver_core::time::DAY_MICROS;

    use super::*;
    use crate::files::read_file;

    fn rows(day: i64, first: u64, n: u64) -> RecordBatch {
        let ts = (0..n as i64).map(|i| day * DAY_MICROS + i);
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i + first as i64))) as _),
            ("ts", Arc::new(TimestampMicrosecondArray::from_iter_values(ts)) as _),
            (SEQ_COLUMN, Arc::new(UInt64Array::from_iter_values(first..first + n)) as _),
        ])
        .unwrap()
    }

    /// Rows appended in many small pieces, with a buffer far below their size, arrive in
    /// the store whole, per day, with the entry describing them.
    #[tokio::test]
    async fn days_staged_in_pieces_upload_whole_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = OfflineStore::open("memory://", &Default::default()).unwrap();
        let schema = rows(0, 0, 1).schema();
        let mut staged = Staged::new(dir.path(), schema, 1, 4 << 10).unwrap();
        let mut first = 0;
        for piece in 0..40 {
            let day = piece % 2;
            staged.append(day, &rows(day, first, 500)).unwrap();
            first += 500;
        }
        let sealed = staged.seal().unwrap();
        assert_eq!(sealed.rows(), 20_000);
        let files = sealed.upload(&store, |day| format!("d{day}.parquet")).await.unwrap();
        assert_eq!(files.iter().map(|f| (f.day, f.rows)).collect::<Vec<_>>(), vec![(0, 10_000), (1, 10_000)]);
        assert_eq!((files[1].min_seq, files[1].max_seq), (500, 19_999));
        assert_eq!(files[1].min_ts, DAY_MICROS);
        let read = read_file(&store, &files[0], None, None).await.unwrap();
        let ids: Vec<i64> = read
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<arrow_array::types::Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the staging dir is gone");
    }
}
