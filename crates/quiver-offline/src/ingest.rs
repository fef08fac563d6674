//! Reading a batch source (Parquet or CSV bytes) into the columns of a feature set version,
//! checked whole before anything is written, and split into per-day files.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use bytes::Bytes;
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::check_event_time;
use quiver_core::time::day_of;
use quiver_core::{Error as CoreError, Value};

use crate::Result;
use crate::convert::values_to_array;
use crate::files::read_parquet;
use crate::schema::{columns, conform, file_schema};

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

/// A source's rows in the feature set's column order (no sequence column yet).
pub struct SourceRows {
    pub columns: Vec<ArrayRef>,
    pub rows: usize,
    /// Input columns that the feature set does not declare.
    pub ignored: Vec<String>,
}

impl SourceRows {
    /// Refuses the source if an event time is more than `max_future` ahead of `now`, naming
    /// the first such row (see `quiver_core::row::check_event_time`).
    pub fn check_event_times(&self, entity: &Entity, fs: &FeatureSet, now: i64, max_future: Duration) -> Result<()> {
        let times = self.columns[entity.join_keys.len()].as_primitive::<TimestampMicrosecondType>();
        for (i, &t) in times.values().iter().enumerate() {
            check_event_time(i + 1, &fs.timestamp_column, t, now, max_future)?;
        }
        Ok(())
    }
}

/// Reads and checks a whole source. Any bad column or row fails it, naming the fault.
pub fn read_source(bytes: Bytes, format: SourceFormat, entity: &Entity, fs: &FeatureSet) -> Result<SourceRows> {
    match format {
        SourceFormat::Parquet => read_parquet_source(bytes, entity, fs),
        SourceFormat::Csv => read_csv_source(&bytes, entity, fs),
    }
}

fn read_parquet_source(bytes: Bytes, entity: &Entity, fs: &FeatureSet) -> Result<SourceRows> {
    let batches = read_parquet(bytes, None)
        .map_err(|e| CoreError::InvalidArgument(format!("not a readable Parquet file: {e}")))?;
    let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
    let mut ignored = Vec::new();
    let mut rows = 0;
    for batch in &batches {
        let (arrays, extra) = conform(batch, entity, fs, rows)?;
        rows += batch.num_rows();
        parts.push(arrays);
        ignored = extra;
    }
    let width = columns(entity, fs).len();
    let columns = (0..width)
        .map(|c| {
            let pieces: Vec<&dyn arrow_array::Array> = parts.iter().map(|p| p[c].as_ref()).collect();
            if pieces.is_empty() {
                return Ok(arrow_array::new_empty_array(file_schema(entity, fs).field(c).data_type()));
            }
            arrow_select::concat::concat(&pieces)
        })
        .collect::<Result<_, _>>()?;
    Ok(SourceRows { columns, rows, ignored })
}

fn read_csv_source(bytes: &[u8], entity: &Entity, fs: &FeatureSet) -> Result<SourceRows> {
    let expected = columns(entity, fs);
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let headers = reader.headers().map_err(|e| CoreError::InvalidArgument(format!("CSV header: {e}")))?.clone();
    let mut positions = Vec::with_capacity(expected.len());
    for (name, ty, _) in &expected {
        let i = headers.iter().position(|h| h == name).ok_or_else(|| {
            CoreError::InvalidArgument(format!("missing column '{name}' ({ty}) of feature set {}", fs.versioned_name()))
        })?;
        positions.push(i);
    }
    let ignored = headers.iter().filter(|h| !expected.iter().any(|(n, _, _)| n == h)).map(str::to_string).collect();
    let mut values: Vec<Vec<Value>> = vec![Vec::new(); expected.len()];
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(|e| CoreError::row(row, "", format!("malformed CSV: {e}")))?;
        for (c, ((name, ty, required), &pos)) in expected.iter().zip(&positions).enumerate() {
            let text = record.get(pos).unwrap_or_default();
            let value = Value::parse_text(text, *ty).map_err(|e| CoreError::row(row, name, e))?;
            if *required && value.is_null() {
                let what =
                    if name == &fs.timestamp_column { "event timestamp is missing" } else { "join key is missing" };
                return Err(CoreError::row(row, name, what).into());
            }
            values[c].push(value);
        }
    }
    let rows = values.first().map_or(0, Vec::len);
    let columns = values.iter().zip(&expected).map(|(v, (_, ty, _))| values_to_array(v, *ty)).collect();
    Ok(SourceRows { columns, rows, ignored })
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
