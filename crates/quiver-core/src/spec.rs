//! Definitions as users write them (`quiverctl apply -f FILE`): the input of a registry apply.
//! Unknown fields are rejected so that a typo never silently drops a setting. No
//! `skip_serializing_if` here: these types also travel in bincode, which needs every field.

use serde::{Deserialize, Serialize};

use crate::ValueType;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    pub project: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub entities: Vec<EntitySpec>,
    #[serde(default)]
    pub feature_sets: Vec<FeatureSetSpec>,
    #[serde(default)]
    pub feature_vectors: Vec<VectorSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    pub name: String,
    pub join_keys: Vec<JoinKey>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinKey {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ValueType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSetSpec {
    pub name: String,
    pub entity: String,
    /// Name of the event-timestamp column of incoming rows.
    pub timestamp: String,
    /// `7d`, `12h`, …; absent or `0` means values never expire.
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub features: Vec<FeatureSpec>,
    #[serde(default)]
    pub monitoring: Option<MonitoringSpec>,
}

/// Drift monitoring of a feature set: a background check compares the latest `window` of
/// offline rows (by event time) with `reference` every `every`, and records the result;
/// `thresholds` also set the status of drift reports on this feature set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    /// `dataset:NAME` or `FROM..TO` (dates or RFC 3339); none: thresholds only, no check.
    #[serde(default)]
    pub reference: Option<String>,
    /// Length of the current window, e.g. `1d` (the default).
    #[serde(default)]
    pub window: Option<String>,
    /// How often the check runs, e.g. `1h` (the default).
    #[serde(default)]
    pub every: Option<String>,
    #[serde(default)]
    pub thresholds: crate::stats::DriftThresholds,
}

/// What a monitor compares the current window with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorReference {
    Dataset(String),
    Range(Option<i64>, Option<i64>),
}

impl MonitoringSpec {
    pub fn reference(&self) -> crate::Result<Option<MonitorReference>> {
        let Some(text) = &self.reference else { return Ok(None) };
        if let Some(name) = text.strip_prefix("dataset:") {
            return Ok(Some(MonitorReference::Dataset(name.to_string())));
        }
        let (from, to) = crate::time::parse_range(text)
            .map_err(|e| crate::Error::InvalidDefinition(format!("monitoring.reference: {e}")))?;
        Ok(Some(MonitorReference::Range(from, to)))
    }

    fn duration(text: &Option<String>, name: &str, default_secs: u64) -> crate::Result<u64> {
        match text {
            None => Ok(default_secs),
            Some(t) => humantime::parse_duration(t)
                .map(|d| d.as_secs().max(1))
                .map_err(|e| crate::Error::InvalidDefinition(format!("monitoring.{name} '{t}': {e}"))),
        }
    }

    /// Seconds of event time in the current window.
    pub fn window_secs(&self) -> crate::Result<u64> {
        Self::duration(&self.window, "window", 86_400)
    }

    /// Seconds between checks.
    pub fn every_secs(&self) -> crate::Result<u64> {
        Self::duration(&self.every, "every", 3_600)
    }

    /// Everything a registry apply must refuse.
    pub fn validate(&self) -> crate::Result<()> {
        self.reference()?;
        self.window_secs()?;
        self.every_secs()?;
        self.thresholds.validate()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ValueType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorSpec {
    pub name: String,
    /// `set:feature`, `set@2:feature` or `set:*`.
    pub features: Vec<String>,
    #[serde(default)]
    pub description: String,
}
