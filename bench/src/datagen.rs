//! The offline benchmark's input: feature rows and a spine as Parquet files, from fixed seeds
//! so that every run, and DuckDB reading the same files, sees the same data. Written in
//! chunks so that memory stays modest at 10M rows.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Entities that have feature rows: `driver_id` 0..ENTITIES.
/// The benchmark project: one feature set of 8 float64 and 2 int64 features per driver.
pub const DEFINITIONS: &str = "
project: bench
entities:
  - name: driver
    join_keys: [{name: driver_id, type: int64}]
feature_sets:
  - name: driver_stats
    entity: driver
    timestamp: event_timestamp
    ttl: 30d
    features:
      - {name: f0, type: float64}
      - {name: f1, type: float64}
      - {name: f2, type: float64}
      - {name: f3, type: float64}
      - {name: f4, type: float64}
      - {name: f5, type: float64}
      - {name: f6, type: float64}
      - {name: f7, type: float64}
      - {name: i0, type: int64}
      - {name: i1, type: int64}
feature_vectors:
  - name: all
    features: ['driver_stats:*']
";

pub const ENTITIES: i64 = 100_000;
/// Share of spine rows whose `driver_id` (ENTITIES and above) has no feature rows.
const UNKNOWN_SHARE: f64 = 0.01;
/// 2026-06-01T00:00:00Z in µs: events and spine times fall in the 90 days after it.
const START: i64 = 1_780_272_000_000_000;
const SPAN: i64 = 90 * 86_400_000_000;
/// Ten files whatever the size: every size ingests a directory of several sources.
const FILES: usize = 10;
/// Rows generated and written at a time.
const CHUNK: usize = 64 * 1024;
const FEATURE_SEED: u64 = 3;
const SPINE_SEED: u64 = 4;

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn timestamps(rng: &mut StdRng, rows: usize) -> ArrayRef {
    let values = (0..rows).map(|_| START + rng.random_range(0..SPAN));
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("+00:00"))
}

fn int64s(rows: usize, mut f: impl FnMut() -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values((0..rows).map(|_| f())))
}

/// Row groups of 128k rows bound what the writer buffers before flushing.
fn writer(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<File>> {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(128 * 1024)).build();
    Ok(ArrowWriter::try_new(File::create(path)?, schema, Some(props))?)
}

/// Writes `rows` feature rows (`driver_id`, `event_timestamp`, `f0`..`f7`, `i0`, `i1`) as
/// `part-NN.parquet` files in `dir`. Every row draws its entity and time at random, so the
/// files are in no particular order, as a batch export would be.
pub fn write_features(dir: &Path, rows: usize) -> Result<()> {
    let mut fields = vec![Field::new("driver_id", DataType::Int64, false)];
    fields.push(Field::new("event_timestamp", timestamp_type(), false));
    fields.extend((0..8).map(|i| Field::new(format!("f{i}"), DataType::Float64, false)));
    fields.extend((0..2).map(|i| Field::new(format!("i{i}"), DataType::Int64, false)));
    let schema = Arc::new(Schema::new(fields));
    let mut rng = StdRng::seed_from_u64(FEATURE_SEED);
    for file in 0..FILES {
        let mut out = writer(&dir.join(format!("part-{file:02}.parquet")), schema.clone())?;
        let mut left = rows / FILES + usize::from(file < rows % FILES);
        while left > 0 {
            let n = left.min(CHUNK);
            let mut columns = vec![int64s(n, || rng.random_range(0..ENTITIES)), timestamps(&mut rng, n)];
            for _ in 0..8 {
                columns.push(Arc::new(Float64Array::from_iter_values((0..n).map(|_| rng.random::<f64>()))));
            }
            for _ in 0..2 {
                columns.push(int64s(n, || rng.random_range(0..1000)));
            }
            out.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            left -= n;
        }
        out.close()?;
    }
    Ok(())
}

/// Writes a spine of `rows` rows (`driver_id`, `event_timestamp`, `label`) to `path`.
pub fn write_spine(path: &Path, rows: usize) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", timestamp_type(), false),
        Field::new("label", DataType::Int64, false),
    ]));
    let mut rng = StdRng::seed_from_u64(SPINE_SEED);
    let mut out = writer(path, schema.clone())?;
    let mut left = rows;
    while left > 0 {
        let n = left.min(CHUNK);
        let ids = int64s(n, || {
            if rng.random_bool(UNKNOWN_SHARE) {
                ENTITIES + rng.random_range(0..ENTITIES / 100)
            } else {
                rng.random_range(0..ENTITIES)
            }
        });
        let columns = vec![ids, timestamps(&mut rng, n), int64s(n, || rng.random_range(0..2))];
        out.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        left -= n;
    }
    out.close()?;
    Ok(())
}
