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

/// `quiverctl get --format table`: one line per entity, join keys then features; after a
/// stale read, how old the answer may be.
pub fn online_table(entities: &[BTreeMap<String, Value>], answer: &OnlineFeatures, stale: bool) -> String {
    let key_names: Vec<&str> = entities.first().map(|e| e.keys().map(String::as_str).collect()).unwrap_or_default();
    let headers: Vec<&str> = key_names.iter().copied().chain(answer.features.iter().map(String::as_str)).collect();
    let rows: Vec<Vec<String>> = entities
        .iter()
        .zip(&answer.rows)
        .map(|(keys, values)| keys.values().map(Value::to_string).chain(values.iter().map(cell)).collect())
        .collect();
    let mut text = table(&headers, &rows);
    if stale {
        text += &format!("stale read: at most {} ms behind the shards' leaders\n", answer.staleness_bound_ms);
    }
    text
}

/// `quiverctl get --format json`: one line per entity, see [`EntityLine`].
pub fn online_json(
    entities: &[BTreeMap<String, Value>],
    answer: &OnlineFeatures,
    stale: bool,
) -> serde_json::Result<String> {
    let staleness_bound_ms = stale.then_some(answer.staleness_bound_ms);
    let lines = entities.iter().zip(&answer.rows).map(|(keys, values)| {
        json(&EntityLine { keys, features: &answer.features, values, staleness_bound_ms }).map(|line| line + "\n")
    });
    lines.collect()
}

/// One entity of an online answer as one JSON object: its join keys first, then each
/// feature reference with its value (null when absent or expired); after a stale read,
/// `staleness_bound_ms` last.
struct EntityLine<'a> {
    keys: &'a BTreeMap<String, Value>,
    features: &'a [String],
    values: &'a [FeatureValue],
    staleness_bound_ms: Option<u64>,
}

impl Serialize for EntityLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.keys.len() + self.features.len() + usize::from(self.staleness_bound_ms.is_some());
        let mut map = s.serialize_map(Some(fields))?;
        for (name, value) in self.keys {
            map.serialize_entry(name, &value.to_json())?;
        }
        for (name, value) in self.features.iter().zip(self.values) {
            map.serialize_entry(name, &value.value.to_json())?;
        }
        if let Some(bound) = self.staleness_bound_ms {
            map.serialize_entry("staleness_bound_ms", &bound)?;
        }
        map.end()
    }
}
