//! The Arrow layout of a feature set version in the offline store, and the check that turns
//! an input batch (any column order, extra columns, compatible widths) into that layout or
//! an error naming the column or row at fault.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::{Error as CoreError, ValueType};

use crate::Result;

/// Ingestion order of each row, unique per feature set version: ties on event time go to
/// the larger value. Reserved from the meta group, so it is global across nodes.
pub const SEQ_COLUMN: &str = "_quiver_seq";

/// Time zone of every timestamp column: an offset, which Arrow reads without a zone database.
pub const UTC: &str = "+00:00";

/// Any timestamp column (any unit, any zone or none) or integer microseconds, as µs UTC.
/// Timestamps without a zone are taken to be UTC; values are relabelled, never shifted.
pub fn to_utc_micros(array: &ArrayRef) -> std::result::Result<ArrayRef, String> {
    let micros = match array.data_type() {
        DataType::Timestamp(_, tz) => arrow_cast::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
            .map_err(|e| e.to_string())?,
        DataType::Int64 => {
            arrow_cast::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(|e| e.to_string())?
        }
        other => return Err(format!("has type {other}, expected timestamp")),
    };
    Ok(Arc::new(micros.as_primitive::<TimestampMicrosecondType>().clone().with_timezone(UTC)))
}

pub fn arrow_type(ty: ValueType) -> DataType {
    let list = |inner| DataType::List(Arc::new(Field::new_list_field(inner, true)));
    match ty {
        ValueType::Bool => DataType::Boolean,
        ValueType::Int32 => DataType::Int32,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float32 => DataType::Float32,
        ValueType::Float64 => DataType::Float64,
        ValueType::String => DataType::Utf8,
        ValueType::Bytes => DataType::Binary,
        ValueType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        ValueType::Float32List => list(DataType::Float32),
        ValueType::Int64List => list(DataType::Int64),
        ValueType::StringList => list(DataType::Utf8),
    }
}

/// The columns of a feature set's rows, in file order: join keys, event time, features.
pub fn columns(entity: &Entity, fs: &FeatureSet) -> Vec<(String, ValueType, bool)> {
    let keys = entity.join_keys.iter().map(|k| (k.name.clone(), k.ty, true));
    let ts = std::iter::once((fs.timestamp_column.clone(), ValueType::Timestamp, true));
    let features = fs.features.iter().map(|f| (f.name.clone(), f.ty, false));
    keys.chain(ts).chain(features).collect()
}

/// Schema of the Parquet files of a feature set version.
pub fn file_schema(entity: &Entity, fs: &FeatureSet) -> SchemaRef {
    let mut fields: Vec<Field> = columns(entity, fs)
        .into_iter()
        .map(|(name, ty, required)| Field::new(name, arrow_type(ty), !required))
        .collect();
    fields.push(Field::new(SEQ_COLUMN, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// Input types accepted for a column beyond its own: lossless widenings and other layouts
/// of the same values (large/view strings, other timestamp units or zones).
fn accepts(input: &DataType, ty: ValueType) -> bool {
    use DataType as D;
    match (ty, input) {
        (ValueType::Int64, D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 | D::UInt32) => true,
        (ValueType::Int32, D::Int8 | D::Int16 | D::UInt8 | D::UInt16) => true,
        (ValueType::Float64, D::Float16 | D::Float32) => true,
        (ValueType::Float32, D::Float16) => true,
        (ValueType::String, D::LargeUtf8 | D::Utf8View) => true,
        (ValueType::Bytes, D::LargeBinary | D::BinaryView) => true,
        (ValueType::Float32List | ValueType::Int64List | ValueType::StringList, D::LargeList(_) | D::List(_)) => {
            arrow_cast::can_cast_types(input, &arrow_type(ty))
        }
        _ => false,
    }
}

fn type_name(t: &DataType) -> String {
    format!("{t}")
}

/// Conforms `batch` to the feature set's columns (without the sequence column).
/// Returns the batch and the names of input columns that were ignored. `first_row` is the
/// number of rows before this batch in its file, so errors name rows of the file (from 1).
pub fn conform(
    batch: &RecordBatch,
    entity: &Entity,
    fs: &FeatureSet,
    first_row: usize,
) -> Result<(Vec<ArrayRef>, Vec<String>)> {
    let expected = columns(entity, fs);
    let input = batch.schema();
    let mut arrays = Vec::with_capacity(expected.len());
    for (name, ty, required) in &expected {
        let Some((i, field)) = input.column_with_name(name) else {
            return Err(CoreError::InvalidArgument(format!(
                "missing column '{name}' ({ty}) of feature set {}",
                fs.versioned_name()
            ))
            .into());
        };
        let target = arrow_type(*ty);
        let column = batch.column(i);
        let column = if field.data_type() == &target {
            column.clone()
        } else if *ty == ValueType::Timestamp && matches!(field.data_type(), DataType::Timestamp(_, _)) {
            to_utc_micros(column).map_err(|e| CoreError::InvalidArgument(format!("column '{name}' {e}")))?
        } else if accepts(field.data_type(), *ty) {
            arrow_cast::cast(column, &target)?
        } else {
            return Err(CoreError::InvalidArgument(format!(
                "column '{name}' has type {}, expected {ty}",
                type_name(field.data_type())
            ))
            .into());
        };
        if *required && column.null_count() > 0 {
            let row = (0..column.len()).find(|r| column.is_null(*r)).unwrap_or_default();
            return Err(CoreError::row(first_row + row + 1, name, missing(fs, name)).into());
        }
        arrays.push(column);
    }
    let known: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let ignored = input.fields().iter().map(|f| f.name().clone()).filter(|n| !known.contains(&n.as_str())).collect();
    Ok((arrays, ignored))
}

/// What is missing when a required column is null: the event time or a join key.
pub(crate) fn missing(fs: &FeatureSet, column: &str) -> &'static str {
    if column == fs.timestamp_column { "event timestamp is missing" } else { "join key is missing" }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int32Array, StringArray, TimestampNanosecondArray};
    use quiver_core::registry::Registry;
    use quiver_core::spec::{Definitions, FeatureSetSpec};

    pub(crate) fn driver_stats() -> (Entity, FeatureSet) {
        let features = [("rate", ValueType::Float64), ("city", ValueType::String)];
        let defs = Definitions::new("rides")
            .entity("driver", &[("driver_id", ValueType::Int64)])
            .feature_set(FeatureSetSpec::new("driver_stats", "driver", "ts", &features));
        let mut reg = Registry::default();
        reg.apply(&defs, 0).unwrap();
        let p = reg.project("rides").unwrap();
        (p.entity("driver").unwrap().clone(), p.feature_set("driver_stats", None).unwrap().clone())
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn columns_in_any_order_with_widening_and_extras_conform() {
        let (e, fs) = driver_stats();
        let b = batch(vec![
            ("city", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
            ("extra", Arc::new(Int32Array::from(vec![1, 2]))),
            ("rate", Arc::new(Float32Array::from(vec![0.5, 1.5]))),
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![1_000, 2_000]))),
            ("driver_id", Arc::new(Int32Array::from(vec![7, 8]))),
        ]);
        let (arrays, ignored) = conform(&b, &e, &fs, 0).unwrap();
        assert_eq!(ignored, vec!["extra"]);
        let types: Vec<_> = arrays.iter().map(|a| a.data_type().clone()).collect();
        assert_eq!(
            types,
            file_schema(&e, &fs).fields().iter().take(4).map(|f| f.data_type().clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn missing_or_mistyped_columns_and_null_keys_are_named() {
        let (e, fs) = driver_stats();
        let ts = || Arc::new(TimestampNanosecondArray::from(vec![Some(1), Some(2)])) as ArrayRef;
        let ts_gap = || Arc::new(TimestampNanosecondArray::from(vec![Some(1), None])) as ArrayRef;
        let ids = || Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef;
        let rates = || Arc::new(Float32Array::from(vec![0.5, 1.5])) as ArrayRef;
        let cities = || Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef;
        let err = conform(&batch(vec![("driver_id", ids()), ("ts", ts()), ("rate", rates())]), &e, &fs, 0).unwrap_err();
        assert!(err.to_string().contains("missing column 'city'"), "{err}");
        let err = conform(
            &batch(vec![("driver_id", ids()), ("ts", ts()), ("rate", cities()), ("city", cities())]),
            &e,
            &fs,
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("column 'rate' has type Utf8, expected float64"), "{err}");
        let err = conform(
            &batch(vec![("driver_id", ids()), ("ts", ts_gap()), ("rate", rates()), ("city", cities())]),
            &e,
            &fs,
            10,
        )
        .unwrap_err();
        assert!(err.to_string().contains("row 12, field 'ts'"), "{err}");
    }
}
