//! Between Quiver values and Arrow arrays. One place for it, so CSV ingestion, online upserts
//! and retrieval output all agree on how each type is laid out.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use quiver_core::{Value, ValueType};

use crate::schema::UTC;
#[cfg(test)]
use crate::schema::arrow_type;

/// Builds an array of `ty` from values already conformed to it (others become null).
pub fn values_to_array(values: &[Value], ty: ValueType) -> ArrayRef {
    macro_rules! build {
        ($builder:expr, $variant:path) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    $variant(x) => b.append_value(x.clone()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! build_list {
        ($inner:expr, $variant:path) => {{
            let mut b = ListBuilder::new($inner);
            for v in values {
                match v {
                    $variant(xs) => {
                        for x in xs {
                            b.values().append_value(x.clone());
                        }
                        b.append(true)
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        ValueType::Bool => build!(BooleanBuilder::with_capacity(values.len()), Value::Bool),
        ValueType::Int32 => build!(Int32Builder::with_capacity(values.len()), Value::Int32),
        ValueType::Int64 => build!(Int64Builder::with_capacity(values.len()), Value::Int64),
        ValueType::Float32 => build!(Float32Builder::with_capacity(values.len()), Value::Float32),
        ValueType::Float64 => build!(Float64Builder::with_capacity(values.len()), Value::Float64),
        ValueType::String => build!(StringBuilder::new(), Value::String),
        ValueType::Bytes => build!(BinaryBuilder::new(), Value::Bytes),
        ValueType::Timestamp => {
            build!(TimestampMicrosecondBuilder::with_capacity(values.len()).with_timezone(UTC), Value::Timestamp)
        }
        ValueType::Float32List => build_list!(Float32Builder::new(), Value::Float32List),
        ValueType::Int64List => build_list!(Int64Builder::new(), Value::Int64List),
        ValueType::StringList => build_list!(StringBuilder::new(), Value::StringList),
    }
}

/// The value at `row` of an array already of `arrow_type(ty)`.
pub fn array_value(array: &dyn Array, row: usize, ty: ValueType) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match ty {
        ValueType::Bool => Value::Bool(array.as_boolean().value(row)),
        ValueType::Int32 => Value::Int32(array.as_primitive::<Int32Type>().value(row)),
        ValueType::Int64 => Value::Int64(array.as_primitive::<Int64Type>().value(row)),
        ValueType::Float32 => Value::Float32(array.as_primitive::<Float32Type>().value(row)),
        ValueType::Float64 => Value::Float64(array.as_primitive::<Float64Type>().value(row)),
        ValueType::String => Value::String(array.as_string::<i32>().value(row).to_string()),
        ValueType::Bytes => Value::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        ValueType::Timestamp => Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row)),
        ValueType::Float32List => {
            let list = array.as_list::<i32>().value(row);
            Value::Float32List(list.as_primitive::<Float32Type>().iter().map(|v| v.unwrap_or(f32::NAN)).collect())
        }
        ValueType::Int64List => {
            let list = array.as_list::<i32>().value(row);
            Value::Int64List(list.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or_default()).collect())
        }
        ValueType::StringList => {
            let list = array.as_list::<i32>().value(row);
            Value::StringList(list.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
        }
    }
}

/// Appends the canonical key encoding of `array[row]` (a join-key column of type `ty`),
/// straight from Arrow, with no `Value` in between.
pub fn encode_key_cell(out: &mut Vec<u8>, array: &dyn Array, row: usize, ty: ValueType) {
    use quiver_core::key::{KeyPart, encode_key_part};
    let part = match ty {
        ValueType::Int32 => KeyPart::Int(array.as_primitive::<Int32Type>().value(row).into()),
        ValueType::Int64 => KeyPart::Int(array.as_primitive::<Int64Type>().value(row)),
        ValueType::String => KeyPart::String(array.as_string::<i32>().value(row)),
        ValueType::Bytes => KeyPart::Bytes(array.as_binary::<i32>().value(row)),
        // Only the join-key types above reach here (the registry refuses others).
        other => {
            let value = array_value(array, row, other);
            out.extend_from_slice(&quiver_core::key::encode_entity_key(&[value]));
            return;
        }
    };
    encode_key_part(out, part);
}

/// The entity-key hash (`key::key_hash`) of `row`'s join key, its cells in `columns` (of
/// the join keys' types); `scratch` is working space.
pub fn row_key_hash<A: AsRef<dyn Array>>(scratch: &mut Vec<u8>, columns: &[(A, ValueType)], row: usize) -> u64 {
    scratch.clear();
    for (array, ty) in columns {
        encode_key_cell(scratch, array.as_ref(), row, *ty);
    }
    quiver_core::key::key_hash(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_from_arrow_as_from_values() {
        for (ty, value) in [
            (ValueType::Int32, Value::Int32(-7)),
            (ValueType::Int64, Value::Int64(1 << 40)),
            (ValueType::String, Value::String("eu-west".into())),
            (ValueType::Bytes, Value::Bytes(vec![0, 9])),
        ] {
            let array = values_to_array(std::slice::from_ref(&value), ty);
            let mut out = Vec::new();
            encode_key_cell(&mut out, array.as_ref(), 0, ty);
            assert_eq!(out, quiver_core::key::encode_entity_key(&[value]));
        }
    }

    #[test]
    fn every_type_round_trips_through_arrow() {
        let samples = [
            (ValueType::Bool, Value::Bool(true)),
            (ValueType::Int32, Value::Int32(-4)),
            (ValueType::Int64, Value::Int64(1 << 40)),
            (ValueType::Float32, Value::Float32(0.5)),
            (ValueType::Float64, Value::Float64(2.25)),
            (ValueType::String, Value::String("eu".into())),
            (ValueType::Bytes, Value::Bytes(vec![0, 1])),
            (ValueType::Timestamp, Value::Timestamp(1_700_000_000_000_000)),
            (ValueType::Float32List, Value::Float32List(vec![0.25, 1.0])),
            (ValueType::Int64List, Value::Int64List(vec![3, 4])),
            (ValueType::StringList, Value::StringList(vec!["a".into(), "b".into()])),
        ];
        for (ty, value) in samples {
            let array = values_to_array(&[value.clone(), Value::Null], ty);
            assert_eq!(array.data_type(), &arrow_type(ty));
            assert_eq!(array_value(array.as_ref(), 0, ty), value);
            assert_eq!(array_value(array.as_ref(), 1, ty), Value::Null);
        }
    }
}
