//! Feature rows: validation of incoming rows, the stored form, last-writer-wins and TTL.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::{EntityKey, entity_key_from};
use crate::registry::{Entity, FeatureSet};
use crate::time::{MICROS_PER_SEC, format_timestamp};
use crate::{Error, Result, Value, ValueType};

/// The most rows one write request may carry; larger inputs are sent in several batches.
pub const MAX_ROWS_PER_WRITE: usize = 100_000;

/// The most entity keys one online read may ask for.
pub const MAX_ENTITIES_PER_READ: usize = 10_000;

/// The type of each column a row of a feature set may carry (its entity's join keys, its
/// event-time column, its features): how rows given as JSON or CSV are typed.
pub struct Columns<'a> {
    fs: &'a FeatureSet,
    types: HashMap<String, ValueType>,
}

impl<'a> Columns<'a> {
    pub fn of(entity: &Entity, fs: &'a FeatureSet) -> Columns<'a> {
        let mut types: HashMap<_, _> = entity.join_keys.iter().map(|k| (k.name.clone(), k.ty)).collect();
        types.insert(fs.timestamp_column.clone(), ValueType::Timestamp);
        types.extend(fs.features.iter().map(|f| (f.name.clone(), f.ty)));
        Columns { fs, types }
    }

    /// The type of `field`, of row `n` (from 1); a field that is no column is refused by name.
    pub fn ty(&self, n: usize, field: &str) -> Result<ValueType> {
        self.types.get(field).copied().ok_or_else(|| self.fs.unknown_field(n, field))
    }

    /// Row `n` (from 1) given as a JSON object, each value converted to its column's type.
    pub fn from_json(&self, n: usize, object: serde_json::Map<String, serde_json::Value>) -> Result<InputRow> {
        object
            .into_iter()
            .map(|(field, json)| {
                let value = Value::from_json(&json, self.ty(n, &field)?).map_err(|e| Error::row(n, &field, e))?;
                Ok((field, value))
            })
            .collect()
    }
}

/// A row as written: field name → value.
pub type InputRow = BTreeMap<String, Value>;

/// A row checked against its feature set: values in the feature set's column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedRow {
    pub key: EntityKey,
    pub event_ts: i64,
    pub values: Vec<Value>,
}

/// Checks every row; the first bad one fails the whole batch, naming its row (from 1)
/// and field, so that nothing of a bad batch is written.
pub fn validate_rows(entity: &Entity, fs: &FeatureSet, rows: Vec<InputRow>) -> Result<Vec<ValidatedRow>> {
    if rows.len() > MAX_ROWS_PER_WRITE {
        return Err(Error::TooLarge(format!(
            "{} rows in one write; the limit is {MAX_ROWS_PER_WRITE}, split the input",
            rows.len()
        )));
    }
    rows.into_iter().enumerate().map(|(i, row)| validate_row(entity, fs, i + 1, row)).collect()
}

/// Checks one row, numbered `n` from 1 in its input.
pub fn validate_row(entity: &Entity, fs: &FeatureSet, n: usize, mut row: InputRow) -> Result<ValidatedRow> {
    let key = entity_key_from(&entity.join_keys, |name| row.remove(name), |field, why| Error::row(n, field, why))?;
    let ts_col = &fs.timestamp_column;
    let event_ts = match row.remove(ts_col) {
        None | Some(Value::Null) => return Err(Error::row(n, ts_col, "event timestamp is missing")),
        Some(v) => match v.conform(ValueType::Timestamp) {
            Ok(Value::Timestamp(t)) => t,
            Ok(_) => unreachable!("conform returns the requested type"),
            Err(e) => return Err(Error::row(n, ts_col, e)),
        },
    };
    let mut values = vec![Value::Null; fs.features.len()];
    for (field, value) in row {
        let i = fs.feature_index(&field).ok_or_else(|| fs.unknown_field(n, &field))?;
        values[i] = value.conform(fs.features[i].ty).map_err(|e| Error::row(n, &field, e))?;
    }
    Ok(ValidatedRow { key, event_ts, values })
}

/// Refuses an event time more than `max_future` ahead of `now` (µs): such a row would win
/// every later write of its entity by event time until its time came. `row` numbers it (from
/// 1) in its input and `field` is its event-time column. Pure: the caller reads the clock.
pub fn check_event_time(row: usize, field: &str, event_ts: i64, now: i64, max_future: Duration) -> Result<()> {
    let skew = i64::try_from(max_future.as_micros()).unwrap_or(i64::MAX);
    if event_ts <= now.saturating_add(skew) {
        return Ok(());
    }
    Err(Error::row(
        row,
        field,
        format!(
            "event time {} is in the future, more than {} after the server's clock ({}); \
             a sentinel date or a time in the wrong unit?",
            format_timestamp(event_ts),
            humantime::format_duration(max_future),
            format_timestamp(now)
        ),
    ))
}

/// Where a row was written in its shard: the Raft log index of its batch and its position
/// in the batch. It orders the shard's export queue; it does not settle ties between rows
/// (see `supersedes`), because a key that changes shard changes log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteSeq {
    pub log_index: u64,
    pub pos: u32,
}

/// The latest row of one (feature set version, entity) in the online store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRow {
    pub event_ts: i64,
    pub seq: WriteSeq,
    /// Leader's clock when the write was committed, microseconds.
    pub written_at: i64,
    /// In the feature set's column order; a shorter list than the schema means the
    /// trailing features were added after this row was written and read as null.
    pub values: Vec<Value>,
}

/// Last writer wins by event time; at equal event time the later write wins. "Later" is
/// the order writes are applied in: a key's writes are applied by the logs of the shards that
/// owned it in turn, and a split's child or a merge's survivor takes writes of a key only
/// after the key's row has arrived, so that order is one total order over every write the
/// key ever had. (Log positions are not: a split's child numbers its log from 0.) The
/// offline store breaks ties by ingestion order, which export keeps the same
/// (`workers::export` in quiver-node).
pub fn supersedes(new_event_ts: i64, old_event_ts: i64) -> bool {
    new_event_ts >= old_event_ts
}

/// Whether a row of event time `event_ts` is past its TTL at `now` (microseconds).
/// A value is fresh while `event_ts > now - ttl`, the same bound as the point-in-time join.
pub fn is_expired(event_ts: i64, ttl_secs: u64, now: i64) -> bool {
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX).saturating_mul(MICROS_PER_SEC);
    ttl_secs > 0 && event_ts <= now.saturating_sub(ttl)
}

/// The answer for one feature of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    /// A row within the feature set's TTL.
    Present,
    /// No row for this entity.
    NotFound,
    /// A row older than the TTL: its value reads as null.
    Expired,
}

impl Freshness {
    /// As answers outside gRPC name it (JSON over HTTP, the Python client).
    pub fn name(self) -> &'static str {
        match self {
            Freshness::Present => "PRESENT",
            Freshness::NotFound => "NOT_FOUND",
            Freshness::Expired => "EXPIRED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FeatureSpec, JoinKey};
    use proptest::prelude::*;

    fn schema() -> (Entity, FeatureSet) {
        let entity = Entity {
            name: "driver".into(),
            join_keys: vec![JoinKey { name: "driver_id".into(), ty: ValueType::Int64 }],
            description: String::new(),
            created_at: 0,
            updated_at: 0,
        };
        let feature = |name: &str, ty| FeatureSpec { name: name.into(), ty, description: String::new(), tags: vec![] };
        let fs = FeatureSet {
            name: "driver_stats".into(),
            version: 1,
            entity: "driver".into(),
            timestamp_column: "ts".into(),
            ttl_secs: 60,
            owner: String::new(),
            description: String::new(),
            tags: vec![],
            features: vec![feature("rate", ValueType::Float64), feature("trips", ValueType::Int64)],
            monitoring: None,
            created_at: 0,
            updated_at: 0,
        };
        (entity, fs)
    }

    fn row(fields: &[(&str, Value)]) -> InputRow {
        fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn valid_rows_come_back_in_column_order_with_missing_features_null() {
        let (e, fs) = schema();
        let rows = validate_rows(
            &e,
            &fs,
            vec![row(&[("driver_id", Value::Int32(7)), ("ts", Value::Int64(5)), ("trips", Value::Int64(3))])],
        )
        .unwrap();
        assert_eq!(rows[0].key, vec![Value::Int64(7)]);
        assert_eq!(rows[0].event_ts, 5);
        assert_eq!(rows[0].values, vec![Value::Null, Value::Int64(3)]);
    }

    #[test]
    fn each_bad_row_names_its_row_and_field() {
        let (e, fs) = schema();
        let good = row(&[("driver_id", Value::Int64(1)), ("ts", Value::Int64(1))]);
        let cases = [
            (row(&[("ts", Value::Int64(1))]), "driver_id", "missing"),
            (row(&[("driver_id", Value::Int64(1))]), "ts", "missing"),
            (row(&[("driver_id", Value::String("x".into())), ("ts", Value::Int64(1))]), "driver_id", "expected int64"),
            (row(&[("driver_id", Value::Int64(1)), ("ts", Value::Float64(1.0))]), "ts", "expected timestamp"),
            (
                row(&[("driver_id", Value::Int64(1)), ("ts", Value::Int64(1)), ("rate", Value::String("x".into()))]),
                "rate",
                "expected float64",
            ),
            (
                row(&[("driver_id", Value::Int64(1)), ("ts", Value::Int64(1)), ("speed", Value::Int64(1))]),
                "speed",
                "unknown feature",
            ),
        ];
        for (bad, field, reason) in cases {
            let err = validate_rows(&e, &fs, vec![good.clone(), bad]).unwrap_err();
            match &err {
                Error::InvalidRow { row, field: f, reason: r } => {
                    assert_eq!((*row, f.as_str()), (2, field), "{err}");
                    assert!(r.contains(reason), "{err}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_batches_are_refused() {
        let (e, fs) = schema();
        let rows = vec![InputRow::new(); MAX_ROWS_PER_WRITE + 1];
        assert!(matches!(validate_rows(&e, &fs, rows), Err(Error::TooLarge(_))));
    }

    #[test]
    fn ttl_bound_is_exclusive_at_now_minus_ttl() {
        let now = 100 * MICROS_PER_SEC;
        assert!(!is_expired(now - 60 * MICROS_PER_SEC + 1, 60, now));
        assert!(is_expired(now - 60 * MICROS_PER_SEC, 60, now));
        assert!(!is_expired(i64::MIN, 0, now), "ttl 0 never expires");
    }

    #[test]
    fn event_times_beyond_the_allowed_skew_are_refused_naming_row_and_field() {
        let now = 1_767_225_600 * MICROS_PER_SEC;
        let day = Duration::from_secs(86_400);
        let day_us = 86_400 * MICROS_PER_SEC;
        for ok in [i64::MIN, 0, now, now + day_us] {
            assert_eq!(check_event_time(1, "ts", ok, now, day), Ok(()), "{ok}");
        }
        let end_of_time = 253_402_300_799 * MICROS_PER_SEC;
        for bad in [now + day_us + 1, end_of_time, i64::MAX] {
            match check_event_time(4, "ts", bad, now, day) {
                Err(Error::InvalidRow { row: 4, field, reason }) => {
                    assert_eq!(field, "ts");
                    assert!(reason.contains(&format_timestamp(bad)) && reason.contains("1day"), "{reason}");
                }
                other => panic!("{bad}: unexpected {other:?}"),
            }
        }
        let zero = Duration::ZERO;
        assert!(
            check_event_time(1, "ts", now, now, zero).is_ok() && check_event_time(1, "ts", now + 1, now, zero).is_err()
        );
        assert_eq!(check_event_time(1, "ts", end_of_time, now, Duration::MAX), Ok(()), "no overflow at any skew");
    }

    proptest! {
        /// Applied in order, the writes leave the last of those with the greatest event time.
        #[test]
        fn the_last_write_of_the_newest_event_wins(times in proptest::collection::vec(0i64..5, 1..20)) {
            let mut current: Option<(i64, usize)> = None;
            for (i, ts) in times.iter().enumerate() {
                if current.is_none_or(|(old, _)| supersedes(*ts, old)) {
                    current = Some((*ts, i));
                }
            }
            let newest = times.iter().max().copied();
            let last = times.iter().rposition(|t| Some(*t) == newest);
            prop_assert_eq!(current, newest.zip(last));
        }

        #[test]
        fn an_older_event_never_replaces_a_newer_one(old_ts in 0i64..1000, delta in 1i64..1000) {
            prop_assert!(!supersedes(old_ts, old_ts + delta));
            prop_assert!(supersedes(old_ts + delta, old_ts) && supersedes(old_ts, old_ts));
        }
    }
}
