//! Values and named values (rows, entity keys).

use std::collections::{BTreeMap, HashMap};

use quiver_core::Value;

use crate::v1;
use crate::v1::value::Kind;

pub fn value_to_proto(value: Value) -> v1::Value {
    let kind = match value {
        Value::Null => None,
        Value::Bool(v) => Some(Kind::BoolValue(v)),
        Value::Int32(v) => Some(Kind::Int32Value(v)),
        Value::Int64(v) => Some(Kind::Int64Value(v)),
        Value::Float32(v) => Some(Kind::Float32Value(v)),
        Value::Float64(v) => Some(Kind::Float64Value(v)),
        Value::String(v) => Some(Kind::StringValue(v)),
        Value::Bytes(v) => Some(Kind::BytesValue(v)),
        Value::Timestamp(v) => Some(Kind::TimestampMicros(v)),
        Value::Float32List(values) => Some(Kind::Float32List(v1::Float32List { values })),
        Value::Int64List(values) => Some(Kind::Int64List(v1::Int64List { values })),
        Value::StringList(values) => Some(Kind::StringList(v1::StringList { values })),
    };
    v1::Value { kind }
}

pub fn value_from_proto(value: v1::Value) -> Value {
    match value.kind {
        None => Value::Null,
        Some(Kind::BoolValue(v)) => Value::Bool(v),
        Some(Kind::Int32Value(v)) => Value::Int32(v),
        Some(Kind::Int64Value(v)) => Value::Int64(v),
        Some(Kind::Float32Value(v)) => Value::Float32(v),
        Some(Kind::Float64Value(v)) => Value::Float64(v),
        Some(Kind::StringValue(v)) => Value::String(v),
        Some(Kind::BytesValue(v)) => Value::Bytes(v),
        Some(Kind::TimestampMicros(v)) => Value::Timestamp(v),
        Some(Kind::Float32List(l)) => Value::Float32List(l.values),
        Some(Kind::Int64List(l)) => Value::Int64List(l.values),
        Some(Kind::StringList(l)) => Value::StringList(l.values),
    }
}

/// Named values (a row, an entity key) from the wire.
pub fn fields_from_proto(fields: HashMap<String, v1::Value>) -> BTreeMap<String, Value> {
    fields.into_iter().map(|(k, v)| (k, value_from_proto(v))).collect()
}

pub fn fields_to_proto(fields: BTreeMap<String, Value>) -> HashMap<String, v1::Value> {
    fields.into_iter().map(|(k, v)| (k, value_to_proto(v))).collect()
}

pub fn row_to_proto(row: BTreeMap<String, Value>) -> v1::Row {
    v1::Row { fields: fields_to_proto(row) }
}

pub fn entity_key_to_proto(keys: BTreeMap<String, Value>) -> v1::EntityKey {
    v1::EntityKey { keys: fields_to_proto(keys) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int32(-3),
            Value::Int64(1 << 40),
            Value::Float32(0.5),
            Value::Float64(-2.25),
            Value::String("eu".into()),
            Value::Bytes(vec![0, 255]),
            Value::Timestamp(1_700_000_000_000_000),
            Value::Float32List(vec![0.1, 0.2]),
            Value::Int64List(vec![1, 2]),
            Value::StringList(vec!["a".into()]),
        ];
        for v in values {
            assert_eq!(value_from_proto(value_to_proto(v.clone())), v);
        }
    }
}
