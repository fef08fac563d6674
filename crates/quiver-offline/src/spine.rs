//! Reading a training-set spine: join keys, a time column, and any other columns (labels),
//! which the training set keeps as they were read.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_csv::reader::{Format, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use bytes::Bytes;
use quiver_core::offline::SpineFormat;
use quiver_core::{Error as CoreError, Value, ValueType};

use crate::Result;
use arrow_cast::display::{ArrayFormatter, FormatOptions};

use crate::convert::{encode_key_cell, values_to_array};
use crate::files::read_parquet;
use crate::schema::{arrow_type, to_utc_micros};

#[derive(Debug)]
pub struct Spine {
    pub batch: RecordBatch,
    /// The time column as µs UTC, with no nulls.
    pub times: TimestampMicrosecondArray,
}

/// Reads a spine whose time column is `time_column`. Parquet columns keep their Arrow types.
/// In CSV, join keys take their entities' types (`key_types`), the time column is RFC 3339
/// or integer µs, and every other column gets the type arrow-csv infers from all its values
/// (integer, float, boolean, date, timestamp, else text; empty cells are nulls).
pub fn read_spine(
    bytes: Bytes,
    format: SpineFormat,
    time_column: &str,
    key_types: &BTreeMap<String, ValueType>,
) -> Result<Spine> {
    let batch = match format {
        SpineFormat::Parquet => {
            let batches = read_parquet(bytes, None)
                .map_err(|e| CoreError::InvalidArgument(format!("spine: not a readable Parquet file: {e}")))?;
            let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty()));
            arrow_select::concat::concat_batches(&schema, &batches)?
        }
        SpineFormat::Csv => read_csv(&bytes, time_column, key_types)?,
    };
    let column = batch.column_by_name(time_column).ok_or_else(|| {
        CoreError::InvalidArgument(format!(
            "the spine has no column '{time_column}'; name its time column with --timestamp-column"
        ))
    })?;
    let times = to_utc_micros(column)
        .map_err(|e| CoreError::InvalidArgument(format!("spine column '{time_column}' {e}")))?
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    if let Some(row) = (0..times.len()).find(|i| times.is_null(*i)) {
        return Err(CoreError::row(row + 1, time_column, "spine timestamp is missing").into());
    }
    let keys = typed_keys(&batch, key_types)?;
    check_no_duplicates(&batch, &times, &keys)?;
    Ok(Spine { batch, times })
}

/// Every join key of the features asked for, present and readable as its entity's type in
/// every row: checked before any work, naming the row and the column.
fn typed_keys(batch: &RecordBatch, key_types: &BTreeMap<String, ValueType>) -> Result<Vec<(ArrayRef, ValueType)>> {
    key_types
        .iter()
        .map(|(name, ty)| {
            let column = batch.column_by_name(name).ok_or_else(|| {
                CoreError::InvalidArgument(format!(
                    "the spine has no column '{name}' (a join key of the features asked for)"
                ))
            })?;
            let cast = arrow_cast::cast(column, &arrow_type(*ty)).map_err(|e| {
                CoreError::InvalidArgument(format!("spine column '{name}' cannot be read as {ty}: {e}"))
            })?;
            if let Some(row) = (0..cast.len()).find(|&i| cast.is_null(i)) {
                let why = match column.is_null(row) {
                    true => "join key is missing in the spine".to_string(),
                    false => format!("spine: cannot be read as {ty}"),
                };
                return Err(CoreError::row(row + 1, name, why).into());
            }
            Ok((cast, *ty))
        })
        .collect()
}

/// The same row twice (every column equal) is a mistake a training set would repeat:
/// refused, naming both rows. Rows are first grouped by a hash of their keys and time, so
/// only rows that share both are compared whole.
fn check_no_duplicates(
    batch: &RecordBatch,
    times: &TimestampMicrosecondArray,
    keys: &[(ArrayRef, ValueType)],
) -> Result<()> {
    let mut hashed: Vec<(u64, u32)> = Vec::with_capacity(batch.num_rows());
    let mut scratch = Vec::new();
    for row in 0..batch.num_rows() {
        scratch.clear();
        for (column, ty) in keys {
            encode_key_cell(&mut scratch, column.as_ref(), row, *ty);
        }
        scratch.extend_from_slice(&times.value(row).to_be_bytes());
        hashed.push((xxhash_rust::xxh3::xxh3_64(&scratch), row as u32));
    }
    hashed.sort_unstable();
    let options = FormatOptions::default();
    let formatters =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>()?;
    let cell = |f: &ArrayFormatter, row: usize| f.value(row).to_string();
    for group in hashed.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        for (i, &(_, a)) in group.iter().enumerate() {
            for &(_, b) in &group[i + 1..] {
                let (a, b) = (a.min(b) as usize, a.max(b) as usize);
                let same = batch.columns().iter().zip(&formatters).all(|(column, f)| {
                    column.is_null(a) == column.is_null(b) && (column.is_null(a) || cell(f, a) == cell(f, b))
                });
                if same {
                    return Err(CoreError::InvalidArgument(format!(
                        "spine rows {} and {} are the same row; a training set would repeat it: remove one",
                        a + 1,
                        b + 1
                    ))
                    .into());
                }
            }
        }
    }
    Ok(())
}

fn read_csv(bytes: &[u8], time_column: &str, key_types: &BTreeMap<String, ValueType>) -> Result<RecordBatch> {
    let format = Format::default().with_header(true);
    let bad = |e: ArrowError| CoreError::InvalidArgument(format!("spine: {e}"));
    let (inferred, _) = format.infer_schema(bytes, None).map_err(bad)?;
    let quiver_type =
        |name: &str| if name == time_column { Some(ValueType::Timestamp) } else { key_types.get(name).copied() };
    // Keys and time are read as text and typed below, so that errors name row and field;
    // a column with no value at all is text.
    let text = |f: &Field| Field::new(f.name(), DataType::Utf8, true);
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| {
            if quiver_type(f.name()).is_some() || f.data_type() == &DataType::Null {
                text(f)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let reader = ReaderBuilder::new(schema.clone()).with_format(format).build(bytes).map_err(bad)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let Some(ty) = quiver_type(field.name()) else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        };
        let values = column
            .as_string::<i32>()
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Value::parse_text(text.unwrap_or_default(), ty)
                    .map_err(|e| CoreError::row(i + 1, field.name(), format!("spine: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        fields.push(Field::new(field.name(), arrow_type(ty), true));
        columns.push(values_to_array(&values, ty));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{Date32Array, Float32Array, Int32Array, Int64Array, TimestampNanosecondArray};
    use arrow_schema::TimeUnit;

    use super::*;

    fn keys() -> BTreeMap<String, ValueType> {
        BTreeMap::from([("driver_id".to_string(), ValueType::Int32)])
    }

    fn csv(text: &str) -> Result<Spine> {
        read_spine(Bytes::from(text.to_string()), SpineFormat::Csv, "ts", &keys())
    }

    #[test]
    fn csv_labels_take_inferred_types_and_keys_their_entities() {
        let spine = csv("driver_id,ts,trips,rating,churned,segment,nothing\n\
             7,2026-01-01T01:00:00+01:00,3,4.5,true,gold,\n\
             8,1767225600000000,-7,1e-3,False,,\n\
             7,2026-01-01T00:00:00Z,,2,FALSE,12,\n")
        .unwrap();
        let types: Vec<DataType> = spine.batch.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some(crate::schema::UTC.into()));
        use DataType as D;
        assert_eq!(types, vec![D::Int32, utc, D::Int64, D::Float64, D::Boolean, D::Utf8, D::Utf8]);
        let midnight = 1_767_225_600_000_000;
        assert_eq!(spine.times.values().to_vec(), vec![midnight; 3]);
        let column = |name: &str| spine.batch.column_by_name(name).unwrap().clone();
        assert_eq!(
            column("trips").as_primitive::<Int64Type>().iter().collect::<Vec<_>>(),
            vec![Some(3), Some(-7), None]
        );
        let rating: Vec<_> = column("rating").as_primitive::<Float64Type>().iter().collect();
        assert_eq!(rating, vec![Some(4.5), Some(0.001), Some(2.0)]);
        let churned: Vec<_> = column("churned").as_boolean().iter().collect();
        assert_eq!(churned, vec![Some(true), Some(false), Some(false)]);
        let segment: Vec<_> = column("segment").as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect();
        assert_eq!(segment, vec![Some("gold".to_string()), None, Some("12".to_string())]);
        assert_eq!(column("nothing").null_count(), 3);
    }

    #[test]
    fn bad_csv_keys_and_times_name_row_and_field() {
        let err = csv("driver_id,ts\n7,2026-01-01T00:00:00Z\nx,2026-01-01T00:00:00Z\n").unwrap_err().to_string();
        assert!(err.contains("row 2, field 'driver_id'") && err.contains("int32"), "{err}");
        let err = csv("driver_id,ts\n7,yesterday\n").unwrap_err().to_string();
        assert!(err.contains("row 1, field 'ts'") && err.contains("yesterday"), "{err}");
        let err = csv("driver_id,ts\n7,2026-01-01T00:00:00Z\n8,\n").unwrap_err().to_string();
        assert!(err.contains("row 2, field 'ts'") && err.contains("missing"), "{err}");
        let err = csv("driver_id,at\n7,2026-01-01T00:00:00Z\n").unwrap_err().to_string();
        assert!(err.contains("no column 'ts'"), "{err}");
        let err = csv("driver_id,ts\n7,2026-01-01T00:00:00Z\n8\n").unwrap_err().to_string();
        assert!(err.contains("spine") && err.contains("line"), "{err}");
    }

    #[test]
    fn missing_or_mistyped_keys_and_repeated_rows_are_refused_by_row_and_column() {
        let err = csv("ts\n2026-01-01T00:00:00Z\n").unwrap_err().to_string();
        assert!(err.contains("no column 'driver_id'"), "{err}");
        let err =
            csv("driver_id,ts,label\n7,2026-01-01T00:00:00Z,a\n8,2026-01-01T00:00:00Z,b\n7,2026-01-01T00:00:00Z,a\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("rows 1 and 3 are the same row"), "{err}");
        csv("driver_id,ts,label\n7,2026-01-01T00:00:00Z,a\n7,2026-01-01T00:00:00Z,b\n")
            .expect("the same key and time with another label is another row");
        let batch = RecordBatch::try_from_iter(vec![
            ("driver_id", Arc::new(arrow_array::StringArray::from(vec![Some("7"), Some("x")])) as ArrayRef),
            ("ts", Arc::new(arrow_array::TimestampMicrosecondArray::from(vec![1, 2]))),
        ])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let err = read_spine(Bytes::from(bytes), SpineFormat::Parquet, "ts", &keys()).unwrap_err().to_string();
        assert!(err.contains("row 2, field 'driver_id'") && err.contains("int32"), "{err}");
        let empty = csv("driver_id,ts\n").expect("a spine with no rows");
        assert_eq!(empty.batch.num_rows(), 0);
    }

    #[test]
    fn parquet_columns_keep_their_arrow_types_and_any_time_zone_reads_as_utc() {
        let instant = 1_767_225_600_000_000i64;
        for zone in [Some("Europe/Amsterdam"), Some("UTC"), Some("-05:00"), None] {
            let times = TimestampNanosecondArray::from(vec![instant * 1000, (instant + 1) * 1000]);
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("driver_id", Arc::new(Int64Array::from(vec![7, 8]))),
                ("ts", Arc::new(times.with_timezone_opt(zone))),
                ("clicks", Arc::new(Int32Array::from(vec![1, 2]))),
                ("score", Arc::new(Float32Array::from(vec![0.5, 1.5]))),
                ("signup", Arc::new(Date32Array::from(vec![20_000, 20_001]))),
            ];
            let batch = RecordBatch::try_from_iter(columns).unwrap();
            let mut bytes = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let spine = read_spine(Bytes::from(bytes), SpineFormat::Parquet, "ts", &keys()).unwrap();
            assert_eq!(spine.batch, batch, "zone {zone:?}");
            assert_eq!(spine.times.values().to_vec(), vec![instant, instant + 1], "zone {zone:?}");
        }
    }
}
