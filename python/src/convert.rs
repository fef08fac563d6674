//! Between Python's and Arrow's data and Quiver's values: entities in, answers out as one
//! Arrow batch, pushed tables in as rows checked like an ingest's files.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{Field, Schema};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};
use quiver_client::{FeatureValue, OnlineFeatures, Project, Value, ValueType};
use quiver_core::registry::{Entity, FeatureSet, ResolvedFeature};
use quiver_core::row::InputRow;
use quiver_offline::convert::{array_value, values_to_array};
use quiver_offline::schema::{arrow_type, columns, conform};

use crate::errors::{invalid, to_py};

/// A Python value as a Quiver value: bool, int, float, str and bytes, None as null.
fn value(object: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    // bool before int: Python's bools are ints.
    if object.is_none() {
        Ok(Value::Null)
    } else if let Ok(b) = object.cast::<PyBool>() {
        Ok(Value::Bool(b.is_true()))
    } else if object.is_instance_of::<PyInt>() {
        object
            .extract::<i64>()
            .map(Value::Int64)
            .map_err(|_| invalid(format!("{what}: {object} is not a 64-bit integer")))
    } else if object.is_instance_of::<PyFloat>() {
        Ok(Value::Float64(object.extract()?))
    } else if let Ok(s) = object.cast::<PyString>() {
        Ok(Value::String(s.extract()?))
    } else if let Ok(b) = object.cast::<PyBytes>() {
        Ok(Value::Bytes(b.as_bytes().to_vec()))
    } else {
        let ty = object.get_type().name()?;
        Err(invalid(format!("{what}: a {ty} is not a join key value (give int, str, bool, float or bytes)")))
    }
}

/// Entities given as a list of dicts (`[{"driver_id": 1001}, ...]`).
pub fn entities_from_dicts(list: &Bound<'_, PyAny>) -> PyResult<Vec<BTreeMap<String, Value>>> {
    let mut entities = Vec::new();
    for (n, item) in list.try_iter()?.enumerate() {
        let item = item?;
        let dict = item.cast::<PyDict>().map_err(|_| invalid(format!("entity {}: not a dict of join keys", n + 1)))?;
        let mut keys = BTreeMap::new();
        for (k, v) in dict.iter() {
            let name: String = k.extract().map_err(|_| invalid(format!("entity {}: a key is not a str", n + 1)))?;
            let what = format!("entity {}, {name}", n + 1);
            keys.insert(name, value(&v, &what)?);
        }
        entities.push(keys);
    }
    Ok(entities)
}

/// Entities given as Arrow batches: one per row, of the join-key columns named in `keys`
/// (other columns ignored), each cast to its declared type.
pub fn entities_from_batches(
    batches: &[RecordBatch],
    keys: &[(String, ValueType)],
) -> PyResult<Vec<BTreeMap<String, Value>>> {
    let mut entities = Vec::new();
    for batch in batches {
        let mut typed = Vec::with_capacity(keys.len());
        for (name, ty) in keys {
            let column = batch.column_by_name(name).ok_or_else(|| invalid(format!("entities: no column '{name}'")))?;
            let cast = arrow_cast::cast(column, &arrow_type(*ty))
                .map_err(|e| invalid(format!("entities: column '{name}' as {ty}: {e}")))?;
            typed.push((name, *ty, cast));
        }
        for row in 0..batch.num_rows() {
            entities
                .push(typed.iter().map(|(name, ty, a)| ((*name).clone(), array_value(a.as_ref(), row, *ty))).collect());
        }
    }
    Ok(entities)
}

/// The join keys of the entities `features` belong to (those of the first one: a read names
/// one entity per feature set, and the node checks them all).
pub fn join_keys(project: &Project, features: &[ResolvedFeature]) -> PyResult<Vec<(String, ValueType)>> {
    let mut keys: Vec<(String, ValueType)> = Vec::new();
    for f in features {
        let fs = project.feature_set(&f.set, Some(f.version)).map_err(|e| invalid(e.to_string()))?;
        let entity = project.entity(&fs.entity).map_err(|e| invalid(e.to_string()))?;
        for k in &entity.join_keys {
            if !keys.iter().any(|(name, _)| *name == k.name) {
                keys.push((k.name.clone(), k.ty));
            }
        }
    }
    Ok(keys)
}

/// How a feature's column is named: its name alone where no other requested feature has it,
/// else its reference (`set:feature`).
fn column_names(references: &[String]) -> Vec<String> {
    let short = |r: &String| r.rsplit(':').next().unwrap_or(r).to_string();
    references
        .iter()
        .map(|r| match references.iter().filter(|o| short(o) == short(r)).count() {
            1 => short(r),
            _ => r.clone(),
        })
        .collect()
}

/// The answer as one batch: the entities' join keys, then a column per feature typed as
/// declared; with `metadata`, `<feature>__status` and `<feature>__event_timestamp` after each.
pub fn answer_batch(
    answer: &OnlineFeatures,
    features: &[ResolvedFeature],
    entities: &[BTreeMap<String, Value>],
    keys: &[(String, ValueType)],
    metadata: bool,
) -> PyResult<RecordBatch> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (name, ty) in keys {
        let values: Vec<Value> = entities
            .iter()
            .map(|e| e.get(name).cloned().unwrap_or_default().conform(*ty).unwrap_or_default())
            .collect();
        fields.push(Field::new(name, arrow_type(*ty), true));
        arrays.push(values_to_array(&values, *ty));
    }
    let types: BTreeMap<&str, ValueType> = features.iter().map(|f| (f.reference.as_str(), f.ty)).collect();
    for (column, (name, reference)) in column_names(&answer.features).into_iter().zip(&answer.features).enumerate() {
        let cells: Vec<&FeatureValue> = answer.rows.iter().filter_map(|row| row.get(column)).collect();
        let ty = types
            .get(reference.as_str())
            .copied()
            .or_else(|| cells.iter().find_map(|c| c.value.value_type()))
            .unwrap_or(ValueType::String);
        let values: Vec<Value> = cells.iter().map(|c| c.value.clone()).collect();
        fields.push(Field::new(&name, arrow_type(ty), true));
        arrays.push(values_to_array(&values, ty));
        if metadata {
            let statuses: StringArray = cells.iter().map(|c| Some(c.status.name())).collect();
            let times: TimestampMicrosecondArray = cells.iter().map(|c| c.event_ts).collect();
            let times = times.with_timezone("UTC");
            fields.push(Field::new(format!("{name}__status"), statuses.data_type().clone(), false));
            fields.push(Field::new(format!("{name}__event_timestamp"), times.data_type().clone(), true));
            arrays.push(Arc::new(statuses));
            arrays.push(Arc::new(times));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| invalid(format!("the answer: {e}")))
}

/// `batch` with a null column for each feature of `fs` it lacks: a push, as a write, may
/// leave features out (they read as null), where an ingest's file must hold every column.
fn with_absent_features(batch: &RecordBatch, fs: &FeatureSet) -> PyResult<RecordBatch> {
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for f in fs.features.iter().filter(|f| batch.column_by_name(&f.name).is_none()) {
        fields.push(Field::new(&f.name, arrow_type(f.ty), true));
        arrays.push(arrow_array::new_null_array(&arrow_type(f.ty), batch.num_rows()));
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| invalid(format!("the pushed table: {e}")))
}

/// A pushed batch as rows of feature set `fs`, checked as an ingest checks a file (every
/// column there, of its type or one that casts to it; event times in any zone); `first_row`
/// is the number of rows before it, so errors name rows of the whole table (from 1).
pub fn rows_from_batch(
    batch: &RecordBatch,
    entity: &Entity,
    fs: &FeatureSet,
    first_row: usize,
) -> PyResult<Vec<InputRow>> {
    let batch = with_absent_features(batch, fs)?;
    let (arrays, _ignored) = conform(&batch, entity, fs, first_row).map_err(|e| match e {
        quiver_offline::Error::Core(e) => to_py(quiver_client::Error::Server(e)),
        other => invalid(other.to_string()),
    })?;
    let columns = columns(entity, fs);
    Ok((0..batch.num_rows())
        .map(|row| {
            columns
                .iter()
                .zip(&arrays)
                .map(|((name, ty, _), array)| (name.clone(), array_value(array.as_ref(), row, *ty)))
                .filter(|(_, v)| !v.is_null())
                .collect()
        })
        .collect())
}
