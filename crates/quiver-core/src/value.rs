//! Feature value types and values, with the conversions every input path shares
//! (CSV text, JSON, entity-key arguments).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::{format_timestamp, parse_timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ValueType {
    Bool,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    Timestamp,
    Float32List,
    Int64List,
    StringList,
}

impl ValueType {
    pub const ALL: [ValueType; 11] = [
        ValueType::Bool,
        ValueType::Int32,
        ValueType::Int64,
        ValueType::Float32,
        ValueType::Float64,
        ValueType::String,
        ValueType::Bytes,
        ValueType::Timestamp,
        ValueType::Float32List,
        ValueType::Int64List,
        ValueType::StringList,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::Int32 => "int32",
            ValueType::Int64 => "int64",
            ValueType::Float32 => "float32",
            ValueType::Float64 => "float64",
            ValueType::String => "string",
            ValueType::Bytes => "bytes",
            ValueType::Timestamp => "timestamp",
            ValueType::Float32List => "list<float32>",
            ValueType::Int64List => "list<int64>",
            ValueType::StringList => "list<string>",
        }
    }

    /// Join keys are hashed to shards, so they must have an exact, canonical encoding.
    pub fn can_be_join_key(self) -> bool {
        matches!(self, ValueType::Int32 | ValueType::Int64 | ValueType::String | ValueType::Bytes)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ValueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        ValueType::ALL.into_iter().find(|t| t.name() == compact).ok_or_else(|| {
            let names: Vec<_> = ValueType::ALL.iter().map(|t| t.name()).collect();
            format!("unknown type '{s}' (expected one of {})", names.join(", "))
        })
    }
}

impl TryFrom<String> for ValueType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ValueType> for String {
    fn from(t: ValueType) -> String {
        t.name().to_string()
    }
}

/// One feature value. `Null` is valid for every type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Float32List(Vec<f32>),
    Int64List(Vec<i64>),
    StringList(Vec<String>),
}

impl Value {
    /// The type of a non-null value.
    pub fn value_type(&self) -> Option<ValueType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ValueType::Bool,
            Value::Int32(_) => ValueType::Int32,
            Value::Int64(_) => ValueType::Int64,
            Value::Float32(_) => ValueType::Float32,
            Value::Float64(_) => ValueType::Float64,
            Value::String(_) => ValueType::String,
            Value::Bytes(_) => ValueType::Bytes,
            Value::Timestamp(_) => ValueType::Timestamp,
            Value::Float32List(_) => ValueType::Float32List,
            Value::Int64List(_) => ValueType::Int64List,
            Value::StringList(_) => ValueType::StringList,
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Checks a value against a declared type, widening only where no precision is lost
    /// (int32 → int64, float32 → float64, int64 → timestamp). Returns the value as stored.
    pub fn conform(self, ty: ValueType) -> Result<Value, String> {
        let got = match self.value_type() {
            None => return Ok(Value::Null),
            Some(t) if t == ty => return Ok(self),
            Some(t) => t,
        };
        match (self, ty) {
            (Value::Int32(v), ValueType::Int64) => Ok(Value::Int64(v.into())),
            (Value::Float32(v), ValueType::Float64) => Ok(Value::Float64(v.into())),
            (Value::Int64(v), ValueType::Timestamp) => Ok(Value::Timestamp(v)),
            _ => Err(format!("expected {ty}, got {got}")),
        }
    }

    /// Parses text (a CSV cell, a command-line argument) as a value of `ty`.
    /// The empty string is null.
    pub fn parse_text(text: &str, ty: ValueType) -> Result<Value, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Value::Null);
        }
        let bad = |e: &dyn fmt::Display| format!("'{text}' is not a valid {ty} ({e})");
        Ok(match ty {
            ValueType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(bad(&"use true or false")),
            },
            ValueType::Int32 => Value::Int32(text.parse().map_err(|e| bad(&e))?),
            ValueType::Int64 => Value::Int64(text.parse().map_err(|e| bad(&e))?),
            ValueType::Float32 => Value::Float32(text.parse().map_err(|e| bad(&e))?),
            ValueType::Float64 => Value::Float64(text.parse().map_err(|e| bad(&e))?),
            ValueType::String => Value::String(text.to_string()),
            ValueType::Bytes => Value::Bytes(text.as_bytes().to_vec()),
            ValueType::Timestamp => Value::Timestamp(parse_timestamp(text)?),
            ValueType::Float32List | ValueType::Int64List | ValueType::StringList => {
                let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
                Value::from_json(&json, ty)?
            }
        })
    }

    /// Converts a JSON value to a value of `ty`. Numbers must fit the type exactly;
    /// timestamps may be RFC 3339 strings or integer microseconds.
    pub fn from_json(json: &serde_json::Value, ty: ValueType) -> Result<Value, String> {
        use serde_json::Value as J;
        let kind = |j: &J| match j {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Number(_) => "a number",
            J::String(_) => "a string",
            J::Array(_) => "a list",
            J::Object(_) => "an object",
        };
        let mismatch = || format!("expected {ty}, got {} {json}", kind(json));
        let int = |j: &J| j.as_i64().ok_or_else(mismatch);
        Ok(match (ty, json) {
            (_, J::Null) => Value::Null,
            (ValueType::Bool, J::Bool(b)) => Value::Bool(*b),
            (ValueType::Int32, J::Number(_)) => {
                Value::Int32(i32::try_from(int(json)?).map_err(|_| format!("{json} does not fit int32"))?)
            }
            (ValueType::Int64, J::Number(_)) => Value::Int64(int(json)?),
            (ValueType::Float32, J::Number(n)) => Value::Float32(n.as_f64().ok_or_else(mismatch)? as f32),
            (ValueType::Float64, J::Number(n)) => Value::Float64(n.as_f64().ok_or_else(mismatch)?),
            (ValueType::String, J::String(s)) => Value::String(s.clone()),
            (ValueType::Bytes, J::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
            (ValueType::Timestamp, J::Number(_)) => Value::Timestamp(int(json)?),
            (ValueType::Timestamp, J::String(s)) => Value::Timestamp(parse_timestamp(s)?),
            (ValueType::Float32List, J::Array(items)) => Value::Float32List(
                items.iter().map(|i| i.as_f64().map(|f| f as f32).ok_or_else(mismatch)).collect::<Result<_, _>>()?,
            ),
            (ValueType::Int64List, J::Array(items)) => {
                Value::Int64List(items.iter().map(int).collect::<Result<_, _>>()?)
            }
            (ValueType::StringList, J::Array(items)) => Value::StringList(
                items.iter().map(|i| i.as_str().map(str::to_string).ok_or_else(mismatch)).collect::<Result<_, _>>()?,
            ),
            _ => return Err(mismatch()),
        })
    }

    /// The JSON form used by `quiverctl get --format json`: timestamps as RFC 3339 strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int32(v) => J::from(*v),
            Value::Int64(v) => J::from(*v),
            Value::Float32(v) => J::from(*v),
            Value::Float64(v) => J::from(*v),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::Timestamp(t) => J::String(format_timestamp(*t)),
            Value::Float32List(v) => J::from(v.clone()),
            Value::Int64List(v) => J::from(v.clone()),
            Value::StringList(v) => J::from(v.clone()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::String(s) => f.write_str(s),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// Plain Rust values in and out of `Value`: `Value::from(1001_i64)`, `f64::try_from(value)`.
/// Out, the variant must be the type's own (no widening); `Option<T>` in gives `Null` for `None`.
macro_rules! plain_values {
    ($($rust:ty => $variant:ident),* $(,)?) => {$(
        impl From<$rust> for Value {
            fn from(v: $rust) -> Value {
                Value::$variant(v)
            }
        }

        impl TryFrom<Value> for $rust {
            type Error = crate::Error;

            fn try_from(v: Value) -> crate::Result<$rust> {
                match v {
                    Value::$variant(v) => Ok(v),
                    other => {
                        let got = other.value_type().map_or_else(|| "null".to_string(), |t| t.to_string());
                        Err(crate::Error::InvalidArgument(format!("expected {}, got {got}", ValueType::$variant)))
                    }
                }
            }
        }
    )*};
}

plain_values!(
    bool => Bool, i32 => Int32, i64 => Int64, f32 => Float32, f64 => Float64, String => String,
    Vec<u8> => Bytes, Vec<f32> => Float32List, Vec<i64> => Int64List, Vec<String> => StringList,
);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_string())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_convert_both_ways_and_a_wrong_type_is_named() {
        assert_eq!(Value::from(1001_i64), Value::Int64(1001));
        assert_eq!(Value::from("a"), Value::String("a".into()));
        assert_eq!(Value::from(None::<f64>), Value::Null);
        assert_eq!(f64::try_from(Value::Float64(0.5)).unwrap(), 0.5);
        let wrong = i64::try_from(Value::String("x".into())).unwrap_err().to_string();
        assert!(wrong.contains("expected int64, got string"), "{wrong}");
        assert!(bool::try_from(Value::Null).unwrap_err().to_string().contains("got null"));
    }
    use serde_json::json;

    #[test]
    fn type_names_round_trip() {
        for t in ValueType::ALL {
            assert_eq!(t.name().parse::<ValueType>().unwrap(), t);
        }
        assert_eq!("list< float32 >".parse::<ValueType>().unwrap(), ValueType::Float32List);
        assert!("float128".parse::<ValueType>().unwrap_err().contains("float128"));
    }

    #[test]
    fn json_values_must_match_their_type() {
        assert_eq!(Value::from_json(&json!(1.5), ValueType::Float64).unwrap(), Value::Float64(1.5));
        assert_eq!(Value::from_json(&json!(3), ValueType::Float64).unwrap(), Value::Float64(3.0));
        assert!(Value::from_json(&json!("1.5"), ValueType::Float64).unwrap_err().contains("expected float64"));
        assert!(Value::from_json(&json!(1.5), ValueType::Int64).is_err());
        assert!(Value::from_json(&json!(1i64 << 40), ValueType::Int32).unwrap_err().contains("int32"));
        assert_eq!(
            Value::from_json(&json!("1970-01-01T00:00:01Z"), ValueType::Timestamp).unwrap(),
            Value::Timestamp(1_000_000)
        );
        assert_eq!(Value::from_json(&json!([1, 2]), ValueType::Int64List).unwrap(), Value::Int64List(vec![1, 2]));
        assert_eq!(Value::from_json(&json!(null), ValueType::Bool).unwrap(), Value::Null);
    }

    #[test]
    fn text_values_parse_or_say_why_not() {
        assert_eq!(Value::parse_text("42", ValueType::Int64).unwrap(), Value::Int64(42));
        assert_eq!(Value::parse_text("", ValueType::Int64).unwrap(), Value::Null);
        assert!(Value::parse_text("4x2", ValueType::Int64).unwrap_err().contains("'4x2'"));
        assert_eq!(Value::parse_text("[0.5, 1]", ValueType::Float32List).unwrap(), Value::Float32List(vec![0.5, 1.0]));
    }

    #[test]
    fn conform_widens_without_loss_only() {
        assert_eq!(Value::Int32(7).conform(ValueType::Int64).unwrap(), Value::Int64(7));
        assert!(Value::Int64(7).conform(ValueType::Int32).is_err());
        assert!(Value::String("x".into()).conform(ValueType::Float64).unwrap_err().contains("got string"));
    }
}
