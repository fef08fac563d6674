//! Online answers: one line per entity.

use std::collections::BTreeMap;

use quiver_client::{FeatureValue, Freshness, OnlineFeatures, Value};
use serde::Serialize;

use super::format::{json, table};

fn cell(v: &FeatureValue) -> String {
    match v.status {
        Freshness::Present => v.value.to_string(),
        Freshness::NotFound => "-".into(),
        Freshness::Expired => "(expired)".into(),
    }
}

/// `quiverctl get --format table`: one line per entity, join keys then features.
pub fn online_table(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures) -> String {
    let key_names: Vec<&str> = entities.first().map(|e| e.keys().map(String::as_str).collect()).unwrap_or_default();
    let headers: Vec<&str> = key_names.iter().copied().chain(answer.features.iter().map(String::as_str)).collect();
    let rows: Vec<Vec<String>> = entities
        .iter()
        .zip(&answer.rows)
        .map(|(keys, values)| keys.values().map(Value::to_string).chain(values.iter().map(cell)).collect())
        .collect();
    table(&headers, &rows)
}

/// `quiverctl get --format json`: one line per entity, see [`EntityLine`].
pub fn online_json(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures) -> serde_json::Result<String> {
    let lines = entities
        .iter()
        .zip(&answer.rows)
        .map(|(keys, values)| json(&EntityLine { keys, features: &answer.features, values }).map(|line| line + "\n"));
    lines.collect()
}

/// One entity of an online answer as one JSON object: its join keys first, then each
/// feature reference with its value (null when absent or expired).
struct EntityLine<'a> {
    keys: &'a BTreeMap<String, Value>,
    features: &'a [String],
    values: &'a [FeatureValue],
}

impl Serialize for EntityLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.keys.len() + self.features.len()))?;
        for (name, value) in self.keys {
            map.serialize_entry(name, &value.to_json())?;
        }
        for (name, value) in self.features.iter().zip(self.values) {
            map.serialize_entry(name, &value.value.to_json())?;
        }
        map.end()
    }
}
