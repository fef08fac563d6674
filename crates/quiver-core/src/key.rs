//! Canonical entity-key encoding and the hash that places a key on a shard.
//!
//! The encoding is self-delimiting per value, so composite keys never collide
//! (`("ab","c")` and `("a","bc")` encode differently), and every replica and client
//! computes the same bytes for the same key.

use std::collections::BTreeMap;

use crate::spec::JoinKey;
use crate::{Error, Result, Value};

/// The join-key values of one entity, in the entity's declared key order.
pub type EntityKey = Vec<Value>;

pub fn encode_entity_key(key: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for value in key {
        match value {
            Value::Int32(v) => encode_key_part(&mut out, KeyPart::Int((*v).into())),
            Value::Int64(v) => encode_key_part(&mut out, KeyPart::Int(*v)),
            Value::String(s) => encode_key_part(&mut out, KeyPart::String(s)),
            Value::Bytes(b) => encode_key_part(&mut out, KeyPart::Bytes(b)),
            // Join keys are validated before encoding; other types never reach here, but
            // still get a distinct, stable form rather than a panic.
            other => bytes(&mut out, 0xff, format!("{other:?}").as_bytes()),
        }
    }
    out
}

/// One join-key value, borrowed: lets columnar callers encode keys without building `Value`s.
#[derive(Debug, Clone, Copy)]
pub enum KeyPart<'a> {
    /// int32 and int64 encode alike, so that widening a key never moves it.
    Int(i64),
    String(&'a str),
    Bytes(&'a [u8]),
}

/// Appends one key value in the canonical encoding; a key is its parts in join-key order.
pub fn encode_key_part(out: &mut Vec<u8>, part: KeyPart<'_>) {
    match part {
        KeyPart::Int(v) => int(out, v),
        KeyPart::String(s) => bytes(out, 2, s.as_bytes()),
        KeyPart::Bytes(b) => bytes(out, 3, b),
    }
}

/// Reads back an encoded key with the types of `join_keys` (the inverse of `encode_entity_key`).
pub fn decode_entity_key(encoded: &[u8], join_keys: &[JoinKey]) -> Result<EntityKey> {
    let bad = || Error::Internal(format!("malformed entity key {encoded:02x?}"));
    let mut bytes = encoded;
    let mut key = Vec::with_capacity(join_keys.len());
    for k in join_keys {
        let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
        let (value, rest) = match tag {
            1 => {
                let (raw, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
                let v = (u64::from_be_bytes(*raw) ^ (1 << 63)) as i64;
                let value = match k.ty {
                    crate::ValueType::Int32 => Value::Int32(i32::try_from(v).map_err(|_| bad())?),
                    _ => Value::Int64(v),
                };
                (value, rest)
            }
            2 | 3 => {
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let len = u32::from_be_bytes(*len) as usize;
                let (data, rest) = (rest.get(..len).ok_or_else(bad)?, &rest[len..]);
                let value = if tag == 2 {
                    Value::String(String::from_utf8(data.to_vec()).map_err(|_| bad())?)
                } else {
                    Value::Bytes(data.to_vec())
                };
                (value, rest)
            }
            _ => return Err(bad()),
        };
        key.push(value);
        bytes = rest;
    }
    if bytes.is_empty() { Ok(key) } else { Err(bad()) }
}

fn int(out: &mut Vec<u8>, v: i64) {
    out.push(1);
    out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

fn bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// The position of an encoded key in the 64-bit hash space that shards divide.
pub fn key_hash(encoded: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(encoded)
}

/// Builds an entity key from named values (a read request, a written row), checking that
/// every join key is present, non-null and of its declared type.
/// `what(name, reason)` builds the error so callers can name their row or entity.
pub fn entity_key_from(
    join_keys: &[JoinKey],
    mut lookup: impl FnMut(&str) -> Option<Value>,
    what: impl Fn(&str, String) -> Error,
) -> Result<EntityKey> {
    join_keys
        .iter()
        .map(|k| match lookup(&k.name) {
            None | Some(Value::Null) => Err(what(&k.name, "join key is missing".into())),
            Some(v) => v.conform(k.ty).map_err(|e| what(&k.name, e)),
        })
        .collect()
}

/// Parses `driver_id=1001,region=eu` into named text values.
pub fn parse_key_text(text: &str) -> Result<BTreeMap<String, String>> {
    text.split(',')
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| Error::InvalidArgument(format!("entity '{text}': expected name=value[,name=value]")))?;
            Ok((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn composite_keys_do_not_collide_across_boundaries() {
        let a = encode_entity_key(&[Value::String("ab".into()), Value::String("c".into())]);
        let b = encode_entity_key(&[Value::String("a".into()), Value::String("bc".into())]);
        assert_ne!(a, b);
        assert_eq!(encode_entity_key(&[Value::Int32(5)]), encode_entity_key(&[Value::Int64(5)]));
    }

    #[test]
    fn parse_key_text_names_the_bad_part() {
        let k = parse_key_text("driver_id=1001,region=eu").unwrap();
        assert_eq!(k["region"], "eu");
        assert!(parse_key_text("1001").unwrap_err().to_string().contains("1001"));
    }

    proptest! {
        #[test]
        fn keys_decode_to_what_was_encoded(a: i64, b in ".{0,12}", c: i32, d: Vec<u8>) {
            use crate::ValueType as T;
            let keys = [("a", T::Int64), ("b", T::String), ("c", T::Int32), ("d", T::Bytes)]
                .map(|(name, ty)| JoinKey { name: name.into(), ty });
            let key = vec![Value::Int64(a), Value::String(b), Value::Int32(c), Value::Bytes(d)];
            prop_assert_eq!(decode_entity_key(&encode_entity_key(&key), &keys).unwrap(), key);
        }

        #[test]
        fn integer_encoding_preserves_order(a: i64, b: i64) {
            let ea = encode_entity_key(&[Value::Int64(a)]);
            let eb = encode_entity_key(&[Value::Int64(b)]);
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
        }
    }
}
