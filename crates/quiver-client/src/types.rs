//! The client's own request and answer types; everything else it speaks is a quiver-core
//! type, re-exported at the crate root.

use std::collections::BTreeMap;

#[cfg(feature = "offline")]
use arrow_array::RecordBatch;
use quiver_core::Value;
use quiver_core::cluster::ClusterMap;
use quiver_core::online::{Consistency, FeatureSelection};
use quiver_core::shard_ops::{OpKind, Outcome};

/// An online read: the latest values of some features for some entities.
#[derive(Debug, Clone)]
pub struct OnlineRequest {
    /// The project the features belong to.
    pub project: String,
    /// The features to read.
    pub features: FeatureSelection,
    /// One map of join-key values per entity, e.g. `{"driver_id": Int64(1001)}`.
    pub entities: Vec<BTreeMap<String, Value>>,
    /// Linearizable (the default) or stale.
    pub consistency: Consistency,
}

impl OnlineRequest {
    /// A linearizable read of `features` (`set:feature` references) in `project`, for the
    /// entities added next (`entity`, `entity_keys`).
    pub fn features<I, S>(project: &str, features: I) -> OnlineRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let refs = features.into_iter().map(Into::into).collect();
        OnlineRequest::of(project, FeatureSelection::Refs(refs))
    }

    /// A linearizable read of the feature vector `vector` in `project`.
    pub fn vector(project: &str, vector: &str) -> OnlineRequest {
        OnlineRequest::of(project, FeatureSelection::Vector(vector.into()))
    }

    fn of(project: &str, features: FeatureSelection) -> OnlineRequest {
        OnlineRequest {
            project: project.into(),
            features,
            entities: Vec::new(),
            consistency: Consistency::Linearizable,
        }
    }

    /// Adds an entity with one join key: `.entity("driver_id", 1001)`.
    pub fn entity(self, key: &str, value: impl Into<Value>) -> OnlineRequest {
        self.entity_keys([(key, value)])
    }

    /// Adds an entity with several join keys: `.entity_keys([("driver_id", 1), ("city_id", 7)])`.
    pub fn entity_keys<K: Into<String>, V: Into<Value>>(mut self, keys: impl IntoIterator<Item = (K, V)>) -> Self {
        self.entities.push(keys.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Reads from any replica: cheaper, may lag; the answer bounds its age.
    pub fn stale(mut self) -> OnlineRequest {
        self.consistency = Consistency::Stale;
        self
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// Rows accepted, all of them when the write succeeds.
    pub rows_written: u64,
    /// Shard id → the index of the shard's log entry that holds its part of the write; give
    /// the outcome to [`Client::wait_for_export`](crate::Client::wait_for_export) to wait
    /// until the rows are in the offline store.
    pub shard_log_index: BTreeMap<u64, u64>,
}

impl WriteOutcome {
    /// Adds the answer of one part of a write.
    pub(crate) fn add(&mut self, reply: quiver_proto::v1::WriteFeaturesResponse) {
        let shard_log_index = reply.shard_log_index.into_iter().collect();
        self.merge(&WriteOutcome { rows_written: reply.rows_written, shard_log_index });
    }

    /// Adds what another write did, so that one outcome covers both: waiting for its export
    /// waits for the rows of every write merged into it.
    pub fn merge(&mut self, other: &WriteOutcome) {
        self.rows_written += other.rows_written;
        for (&shard, &index) in &other.shard_log_index {
            let known = self.shard_log_index.entry(shard).or_default();
            *known = (*known).max(index);
        }
    }

    /// The first shard whose part the cluster map `map` does not show exported yet: its id,
    /// how far its export got, and the part's log index.
    pub(crate) fn unexported(&self, map: &ClusterMap) -> Option<(u64, Option<u64>, u64)> {
        let highest = map.shard_map.shards.iter().map(|s| s.id).max().unwrap_or_default();
        let merged_away = |shard: u64| {
            // Shard ids only grow, so a map that knows a later shard but not this one has seen
            // it merged away (and a merge waits until the shard's export queue is empty).
            // Otherwise the map may simply not know the shard yet.
            map.shard_map.shard(shard).is_err()
                && (shard < highest
                    || map.finished.iter().any(|f| {
                        f.outcome == Outcome::Done && matches!(f.op.kind, OpKind::Merge { right, .. } if right == shard)
                    }))
        };
        self.shard_log_index
            .iter()
            .map(|(shard, index)| (*shard, map.exported.get(shard).copied(), *index))
            .find(|(shard, exported, index)| !merged_away(*shard) && exported.is_none_or(|e| e < *index))
    }
}

/// The entities and times a training set is built for, with any other columns (labels),
/// kept as they are. It needs the join keys of the features' entities and a time column.
#[cfg(feature = "offline")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Spine {
    /// A CSV file's bytes. Join keys are typed by their entities, the time column read as
    /// RFC 3339 or integer microseconds, every other column kept as text.
    Csv(Vec<u8>),
    /// A Parquet file's bytes, read with its own schema.
    Parquet(Vec<u8>),
    /// Arrow record batches of one schema, sent to the node as one Parquet file.
    Batches(Vec<RecordBatch>),
}

/// A point-in-time training-set request.
#[cfg(feature = "offline")]
#[derive(Debug, Clone)]
pub struct HistoricalRequest {
    /// The project the features belong to.
    pub project: String,
    /// The features to join.
    pub features: FeatureSelection,
    /// The spine: join keys, a time column, and any other columns.
    pub spine: Spine,
    /// The spine's time column; `event_timestamp` when `None`.
    pub timestamp_column: Option<String>,
    /// Name columns `feature` instead of `set:feature` where unambiguous.
    pub short_names: bool,
    /// Also store the answer as a training dataset of this name, with its lineage.
    pub save_as: Option<String>,
    /// Where the spine came from, recorded in a saved dataset's lineage.
    pub spine_name: String,
}

#[cfg(feature = "offline")]
impl HistoricalRequest {
    /// A request with the defaults: time column `event_timestamp`, `set:feature` names, not saved.
    pub fn new(project: &str, features: FeatureSelection, spine: Spine) -> Self {
        HistoricalRequest {
            project: project.into(),
            features,
            spine,
            timestamp_column: None,
            short_names: false,
            save_as: None,
            spine_name: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::shard_ops::{FinishedOp, ShardOp};

    use super::*;
    use crate::table::tests::cluster;

    #[test]
    fn a_write_is_exported_once_each_shard_it_touched_is_past_it_or_merged_away() {
        let written = WriteOutcome { rows_written: 2, shard_log_index: [(2, 10), (4, 7)].into() };
        let mut map = cluster([None; 4], 1);
        assert_eq!(written.unexported(&map), Some((2, None, 10)));
        map.exported = [(2, 10), (4, 6)].into();
        assert_eq!(written.unexported(&map), Some((4, Some(6), 7)));
        // Shard 4 gone from a map that knows no later shard: not known yet, or merged away?
        map.shard_map.shards.retain(|s| s.id != 4);
        assert_eq!(written.unexported(&map), Some((4, Some(6), 7)));
        let merge = ShardOp { id: 1, kind: OpKind::Merge { left: 3, right: 4 }, started_at: 0, requested: true };
        map.finished.push(FinishedOp { op: merge, finished_at: 1, outcome: Outcome::Done });
        assert_eq!(written.unexported(&map), None, "a merge waits for the shard's export queue to empty");
        // Shard 2 gone while shard 3 (created after it) is known: merged away too.
        let earlier = WriteOutcome { shard_log_index: [(2, 99)].into(), ..WriteOutcome::default() };
        map.shard_map.shards.retain(|s| s.id != 2);
        assert_eq!(earlier.unexported(&map), None);
    }
}
