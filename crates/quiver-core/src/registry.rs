//! The registry: projects, entities, versioned feature sets and feature vectors.
//!
//! `Registry::apply` is deterministic (time comes in as an argument) because the meta Raft
//! group runs it inside `apply`: every replica must reach the same registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{Definitions, EntitySpec, FeatureSetSpec, FeatureSpec, JoinKey, MonitoringSpec, VectorSpec};
use crate::time::parse_ttl;
use crate::{Error, Result, ValueType};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Registry {
    pub projects: BTreeMap<String, Project>,
}

/// Everything a project declares: entities, every feature-set version, feature vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub entities: BTreeMap<String, Entity>,
    /// Every version of each feature set, oldest first; the last is the current one.
    pub feature_sets: BTreeMap<String, Vec<FeatureSet>>,
    pub vectors: BTreeMap<String, FeatureVector>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    pub join_keys: Vec<JoinKey>,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub name: String,
    pub version: u32,
    pub entity: String,
    pub timestamp_column: String,
    /// 0 means values never expire.
    pub ttl_secs: u64,
    pub owner: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Stored rows keep values in this order; compatible updates only append.
    pub features: Vec<FeatureSpec>,
    pub monitoring: Option<MonitoringSpec>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureVector {
    pub name: String,
    pub features: Vec<String>,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What one apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ObjectKind,
    pub name: String,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    Project,
    Entity,
    FeatureSet,
    Vector,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Created,
    Updated,
    /// An incompatible change: the older versions stay readable.
    NewVersion(u32),
    Unchanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ObjectKind::Project => "project",
            ObjectKind::Entity => "entity",
            ObjectKind::FeatureSet => "feature set",
            ObjectKind::Vector => "feature vector",
        };
        match &self.action {
            Action::Created => write!(f, "{kind} {}: created", self.name),
            Action::Updated => write!(f, "{kind} {}: updated in place", self.name),
            Action::NewVersion(v) => {
                write!(f, "{kind} {}: incompatible change, created {}@{v}", self.name, self.name)
            }
            Action::Unchanged => write!(f, "{kind} {}: unchanged", self.name),
        }
    }
}

/// A parsed feature reference: `set:feature`, `set@2:feature` or `set:*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureRef {
    pub set: String,
    pub version: Option<u32>,
    /// `None` stands for every feature of the set (`set:*`).
    pub feature: Option<String>,
}

impl FeatureRef {
    pub fn parse(text: &str) -> Result<FeatureRef> {
        let bad = |why: &str| Error::InvalidArgument(format!("feature reference '{text}': {why}"));
        let (set_part, feature) = text.trim().split_once(':').ok_or_else(|| bad("expected set:feature"))?;
        let (set, version) = match set_part.split_once('@') {
            Some((set, v)) => (set, Some(v.parse::<u32>().map_err(|_| bad("version after @ must be a number"))?)),
            None => (set_part, None),
        };
        if set.is_empty() || feature.is_empty() {
            return Err(bad("expected set:feature"));
        }
        let feature = (feature != "*").then(|| feature.to_string());
        Ok(FeatureRef { set: set.to_string(), version, feature })
    }
}

/// One feature of a read or a vector, resolved to a feature-set version and a column.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFeature {
    /// How the answer names it: `set:feature`, or `set@v:feature` when the request pinned a version.
    pub reference: String,
    pub set: String,
    pub version: u32,
    pub index: usize,
    pub ty: ValueType,
}

impl Registry {
    pub fn project(&self, name: &str) -> Result<&Project> {
        self.projects.get(name).ok_or_else(|| Error::UnknownProject(name.to_string()))
    }

    /// Applies a definitions file. All-or-nothing: on error the registry is unchanged.
    /// Objects that exist but are absent from the file are left as they are.
    pub fn apply(&mut self, defs: &Definitions, now: i64) -> Result<Vec<Change>> {
        check_name("project", &defs.project)?;
        let mut changes = Vec::new();
        let mut project = match self.projects.get(&defs.project) {
            Some(p) => p.clone(),
            None => {
                changes.push(change(ObjectKind::Project, &defs.project, Action::Created));
                Project {
                    name: defs.project.clone(),
                    description: defs.description.clone(),
                    entities: BTreeMap::new(),
                    feature_sets: BTreeMap::new(),
                    vectors: BTreeMap::new(),
                    created_at: now,
                }
            }
        };
        if !defs.description.is_empty() && project.description != defs.description {
            project.description = defs.description.clone();
            if changes.is_empty() {
                changes.push(change(ObjectKind::Project, &defs.project, Action::Updated));
            }
        }
        unique_names("entity", defs.entities.iter().map(|e| &e.name))?;
        unique_names("feature set", defs.feature_sets.iter().map(|f| &f.name))?;
        unique_names("feature vector", defs.feature_vectors.iter().map(|v| &v.name))?;
        for spec in &defs.entities {
            changes.push(project.apply_entity(spec, now)?);
        }
        for spec in &defs.feature_sets {
            changes.push(project.apply_feature_set(spec, now)?);
        }
        for spec in &defs.feature_vectors {
            changes.push(project.apply_vector(spec, now)?);
        }
        if changes.iter().any(|c| c.action != Action::Unchanged) {
            self.projects.insert(project.name.clone(), project);
        }
        Ok(changes)
    }
}

/// Which features a read or a training set asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSelection {
    /// A feature vector declared in the registry.
    Vector(String),
    /// `set:feature`, `set@2:feature` or `set:*` references, possibly from several sets.
    Refs(Vec<String>),
}

impl Project {
    pub fn entity(&self, name: &str) -> Result<&Entity> {
        self.entities.get(name).ok_or_else(|| Error::UnknownEntity(name.to_string()))
    }

    /// The named version of a feature set, or its current one.
    pub fn feature_set(&self, name: &str, version: Option<u32>) -> Result<&FeatureSet> {
        let versions = self.feature_sets.get(name).ok_or_else(|| Error::UnknownFeatureSet(name.to_string()))?;
        match version {
            None => versions.last().ok_or_else(|| Error::UnknownFeatureSet(name.to_string())),
            Some(v) => versions
                .iter()
                .find(|fs| fs.version == v)
                .ok_or_else(|| Error::UnknownFeatureSet(format!("{name}@{v}"))),
        }
    }

    /// Looks up `name` or `name@version`.
    pub fn feature_set_by_ref(&self, text: &str) -> Result<&FeatureSet> {
        match text.split_once('@') {
            Some((name, v)) => {
                let v = v.parse().map_err(|_| Error::UnknownFeatureSet(text.to_string()))?;
                self.feature_set(name, Some(v))
            }
            None => self.feature_set(text, None),
        }
    }

    pub fn vector(&self, name: &str) -> Result<&FeatureVector> {
        self.vectors.get(name).ok_or_else(|| Error::UnknownVector(name.to_string()))
    }

    /// The feature references `selection` names: a vector's, or the references themselves.
    pub fn feature_refs(&self, selection: &FeatureSelection) -> Result<Vec<String>> {
        match selection {
            FeatureSelection::Vector(name) => Ok(self.vector(name)?.features.clone()),
            FeatureSelection::Refs(refs) => Ok(refs.clone()),
        }
    }

    /// Every feature `selection` names, resolved (see [`Project::resolve`]).
    pub fn select(&self, selection: &FeatureSelection) -> Result<Vec<ResolvedFeature>> {
        self.resolve(&self.feature_refs(selection)?)
    }

    /// Resolves feature references (with `set:*` expanded) in the order given.
    pub fn resolve(&self, refs: &[String]) -> Result<Vec<ResolvedFeature>> {
        let mut out = Vec::new();
        for text in refs {
            let r = FeatureRef::parse(text)?;
            let fs = self.feature_set(&r.set, r.version)?;
            let prefix = match r.version {
                Some(v) => format!("{}@{v}", fs.name),
                None => fs.name.clone(),
            };
            let mut push = |index: usize, f: &FeatureSpec| {
                out.push(ResolvedFeature {
                    reference: format!("{prefix}:{}", f.name),
                    set: fs.name.clone(),
                    version: fs.version,
                    index,
                    ty: f.ty,
                })
            };
            match &r.feature {
                None => fs.features.iter().enumerate().for_each(|(i, f)| push(i, f)),
                Some(name) => {
                    let index = fs.feature_index(name).ok_or_else(|| Error::UnknownFeature {
                        feature: format!("{prefix}:{name}"),
                        known: fs.feature_names().iter().map(|n| n.to_string()).collect(),
                    })?;
                    push(index, &fs.features[index]);
                }
            }
        }
        if out.is_empty() {
            return Err(Error::InvalidArgument("no features requested".into()));
        }
        Ok(out)
    }

    fn apply_entity(&mut self, spec: &EntitySpec, now: i64) -> Result<Change> {
        check_name("entity", &spec.name)?;
        if spec.join_keys.is_empty() {
            return Err(invalid(format!("entity {} needs at least one join key", spec.name)));
        }
        unique_names(&format!("join key of entity {}", spec.name), spec.join_keys.iter().map(|k| &k.name))?;
        for key in &spec.join_keys {
            check_name("join key", &key.name)?;
            if !key.ty.can_be_join_key() {
                return Err(invalid(format!(
                    "join key {}.{} has type {}; join keys must be int32, int64, string or bytes",
                    spec.name, key.name, key.ty
                )));
            }
        }
        let action = match self.entities.get_mut(&spec.name) {
            None => {
                let entity = Entity {
                    name: spec.name.clone(),
                    join_keys: spec.join_keys.clone(),
                    description: spec.description.clone(),
                    created_at: now,
                    updated_at: now,
                };
                self.entities.insert(spec.name.clone(), entity);
                Action::Created
            }
            Some(old) if old.join_keys != spec.join_keys => {
                return Err(invalid(format!(
                    "entity {} already has join keys {}; changing join keys would orphan stored rows, \
                     declare a new entity instead",
                    spec.name,
                    describe_keys(&old.join_keys)
                )));
            }
            Some(old) if old.description != spec.description => {
                old.description = spec.description.clone();
                old.updated_at = now;
                Action::Updated
            }
            Some(_) => Action::Unchanged,
        };
        Ok(change(ObjectKind::Entity, &spec.name, action))
    }

    fn apply_feature_set(&mut self, spec: &FeatureSetSpec, now: i64) -> Result<Change> {
        let name = &spec.name;
        check_name("feature set", name)?;
        let entity = self
            .entities
            .get(&spec.entity)
            .ok_or_else(|| invalid(format!("feature set {name} names unknown entity '{}'", spec.entity)))?;
        if spec.features.is_empty() {
            return Err(invalid(format!("feature set {name} declares no features")));
        }
        unique_names(&format!("feature of {name}"), spec.features.iter().map(|f| &f.name))?;
        let reserved: BTreeSet<&str> =
            entity.join_keys.iter().map(|k| k.name.as_str()).chain([spec.timestamp.as_str()]).collect();
        for f in &spec.features {
            check_name("feature", &f.name)?;
            if reserved.contains(f.name.as_str()) {
                return Err(invalid(format!(
                    "feature {name}:{} has the name of a join key or of the timestamp column",
                    f.name
                )));
            }
        }
        check_name("timestamp column", &spec.timestamp)?;
        if let Some(m) = &spec.monitoring {
            m.validate().map_err(|e| invalid(format!("feature set {name}: {e}")))?;
        }
        let ttl_secs = match &spec.ttl {
            Some(t) => parse_ttl(t).map_err(|e| invalid(format!("feature set {name}: {e}")))?,
            None => 0,
        };
        let candidate = FeatureSet {
            name: name.clone(),
            version: 1,
            entity: spec.entity.clone(),
            timestamp_column: spec.timestamp.clone(),
            ttl_secs,
            owner: spec.owner.clone(),
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            features: spec.features.clone(),
            monitoring: spec.monitoring.clone(),
            created_at: now,
            updated_at: now,
        };
        let versions = self.feature_sets.entry(name.clone()).or_default();
        let Some(current) = versions.last_mut() else {
            versions.push(candidate);
            return Ok(change(ObjectKind::FeatureSet, name, Action::Created));
        };
        if !current.is_compatible_with(&candidate) {
            let version = current.version + 1;
            versions.push(FeatureSet { version, ..candidate });
            return Ok(change(ObjectKind::FeatureSet, name, Action::NewVersion(version)));
        }
        // Compatible: keep the stored column order, refresh metadata, append new features.
        let mut merged = current.clone();
        merged.ttl_secs = candidate.ttl_secs;
        merged.owner = candidate.owner;
        merged.description = candidate.description;
        merged.tags = candidate.tags;
        merged.monitoring = candidate.monitoring;
        for f in &candidate.features {
            match merged.features.iter_mut().find(|m| m.name == f.name) {
                Some(m) => *m = f.clone(),
                None => merged.features.push(f.clone()),
            }
        }
        if merged == *current {
            return Ok(change(ObjectKind::FeatureSet, name, Action::Unchanged));
        }
        merged.updated_at = now;
        *current = merged;
        Ok(change(ObjectKind::FeatureSet, name, Action::Updated))
    }

    fn apply_vector(&mut self, spec: &VectorSpec, now: i64) -> Result<Change> {
        check_name("feature vector", &spec.name)?;
        if spec.features.is_empty() {
            return Err(invalid(format!("feature vector {} lists no features", spec.name)));
        }
        self.resolve(&spec.features).map_err(|e| invalid(format!("feature vector {}: {e}", spec.name)))?;
        let action = match self.vectors.get_mut(&spec.name) {
            Some(old) if old.features == spec.features && old.description == spec.description => Action::Unchanged,
            Some(old) => {
                old.features = spec.features.clone();
                old.description = spec.description.clone();
                old.updated_at = now;
                Action::Updated
            }
            None => {
                let vector = FeatureVector {
                    name: spec.name.clone(),
                    features: spec.features.clone(),
                    description: spec.description.clone(),
                    created_at: now,
                    updated_at: now,
                };
                self.vectors.insert(spec.name.clone(), vector);
                Action::Created
            }
        };
        Ok(change(ObjectKind::Vector, &spec.name, action))
    }
}

impl FeatureSet {
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// The error for a row (numbered from 1) carrying a field this set does not declare.
    pub fn unknown_field(&self, row: usize, field: &str) -> Error {
        let reason =
            format!("unknown feature (feature set {} has: {})", self.versioned_name(), self.feature_names().join(", "));
        Error::row(row, field, reason)
    }

    /// `name@version`, the form that names one version everywhere.
    pub fn versioned_name(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Rows stored under `self` stay readable under `next`: same entity and timestamp
    /// column, and every existing feature kept with its type.
    fn is_compatible_with(&self, next: &FeatureSet) -> bool {
        self.entity == next.entity
            && self.timestamp_column == next.timestamp_column
            && self.features.iter().all(|f| next.features.iter().any(|n| n.name == f.name && n.ty == f.ty))
    }
}

fn change(kind: ObjectKind, name: &str, action: Action) -> Change {
    Change { kind, name: name.to_string(), action }
}

fn invalid(message: String) -> Error {
    Error::InvalidDefinition(message)
}

fn describe_keys(keys: &[JoinKey]) -> String {
    keys.iter().map(|k| format!("{}: {}", k.name, k.ty)).collect::<Vec<_>>().join(", ")
}

/// Names appear in keys, references (`set:feature`, `set@2`) and file paths, so they are kept
/// to letters, digits, `_` and `-`.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{what} name '{name}' must be 1-128 letters, digits, '_' or '-' (not starting with '-')")))
    }
}

fn unique_names<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(invalid(format!("{what} '{name}' is declared twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(features: &str, vector: &str) -> Definitions {
        let features: Vec<(&str, ValueType)> = features
            .split(',')
            .map(|f| {
                let (name, ty) = f.split_once('=').unwrap();
                (name, ty.parse().unwrap())
            })
            .collect();
        let mut set = FeatureSetSpec::new("driver_stats", "driver", "event_timestamp", &features).ttl("7d");
        set.owner = "ml@example.com".into();
        Definitions::new("rides")
            .entity("driver", &[("driver_id", ValueType::Int64)])
            .feature_set(set)
            .vector("v1", &vector.split(',').collect::<Vec<_>>())
    }

    fn actions(changes: &[Change]) -> Vec<Action> {
        changes.iter().map(|c| c.action.clone()).collect()
    }

    #[test]
    fn monitoring_is_validated_and_updates_in_place() {
        let mut reg = Registry::default();
        reg.apply(&defs("conv=float64", "driver_stats:*"), 1).unwrap();
        let mut with = defs("conv=float64", "driver_stats:*");
        let monitoring = crate::spec::MonitoringSpec { reference: Some("dataset:train".into()), ..Default::default() };
        with.feature_sets[0].monitoring = Some(monitoring.clone());
        let changes = reg.apply(&with, 2).unwrap();
        assert_eq!(changes.iter().find(|c| c.name == "driver_stats").unwrap().action, Action::Updated);
        let fs = reg.project("rides").unwrap().feature_set("driver_stats", None).unwrap();
        assert_eq!((fs.version, fs.monitoring.as_ref()), (1, Some(&monitoring)));
        for bad in [
            crate::spec::MonitoringSpec { reference: Some("last week".into()), ..Default::default() },
            crate::spec::MonitoringSpec { every: Some("often".into()), ..Default::default() },
        ] {
            let mut d = defs("conv=float64", "driver_stats:*");
            d.feature_sets[0].monitoring = Some(bad);
            let err = reg.apply(&d, 3).unwrap_err().to_string();
            assert!(err.contains("monitoring"), "{err}");
        }
    }

    #[test]
    fn reapplying_the_same_definitions_changes_nothing() {
        let mut reg = Registry::default();
        let d = defs("a=float64,b=int64", "driver_stats:a");
        reg.apply(&d, 1).unwrap();
        let before = reg.clone();
        let changes = reg.apply(&d, 2).unwrap();
        assert!(changes.iter().all(|c| c.action == Action::Unchanged), "{changes:?}");
        assert_eq!(reg, before);
    }

    #[test]
    fn a_new_feature_updates_in_place_and_keeps_column_order() {
        let mut reg = Registry::default();
        reg.apply(&defs("a=float64,b=int64", "driver_stats:a"), 1).unwrap();
        let changes = reg.apply(&defs("c=string,a=float64,b=int64", "driver_stats:*"), 2).unwrap();
        assert_eq!(actions(&changes), vec![Action::Unchanged, Action::Updated, Action::Updated]);
        let fs = reg.project("rides").unwrap().feature_set("driver_stats", None).unwrap();
        assert_eq!(fs.version, 1);
        assert_eq!(fs.feature_names(), vec!["a", "b", "c"]);
    }

    #[test]
    fn a_type_change_or_removed_feature_creates_a_new_version() {
        let mut reg = Registry::default();
        reg.apply(&defs("a=float64,b=int64", "driver_stats:a"), 1).unwrap();
        let changes = reg.apply(&defs("a=float32,b=int64", "driver_stats:a"), 2).unwrap();
        assert_eq!(changes[1].action, Action::NewVersion(2));
        let changes = reg.apply(&defs("a=float32", "driver_stats:a"), 3).unwrap();
        assert_eq!(changes[1].action, Action::NewVersion(3));
        let project = reg.project("rides").unwrap();
        assert_eq!(project.feature_set("driver_stats", Some(1)).unwrap().features[0].ty, ValueType::Float64);
        assert_eq!(project.feature_set_by_ref("driver_stats@2").unwrap().feature_names(), vec!["a", "b"]);
        assert_eq!(project.feature_set("driver_stats", None).unwrap().version, 3);
        let resolved = project.resolve(&["driver_stats@1:b".into()]).unwrap();
        assert_eq!(resolved[0].reference, "driver_stats@1:b");
    }

    #[test]
    fn bad_definitions_are_rejected_and_leave_the_registry_unchanged() {
        let mut reg = Registry::default();
        reg.apply(&defs("a=float64", "driver_stats:a"), 1).unwrap();
        let before = reg.clone();
        let err = reg.apply(&defs("a=float64,b=int64", "driver_stats:nope"), 2).unwrap_err();
        assert!(err.to_string().contains("driver_stats:nope"), "{err}");
        let mut d = defs("a=float64", "driver_stats:a");
        d.entities[0].join_keys[0].ty = ValueType::String;
        assert!(reg.apply(&d, 3).unwrap_err().to_string().contains("join keys"));
        let mut d = defs("a=float64,event_timestamp=int64", "driver_stats:a");
        d.feature_vectors.clear();
        assert!(reg.apply(&d, 4).is_err());
        let mut d = defs("a=float64", "driver_stats:a");
        d.feature_sets[0].ttl = Some("soon".into());
        assert!(reg.apply(&d, 5).unwrap_err().to_string().contains("ttl"));
        assert_eq!(reg, before);
    }

    #[test]
    fn wildcard_expands_to_every_feature_in_order() {
        let mut reg = Registry::default();
        reg.apply(&defs("a=float64,b=int64", "driver_stats:*"), 1).unwrap();
        let project = reg.project("rides").unwrap();
        let refs: Vec<_> = project
            .resolve(&project.vector("v1").unwrap().features)
            .unwrap()
            .into_iter()
            .map(|r| r.reference)
            .collect();
        assert_eq!(refs, vec!["driver_stats:a", "driver_stats:b"]);
        assert!(matches!(project.resolve(&["nope:a".into()]), Err(Error::UnknownFeatureSet(_))));
        assert!(matches!(project.resolve(&["driver_stats".into()]), Err(Error::InvalidArgument(_))));
    }
}
