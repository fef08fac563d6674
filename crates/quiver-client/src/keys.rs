//! The shard-map hash of each row or entity of a request, computed from the registry as the
//! node would, so the client can send each part straight to its shard. `None` means the
//! request cannot be keyed here (a bad row, unknown names, features of several entities):
//! it then goes to one node whole, which routes it or says what is wrong with it.

use std::collections::BTreeMap;

use quiver_core::Value;
use quiver_core::key::{encode_entity_key, entity_key_from, key_hash};
use quiver_core::online::FeatureSelection;
use quiver_core::registry::Project;
use quiver_core::row::{InputRow, MAX_ENTITIES_PER_READ, validate_rows};

/// The hash of each row's entity key.
pub(crate) fn row_hashes<'a>(
    project: &Project,
    feature_set: &str,
    rows: impl IntoIterator<Item = &'a InputRow>,
) -> Option<Vec<u64>> {
    let fs = project.feature_set_by_ref(feature_set).ok()?;
    let entity = project.entity(&fs.entity).ok()?;
    // The whole batch is validated as the node would, so that a bad row is reported for
    // the whole request before any shard's part is written.
    let validated = validate_rows(entity, fs, rows.into_iter().cloned().collect()).ok()?;
    // A row stamped ahead of this clock may be past the node's allowed skew, which only the
    // node knows: it then checks the whole request, numbering rows as they were given.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
    if validated.iter().any(|r| i64::try_from(now).is_ok_and(|now| r.event_ts > now)) {
        return None;
    }
    Some(validated.iter().map(|r| key_hash(&encode_entity_key(&r.key))).collect())
}

/// The hash of each entity of a read, when every feature read belongs to one entity (so
/// one shard answers each entity) and the read is within limits.
pub(crate) fn entity_hashes(
    project: &Project,
    selection: &FeatureSelection,
    entities: &[BTreeMap<String, Value>],
) -> Option<Vec<u64>> {
    if entities.len() > MAX_ENTITIES_PER_READ {
        return None;
    }
    let features = project.select(selection).ok()?;
    let mut entity_names = features.iter().map(|f| project.feature_set(&f.set, Some(f.version)).map(|fs| &fs.entity));
    let first = entity_names.next()?.ok()?;
    if !entity_names.all(|e| e.is_ok_and(|e| e == first)) {
        return None;
    }
    let entity = project.entity(first).ok()?;
    entities
        .iter()
        .map(|keys| {
            let key = entity_key_from(
                &entity.join_keys,
                |k| keys.get(k).cloned(),
                |_, r| quiver_core::Error::InvalidArgument(r),
            );
            key.ok().map(|k| key_hash(&encode_entity_key(&k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use quiver_core::registry::Registry;
    use quiver_core::spec::{Definitions, FeatureSetSpec};
    use quiver_core::{Value, ValueType};

    use super::*;

    /// Drivers keyed by `driver_id`, riders by `rider_id`; a vector over both.
    fn project() -> Project {
        let rate = [("rate", ValueType::Float64)];
        let defs = Definitions::new("rides")
            .entity("driver", &[("driver_id", ValueType::Int64)])
            .entity("rider", &[("rider_id", ValueType::Int64)])
            .feature_set(FeatureSetSpec::new("drivers", "driver", "ts", &rate))
            .feature_set(FeatureSetSpec::new("riders", "rider", "ts", &rate))
            .vector("both", &["drivers:rate", "riders:rate"]);
        let mut registry = Registry::default();
        registry.apply(&defs, 0).unwrap();
        registry.project("rides").unwrap().clone()
    }

    fn hash_of(id: i64) -> u64 {
        key_hash(&encode_entity_key(&[Value::Int64(id)]))
    }

    fn driver(id: i64) -> BTreeMap<String, Value> {
        BTreeMap::from([("driver_id".to_string(), Value::Int64(id))])
    }

    #[test]
    fn entities_hash_as_the_node_hashes_their_keys() {
        let refs = FeatureSelection::Refs(vec!["drivers:*".into()]);
        assert_eq!(entity_hashes(&project(), &refs, &[driver(7), driver(8)]), Some(vec![hash_of(7), hash_of(8)]));
    }

    #[test]
    fn reads_that_cannot_be_keyed_here_are_left_to_the_node() {
        let p = project();
        let drivers = FeatureSelection::Refs(vec!["drivers:rate".into()]);
        assert_eq!(entity_hashes(&p, &FeatureSelection::Vector("both".into()), &[driver(1)]), None, "two entities");
        assert_eq!(entity_hashes(&p, &FeatureSelection::Refs(vec!["nope:rate".into()]), &[driver(1)]), None);
        let rider = BTreeMap::from([("rider_id".to_string(), Value::Int64(1))]);
        assert_eq!(entity_hashes(&p, &drivers, &[driver(1), rider]), None, "a missing join key");
        let too_many = vec![driver(1); MAX_ENTITIES_PER_READ + 1];
        assert_eq!(entity_hashes(&p, &drivers, &too_many), None);
    }

    #[test]
    fn rows_hash_by_their_entity_key_and_one_bad_row_leaves_the_batch_to_the_node() {
        let row = |id: i64, rate: Value| {
            InputRow::from([
                ("driver_id".to_string(), Value::Int64(id)),
                ("ts".to_string(), Value::Timestamp(1)),
                ("rate".to_string(), rate),
            ])
        };
        let p = project();
        let good = [row(3, Value::Float64(0.5)), row(4, Value::Null)];
        assert_eq!(row_hashes(&p, "drivers", &good), Some(vec![hash_of(3), hash_of(4)]));
        let bad = [row(3, Value::Float64(0.5)), row(4, Value::String("high".into()))];
        assert_eq!(row_hashes(&p, "drivers", &bad), None);
        assert_eq!(row_hashes(&p, "nope", &good), None);
    }
}
