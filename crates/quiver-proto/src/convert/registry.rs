//! Registry definitions, projects and apply changes.

use quiver_core::registry::{Action, Change, Entity, FeatureSet, FeatureVector, ObjectKind, Project};
use quiver_core::spec::{Definitions, EntitySpec, FeatureSetSpec, FeatureSpec, JoinKey, MonitoringSpec, VectorSpec};
use quiver_core::stats::{DriftThresholds, Threshold};
use quiver_core::time::format_ttl;
use quiver_core::{Error, Result, ValueType};

use crate::v1;

fn parse_type(what: &str, name: &str, ty: &str) -> Result<ValueType> {
    ty.parse().map_err(|e| Error::InvalidDefinition(format!("{what} {name}: {e}")))
}

fn join_key_to_proto(k: &JoinKey) -> v1::JoinKey {
    v1::JoinKey { name: k.name.clone(), r#type: k.ty.to_string() }
}

fn join_key_from_proto(k: v1::JoinKey) -> Result<JoinKey> {
    Ok(JoinKey { ty: parse_type("join key", &k.name, &k.r#type)?, name: k.name })
}

fn feature_to_proto(f: &FeatureSpec) -> v1::Feature {
    v1::Feature {
        name: f.name.clone(),
        r#type: f.ty.to_string(),
        description: f.description.clone(),
        tags: f.tags.clone(),
    }
}

fn feature_from_proto(f: v1::Feature) -> Result<FeatureSpec> {
    Ok(FeatureSpec {
        ty: parse_type("feature", &f.name, &f.r#type)?,
        name: f.name,
        description: f.description,
        tags: f.tags,
    })
}

fn monitoring_to_proto(m: &MonitoringSpec) -> v1::Monitoring {
    let t = |t: Threshold| Some(v1::Threshold { warning: t.warning, drift: t.drift });
    let d = &m.thresholds;
    v1::Monitoring {
        reference: m.reference.clone().unwrap_or_default(),
        window: m.window.clone().unwrap_or_default(),
        every: m.every.clone().unwrap_or_default(),
        thresholds: Some(v1::DriftThresholds {
            psi: t(d.psi),
            ks: t(d.ks),
            js_distance: t(d.js_distance),
            hellinger: t(d.hellinger),
            tvd: t(d.tvd),
        }),
    }
}

/// Thresholds left out keep their defaults.
fn monitoring_from_proto(m: v1::Monitoring) -> MonitoringSpec {
    let text = |s: String| (!s.is_empty()).then_some(s);
    let mut thresholds = DriftThresholds::default();
    if let Some(p) = m.thresholds {
        for (slot, given) in [
            (&mut thresholds.psi, p.psi),
            (&mut thresholds.ks, p.ks),
            (&mut thresholds.js_distance, p.js_distance),
            (&mut thresholds.hellinger, p.hellinger),
            (&mut thresholds.tvd, p.tvd),
        ] {
            if let Some(t) = given {
                *slot = Threshold { warning: t.warning, drift: t.drift };
            }
        }
    }
    MonitoringSpec { reference: text(m.reference), window: text(m.window), every: text(m.every), thresholds }
}

pub fn definitions_to_proto(d: &Definitions) -> v1::ApplyRequest {
    v1::ApplyRequest {
        project: d.project.clone(),
        description: d.description.clone(),
        entities: d
            .entities
            .iter()
            .map(|e| v1::Entity {
                name: e.name.clone(),
                join_keys: e.join_keys.iter().map(join_key_to_proto).collect(),
                description: e.description.clone(),
                ..Default::default()
            })
            .collect(),
        feature_sets: d
            .feature_sets
            .iter()
            .map(|f| v1::FeatureSet {
                name: f.name.clone(),
                entity: f.entity.clone(),
                timestamp_column: f.timestamp.clone(),
                ttl: f.ttl.clone().unwrap_or_default(),
                owner: f.owner.clone(),
                description: f.description.clone(),
                tags: f.tags.clone(),
                features: f.features.iter().map(feature_to_proto).collect(),
                monitoring: f.monitoring.as_ref().map(monitoring_to_proto),
                ..Default::default()
            })
            .collect(),
        feature_vectors: d
            .feature_vectors
            .iter()
            .map(|v| v1::FeatureVector {
                name: v.name.clone(),
                features: v.features.clone(),
                description: v.description.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

pub fn definitions_from_proto(r: v1::ApplyRequest) -> Result<Definitions> {
    Ok(Definitions {
        project: r.project,
        description: r.description,
        entities: r
            .entities
            .into_iter()
            .map(|e| {
                Ok(EntitySpec {
                    join_keys: e.join_keys.into_iter().map(join_key_from_proto).collect::<Result<_>>()?,
                    name: e.name,
                    description: e.description,
                })
            })
            .collect::<Result<_>>()?,
        feature_sets: r
            .feature_sets
            .into_iter()
            .map(|f| {
                Ok(FeatureSetSpec {
                    features: f.features.into_iter().map(feature_from_proto).collect::<Result<_>>()?,
                    name: f.name,
                    entity: f.entity,
                    timestamp: f.timestamp_column,
                    ttl: (!f.ttl.is_empty()).then_some(f.ttl),
                    owner: f.owner,
                    description: f.description,
                    tags: f.tags,
                    monitoring: f.monitoring.map(monitoring_from_proto),
                })
            })
            .collect::<Result<_>>()?,
        feature_vectors: r
            .feature_vectors
            .into_iter()
            .map(|v| VectorSpec { name: v.name, features: v.features, description: v.description })
            .collect(),
    })
}

const OBJECT_KINDS: [ObjectKind; 4] =
    [ObjectKind::Project, ObjectKind::Entity, ObjectKind::FeatureSet, ObjectKind::Vector];

fn object_kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Project => "project",
        ObjectKind::Entity => "entity",
        ObjectKind::FeatureSet => "feature_set",
        ObjectKind::Vector => "vector",
    }
}

pub fn change_to_proto(c: &Change) -> v1::Change {
    let kind = object_kind_name(c.kind);
    let (action, version) = match c.action {
        Action::Created => ("created", 0),
        Action::Updated => ("updated", 0),
        Action::NewVersion(v) => ("new_version", v),
        Action::Unchanged => ("unchanged", 0),
    };
    v1::Change { kind: kind.into(), name: c.name.clone(), action: action.into(), version, summary: c.to_string() }
}

/// The summary is left out: `Change` displays it.
pub fn change_from_proto(c: v1::Change) -> Result<Change> {
    let unknown = |what: &str, value: &str| Error::Internal(format!("change of {}: unknown {what} '{value}'", c.name));
    let kind = OBJECT_KINDS.into_iter().find(|k| object_kind_name(*k) == c.kind);
    let kind = kind.ok_or_else(|| unknown("kind", &c.kind))?;
    let action = match c.action.as_str() {
        "created" => Action::Created,
        "updated" => Action::Updated,
        "new_version" => Action::NewVersion(c.version),
        "unchanged" => Action::Unchanged,
        other => return Err(unknown("action", other)),
    };
    Ok(Change { kind, name: c.name, action })
}

pub fn project_to_proto(p: &Project) -> v1::GetProjectResponse {
    v1::GetProjectResponse {
        name: p.name.clone(),
        description: p.description.clone(),
        entities: p
            .entities
            .values()
            .map(|e| v1::Entity {
                name: e.name.clone(),
                join_keys: e.join_keys.iter().map(join_key_to_proto).collect(),
                description: e.description.clone(),
                created_at_micros: e.created_at,
                updated_at_micros: e.updated_at,
            })
            .collect(),
        feature_sets: p
            .feature_sets
            .values()
            .map(|versions| v1::FeatureSetVersions {
                versions: versions
                    .iter()
                    .map(|f| v1::FeatureSet {
                        name: f.name.clone(),
                        version: f.version,
                        entity: f.entity.clone(),
                        timestamp_column: f.timestamp_column.clone(),
                        ttl: format_ttl(f.ttl_secs),
                        ttl_seconds: f.ttl_secs,
                        owner: f.owner.clone(),
                        description: f.description.clone(),
                        tags: f.tags.clone(),
                        features: f.features.iter().map(feature_to_proto).collect(),
                        monitoring: f.monitoring.as_ref().map(monitoring_to_proto),
                        created_at_micros: f.created_at,
                        updated_at_micros: f.updated_at,
                    })
                    .collect(),
            })
            .collect(),
        feature_vectors: p
            .vectors
            .values()
            .map(|v| v1::FeatureVector {
                name: v.name.clone(),
                features: v.features.clone(),
                description: v.description.clone(),
                created_at_micros: v.created_at,
                updated_at_micros: v.updated_at,
            })
            .collect(),
    }
}

pub fn project_from_proto(p: v1::GetProjectResponse) -> Result<Project> {
    let entities = p
        .entities
        .into_iter()
        .map(|e| {
            let entity = Entity {
                join_keys: e.join_keys.into_iter().map(join_key_from_proto).collect::<Result<_>>()?,
                name: e.name,
                description: e.description,
                created_at: e.created_at_micros,
                updated_at: e.updated_at_micros,
            };
            Ok((entity.name.clone(), entity))
        })
        .collect::<Result<_>>()?;
    let feature_sets = p
        .feature_sets
        .into_iter()
        .filter_map(|set| {
            let name = set.versions.first()?.name.clone();
            let versions = set.versions.into_iter().map(|f| {
                Ok(FeatureSet {
                    features: f.features.into_iter().map(feature_from_proto).collect::<Result<_>>()?,
                    name: f.name,
                    version: f.version,
                    entity: f.entity,
                    timestamp_column: f.timestamp_column,
                    ttl_secs: f.ttl_seconds,
                    owner: f.owner,
                    description: f.description,
                    tags: f.tags,
                    monitoring: f.monitoring.map(monitoring_from_proto),
                    created_at: f.created_at_micros,
                    updated_at: f.updated_at_micros,
                })
            });
            Some(versions.collect::<Result<Vec<_>>>().map(|v| (name, v)))
        })
        .collect::<Result<_>>()?;
    let vectors = p
        .feature_vectors
        .into_iter()
        .map(|v| {
            let vector = FeatureVector {
                name: v.name,
                features: v.features,
                description: v.description,
                created_at: v.created_at_micros,
                updated_at: v.updated_at_micros,
            };
            (vector.name.clone(), vector)
        })
        .collect();
    Ok(Project { name: p.name, description: p.description, entities, feature_sets, vectors, created_at: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip() {
        let defs = Definitions {
            project: "rides".into(),
            description: "d".into(),
            entities: vec![EntitySpec {
                name: "driver".into(),
                join_keys: vec![JoinKey { name: "driver_id".into(), ty: ValueType::Int64 }],
                description: String::new(),
            }],
            feature_sets: vec![FeatureSetSpec {
                name: "s".into(),
                entity: "driver".into(),
                timestamp: "ts".into(),
                ttl: Some("7d".into()),
                owner: "o".into(),
                description: String::new(),
                tags: vec!["t".into()],
                features: vec![FeatureSpec {
                    name: "f".into(),
                    ty: ValueType::Float32List,
                    description: "x".into(),
                    tags: vec!["pii".into()],
                }],
                monitoring: Some(MonitoringSpec {
                    reference: Some("dataset:train".into()),
                    window: Some("2d".into()),
                    every: None,
                    thresholds: DriftThresholds {
                        psi: Threshold { warning: 0.2, drift: 0.3 },
                        ..DriftThresholds::default()
                    },
                }),
            }],
            feature_vectors: vec![VectorSpec {
                name: "v".into(),
                features: vec!["s:*".into()],
                description: String::new(),
            }],
        };
        assert_eq!(definitions_from_proto(definitions_to_proto(&defs)).unwrap(), defs);
    }

    #[test]
    fn changes_round_trip_and_unknown_actions_are_refused() {
        let actions = [Action::Created, Action::Updated, Action::NewVersion(3), Action::Unchanged];
        for (kind, action) in OBJECT_KINDS.into_iter().zip(actions) {
            let change = Change { kind, name: "n".into(), action };
            assert_eq!(change_from_proto(change_to_proto(&change)).unwrap(), change);
        }
        let odd = v1::Change { kind: "entity".into(), action: "renamed".into(), ..Default::default() };
        assert!(change_from_proto(odd).unwrap_err().to_string().contains("renamed"));
    }

    #[test]
    fn projects_round_trip() {
        let mut reg = quiver_core::registry::Registry::default();
        let defs = Definitions {
            project: "p".into(),
            entities: vec![EntitySpec {
                name: "e".into(),
                join_keys: vec![JoinKey { name: "k".into(), ty: ValueType::String }],
                description: String::new(),
            }],
            feature_sets: vec![FeatureSetSpec {
                name: "s".into(),
                entity: "e".into(),
                timestamp: "ts".into(),
                ttl: Some("1h".into()),
                owner: String::new(),
                description: String::new(),
                tags: vec![],
                features: vec![FeatureSpec {
                    name: "f".into(),
                    ty: ValueType::Bool,
                    description: String::new(),
                    tags: vec![],
                }],
                monitoring: Some(MonitoringSpec { reference: Some("2026-11-01..".into()), ..Default::default() }),
            }],
            ..Default::default()
        };
        reg.apply(&defs, 5).unwrap();
        let mut project = reg.project("p").unwrap().clone();
        project.created_at = 0;
        assert_eq!(project_from_proto(project_to_proto(&project)).unwrap(), project);
    }
}
