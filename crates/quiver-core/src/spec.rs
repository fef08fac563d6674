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
