//! Reading a batch source (a Parquet or CSV file) into the columns of a feature set version,
//! a chunk at a time, each checked as it comes, and splitting rows into per-day files.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::check_event_time;
use quiver_core::time::day_of;
use quiver_core::{Error as CoreError, Value};
use std::io::Read;

use crate::Result;
use crate::convert::values_to_array;
use crate::files::catch_damage;
use crate::schema::{columns, conform, file_schema, missing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Parquet,
    Csv,
}

impl SourceFormat {
    /// By file name: `.csv` is CSV, `.parquet`/`.pq` Parquet.
    pub fn of(path: &str) -> Option<SourceFormat> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(SourceFormat::Csv)
        } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
            Some(SourceFormat::Parquet)
        } else {
            None
        }
    }
}

/// Rows of a source in the feature set's column order (no sequence column yet): a chunk
/// of a file being ingested, or rows the export worker took from a shard's queue.
pub struct SourceRows {
    pub columns: Vec<ArrayRef>,
    pub rows: usize,
    /// Rows of the file before these, so a fault names the file's row (from 1).
    pub first_row: usize,
}

impl SourceRows {
    /// Refuses the rows if an event time is more than `max_future` ahead of `now`, naming
    /// the first such row (see `quiver_core::row::check_event_time`).
    pub fn check_event_times(&self, entity: &Entity, fs: &FeatureSet, now: i64, max_future: Duration) -> Result<()> {
        let times = self.columns[entity.join_keys.len()].as_primitive::<TimestampMicrosecondType>();
        for (i, &t) in times.values().iter().enumerate() {
            check_event_time(self.first_row + i + 1, &fs.timestamp_column, t, now, max_future)?;
        }
        Ok(())
    }
}

/// Rows a source is read in at a time: memory stays that of a chunk, whatever the file.
pub const CHUNK_ROWS: usize = 64 * 1024;

/// Where a source's bytes are: a local file (read by row groups or lines, never whole) or
/// bytes in memory.
pub enum SourceData {
    File(std::fs::File),
    Bytes(Bytes),
}

/// A source read a chunk at a time, each chunk conformed to the feature set's columns and
/// checked; a bad column or row fails it, naming the fault and the file's row.
pub struct SourceChunks {
    reader: Reader,
    entity: Entity,
    fs: FeatureSet,
    rows: usize,
    ignored: Vec<String>,
}

enum Reader {
    Parquet(ParquetRecordBatchReader),
    Csv { records: csv::Reader<Box<dyn Read + Send>>, positions: Vec<usize> },
}

fn unreadable(e: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(format!("not a readable Parquet file: {e}"))
}

impl SourceChunks {
    pub fn open(data: SourceData, format: SourceFormat, entity: &Entity, fs: &FeatureSet) -> Result<SourceChunks> {
        let (reader, ignored) = match format {
            SourceFormat::Parquet => {
                let reader = catch_damage(|| {
                    Ok(match data {
                        SourceData::File(file) => {
                            ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(CHUNK_ROWS).build()?
                        }
                        SourceData::Bytes(bytes) => {
                            ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(CHUNK_ROWS).build()?
                        }
                    })
                })
                .map_err(unreadable)?;
                (Reader::Parquet(reader), Vec::new())
            }
            SourceFormat::Csv => {
                let input: Box<dyn Read + Send> = match data {
                    SourceData::File(file) => Box::new(std::io::BufReader::new(file)),
                    SourceData::Bytes(bytes) => Box::new(bytes.reader()),
                };
                let mut records = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
                let headers =
                    records.headers().map_err(|e| CoreError::InvalidArgument(format!("CSV header: {e}")))?.clone();
                let expected = columns(entity, fs);
                let mut positions = Vec::with_capacity(expected.len());
                for (name, ty, _) in &expected {
                    let i = headers.iter().position(|h| h == name).ok_or_else(|| {
                        CoreError::InvalidArgument(format!(
                            "missing column '{name}' ({ty}) of feature set {}",
                            fs.versioned_name()
                        ))
                    })?;
                    positions.push(i);
                }
                let ignored =
                    headers.iter().filter(|h| !expected.iter().any(|(n, _, _)| n == h)).map(str::to_string).collect();
                (Reader::Csv { records, positions }, ignored)
            }
        };
        Ok(SourceChunks { reader, entity: entity.clone(), fs: fs.clone(), rows: 0, ignored })
    }

    /// Input columns that the feature set does not declare (known once a chunk was read).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The next chunk of rows; `None` at the end of the source.
    pub fn next_chunk(&mut self) -> Result<Option<SourceRows>> {
        let first_row = self.rows;
        let columns = match &mut self.reader {
            Reader::Parquet(reader) => {
                let Some(batch) = catch_damage(|| reader.next().transpose().map_err(Into::into)).map_err(unreadable)?
                else {
                    return Ok(None);
                };
                let (columns, ignored) = conform(&batch, &self.entity, &self.fs, first_row)?;
                self.ignored = ignored;
                columns
            }
            Reader::Csv { records, positions } => {
                let expected = columns(&self.entity, &self.fs);
                let mut values: Vec<Vec<Value>> = vec![Vec::new(); expected.len()];
                let mut record = csv::StringRecord::new();
                for row in first_row + 1..=first_row + CHUNK_ROWS {
                    let more = records
                        .read_record(&mut record)
                        .map_err(|e| CoreError::row(row, "", format!("malformed CSV: {e}")))?;
                    if !more {
                        break;
                    }
                    for (c, ((name, ty, required), &pos)) in expected.iter().zip(positions.iter()).enumerate() {
                        let text = record.get(pos).unwrap_or_default();
                        let value = Value::parse_text(text, *ty).map_err(|e| CoreError::row(row, name, e))?;
                        if *required && value.is_null() {
                            return Err(CoreError::row(row, name, missing(&self.fs, name)).into());
                        }
                        values[c].push(value);
                    }
                }
                if values.first().is_none_or(Vec::is_empty) {
                    return Ok(None);
                }
                values.iter().zip(&expected).map(|(v, (_, ty, _))| values_to_array(v, *ty)).collect()
            }
        };
        let rows = columns.first().map_or(0, |c: &ArrayRef| c.len());
        self.rows += rows;
        Ok(Some(SourceRows { columns, rows, first_row }))
    }
}

/// Splits rows into one batch per event day, in file schema, with sequence numbers
/// `first_seq..` in input order.
pub fn day_batches(
    source: &SourceRows,
    entity: &Entity,
    fs: &FeatureSet,
    first_seq: u64,
) -> Result<Vec<(i64, RecordBatch)>> {
    let schema = file_schema(entity, fs);
    let ts_index = entity.join_keys.len();
    let mut columns = source.columns.clone();
    columns.push(Arc::new(UInt64Array::from_iter_values((0..source.rows as u64).map(|i| first_seq + i))));
    let ts = source.columns[ts_index].as_primitive::<TimestampMicrosecondType>();
    let mut by_day: std::collections::BTreeMap<i64, Vec<u32>> = std::collections::BTreeMap::new();
    for (row, t) in ts.values().iter().enumerate() {
        by_day.entry(day_of(*t)).or_default().push(row as u32);
    }
    by_day
        .into_iter()
        .map(|(day, rows)| {
            let indices = UInt32Array::from(rows);
            let taken = columns
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((day, RecordBatch::try_new(schema.clone(), taken)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::driver_stats;

    fn drain(mut chunks: SourceChunks) -> Result<Vec<usize>> {
        let mut sizes = Vec::new();
        while let Some(chunk) = chunks.next_chunk()? {
            assert_eq!(chunk.first_row, sizes.iter().sum::<usize>());
            sizes.push(chunk.rows);
        }
        Ok(sizes)
    }

    fn csv(rows: usize, bad_row: Option<usize>) -> Bytes {
        let mut text = String::from("driver_id,ts,rate,city\n");
        for row in 1..=rows {
            let rate = if Some(row) == bad_row { "fast".to_string() } else { format!("{row}.5") };
            text += &format!("{row},2026-11-20T10:00:00Z,{rate},c\n");
        }
        Bytes::from(text)
    }

    #[test]
    fn a_large_csv_is_read_in_chunks_and_a_fault_names_the_files_row() {
        let (entity, fs) = driver_stats();
        let open = |bytes| SourceChunks::open(SourceData::Bytes(bytes), SourceFormat::Csv, &entity, &fs).unwrap();
        let rows = CHUNK_ROWS + 10;
        assert_eq!(drain(open(csv(rows, None))).unwrap(), vec![CHUNK_ROWS, 10]);
        let error = drain(open(csv(rows, Some(CHUNK_ROWS + 3)))).unwrap_err().to_string();
        assert!(error.contains(&format!("row {}, field 'rate'", CHUNK_ROWS + 3)), "{error}");
    }
}
