//! Definitions as users write them (`quiverctl apply -f FILE`, `Definitions::from_yaml`): the
//! input of a registry apply. Unknown fields are rejected so that a typo never silently drops
//! a setting. No `skip_serializing_if` here: these types also travel in bincode, which needs
//! every field.

use std::path::Path;

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

impl Definitions {
    /// Empty definitions of `project`, to fill in Rust rather than YAML:
    ///
    /// ```
    /// use quiver_core::ValueType::{Float64, Int64};
    /// use quiver_core::spec::{Definitions, FeatureSetSpec};
    ///
    /// let defs = Definitions::new("rides")
    ///     .entity("driver", &[("driver_id", Int64)])
    ///     .feature_set(FeatureSetSpec::new("driver_stats", "driver", "event_timestamp", &[("conv_rate", Float64)]).ttl("7d"))
    ///     .vector("driver_model", &["driver_stats:conv_rate"]);
    /// assert_eq!(defs.feature_sets[0].features[0].name, "conv_rate");
    /// ```
    pub fn new(project: &str) -> Definitions {
        Definitions { project: project.into(), ..Definitions::default() }
    }

    /// Adds entity `name`, identified by `join_keys` (name, type).
    pub fn entity(mut self, name: &str, join_keys: &[(&str, ValueType)]) -> Definitions {
        let join_keys = join_keys.iter().map(|(name, ty)| JoinKey { name: (*name).into(), ty: *ty }).collect();
        self.entities.push(EntitySpec { name: name.into(), join_keys, description: String::new() });
        self
    }

    /// Adds a feature set.
    pub fn feature_set(mut self, set: FeatureSetSpec) -> Definitions {
        self.feature_sets.push(set);
        self
    }

    /// Adds vector `name` over `features` (`set:feature`, `set@2:feature` or `set:*`).
    pub fn vector(mut self, name: &str, features: &[&str]) -> Definitions {
        let features = features.iter().map(|f| (*f).to_string()).collect();
        self.feature_vectors.push(VectorSpec { name: name.into(), features, description: String::new() });
        self
    }

    /// Definitions from YAML text, as `quiverctl apply` reads a file.
    pub fn from_yaml(text: &str) -> crate::Result<Definitions> {
        let invalid = |e: serde_yaml_ng::Error| crate::Error::InvalidDefinition(e.to_string());
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(invalid)?;
        rejoin_split_descriptions(&mut doc);
        serde_yaml_ng::from_value(doc).map_err(invalid)
    }

    /// Definitions from a YAML file; errors name the file.
    pub fn from_path(path: impl AsRef<Path>) -> crate::Result<Definitions> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::InvalidArgument(format!("reading {}: {e}", path.display())))?;
        Definitions::from_yaml(&text).map_err(|e| match e {
            crate::Error::InvalidDefinition(why) => {
                crate::Error::InvalidDefinition(format!("{}: {why}", path.display()))
            }
            other => other,
        })
    }
}

/// In a flow mapping such as `{name: trips, description: trips per day, 30-day mean}` YAML
/// reads the text after the comma as a key with no value. Such keys right after a
/// `description` are put back into it, so the natural way of writing a feature works;
/// any other unknown key still fails with serde's message naming it.
fn rejoin_split_descriptions(doc: &mut serde_yaml_ng::Value) {
    use serde_yaml_ng::Value as Y;
    let Some(sets) = doc.get_mut("feature_sets").and_then(Y::as_sequence_mut) else { return };
    for features in sets.iter_mut().filter_map(|s| s.get_mut("features")).filter_map(Y::as_sequence_mut) {
        for feature in features.iter_mut().filter_map(Y::as_mapping_mut) {
            let Some(Y::String(mut description)) = feature.get("description").cloned() else { continue };
            let stray: Vec<Y> = feature
                .iter()
                .skip_while(|(k, _)| k.as_str() != Some("description"))
                .skip(1)
                .take_while(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect();
            for key in stray.iter().filter_map(|k| k.as_str().map(|s| (k, s.to_string()))) {
                description = format!("{description}, {}", key.1);
                feature.remove(key.0);
            }
            feature.insert(Y::from("description"), Y::String(description));
        }
    }
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

impl FeatureSetSpec {
    /// Feature set `name` of `entity`, its rows' event time in column `timestamp`, with
    /// `features` (name, type); no TTL, owner, tags or monitoring until set.
    pub fn new(name: &str, entity: &str, timestamp: &str, features: &[(&str, ValueType)]) -> FeatureSetSpec {
        FeatureSetSpec {
            name: name.into(),
            entity: entity.into(),
            timestamp: timestamp.into(),
            ttl: None,
            owner: String::new(),
            description: String::new(),
            tags: Vec::new(),
            features: features
                .iter()
                .map(|(name, ty)| FeatureSpec {
                    name: (*name).into(),
                    ty: *ty,
                    description: String::new(),
                    tags: Vec::new(),
                })
                .collect(),
            monitoring: None,
        }
    }

    /// Values older than `ttl` (`7d`, `12h`, …) read as expired.
    pub fn ttl(mut self, ttl: &str) -> FeatureSetSpec {
        self.ttl = Some(ttl.into());
        self
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_in_a_flow_description_stays_in_it_and_a_typo_is_named() {
        let yaml = "project: rides\nentities:\n  - name: driver\n    join_keys: [{name: driver_id, type: int64}]\n\
            feature_sets:\n  - name: driver_stats\n    entity: driver\n    timestamp: event_timestamp\n    ttl: 7d\n\
            \x20   features:\n      - {name: avg_daily_trips, type: int64, description: trips per day, 30-day mean}\n\
            \x20     - {name: city, type: string, tags: [pii]}\n";
        let defs = Definitions::from_yaml(yaml).unwrap();
        assert_eq!(defs.feature_sets[0].features[0].description, "trips per day, 30-day mean");
        assert_eq!(defs.feature_sets[0].features[1].tags, vec!["pii"]);
        let typo = yaml.replace("tags: [pii]", "tag: [pii]");
        assert!(Definitions::from_yaml(&typo).unwrap_err().to_string().contains("tag"));
    }

    #[test]
    fn the_projects_example_file_reads_and_a_missing_file_is_named() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rides.yaml");
        assert_eq!(Definitions::from_path(example).unwrap().project, "rides");
        let missing = Definitions::from_path("/no/such/defs.yaml").unwrap_err().to_string();
        assert!(missing.contains("/no/such/defs.yaml"), "{missing}");
    }
}
