//! The online data path: validated writes grouped by shard and proposed to each shard's
//! Raft group; reads checked for leadership (read index) and served from the shard's tree.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use quiver_core::epoch::Epoch;
use quiver_core::key::{encode_entity_key, entity_key_from, key_hash};
use quiver_core::registry::{FeatureSet, Project, ResolvedFeature};
use quiver_core::row::{
    Freshness, MAX_ENTITIES_PER_READ, MAX_ROWS_PER_WRITE, StoredRow, check_event_time, is_expired, validate_rows,
};
use quiver_core::{Error as CoreError, Value};
use quiver_proto::v1::feature_service_server::FeatureService;
use quiver_proto::v1::{
    Consistency, EntityResult, FeatureValue, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, ShardRoute,
    WriteFeaturesRequest, WriteFeaturesResponse,
};
use quiver_proto::{fields_from_proto, online_selection_from_proto, value_to_proto};
use tonic::{Request, Response, Status};

use super::observed::{admit, observed};
use crate::auth::Call;
use crate::command::Once;
use crate::error::Result;
use crate::meta::MetaState;
use crate::node::Node;
use crate::serving_log::Served;
use crate::shard::read_row;
use quiver_core::access::{Need, Role, personal};
use quiver_core::table::TableRef;
use quiver_core::time::now_micros;

/// A key placed on its shard: (shard id, encoded entity key, its hash).
type ShardKey = (u64, Vec<u8>, u64);

pub struct FeatureApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl FeatureService for FeatureApi {
    async fn write_features(
        &self,
        request: Request<WriteFeaturesRequest>,
    ) -> std::result::Result<Response<WriteFeaturesResponse>, Status> {
        let call = admit(&self.node, "WriteFeatures", &request)?;
        observed(&self.node, &call, self.write(&call, request.into_inner())).await
    }

    async fn get_online_features(
        &self,
        request: Request<GetOnlineFeaturesRequest>,
    ) -> std::result::Result<Response<GetOnlineFeaturesResponse>, Status> {
        let call = admit(&self.node, "GetOnlineFeatures", &request)?;
        observed(&self.node, &call, self.read(&call, request.into_inner())).await
    }
}

impl FeatureApi {
    async fn write(&self, call: &Call, req: WriteFeaturesRequest) -> Result<WriteFeaturesResponse> {
        call.allow(Need::Project { project: &req.project, role: Role::Writer, action: "writing rows" })?;
        let (state, ()) = self
            .node
            .meta
            .current(|s| {
                let project = s.registry.project(&req.project)?;
                project.entity(&project.feature_set_by_ref(&req.feature_set)?.entity)?;
                Ok(())
            })
            .await?;
        let project = state.registry.project(&req.project)?;
        let fs = project.feature_set_by_ref(&req.feature_set)?;
        let entity = project.entity(&fs.entity)?;
        let input = req.rows.into_iter().map(|r| fields_from_proto(r.fields)).collect();
        // Validation covers the whole request before anything is proposed.
        let rows = validate_rows(entity, fs, input)?;
        let (now, skew) = (now_micros(), self.node.config.ingest.max_future());
        for (i, row) in rows.iter().enumerate() {
            check_event_time(i + 1, &fs.timestamp_column, row.event_ts, now, skew)?;
        }
        if let Some(route) = &req.route {
            let hashes: Vec<u64> = rows.iter().map(|r| key_hash(&encode_entity_key(&r.key))).collect();
            self.check_route(route, &hashes, true).await?;
        }
        let rows_written = rows.len() as u64;
        let once = once(req.request_id, req.row_positions, rows.len())?;
        let shard_log_index = self.node.proposer.put_rows(&TableRef::new(&project.name, fs), rows, true, once).await?;
        self.node.metrics.rows_written.inc_by(rows_written);
        call.count_write(&self.node.audit, &fs.name, rows_written);
        Ok(WriteFeaturesResponse { rows_written, shard_log_index })
    }

    async fn read(&self, call: &Call, mut req: GetOnlineFeaturesRequest) -> Result<GetOnlineFeaturesResponse> {
        call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "reading online values" })?;
        let selection = online_selection_from_proto(req.features.take())?;
        let (state, features) =
            self.node.meta.current(|s| Ok(s.registry.project(&req.project)?.select(&selection)?)).await?;
        let project = state.registry.project(&req.project)?;
        call.caller.check_pii(project, &features)?;
        call.record_personal_read(&self.node.audit, self.node.id, || personal(project, &features)).await?;
        let linearizable = req.consistency() == Consistency::Linearizable;
        if req.entities.len() > MAX_ENTITIES_PER_READ {
            let n = req.entities.len();
            return Err(
                CoreError::TooLarge(format!("{n} entities in one read; the limit is {MAX_ENTITIES_PER_READ}")).into()
            );
        }
        // Each feature set version read once per entity, whatever number of its features is asked for.
        let mut tables: Vec<(&FeatureSet, TableRef)> = Vec::new();
        let column_table: Vec<usize> = features
            .iter()
            .map(|f| {
                let fs = project.feature_set(&f.set, Some(f.version))?;
                Ok(match tables.iter().position(|(t, _)| t.name == fs.name && t.version == fs.version) {
                    Some(i) => i,
                    None => {
                        tables.push((fs, TableRef::new(&project.name, fs)));
                        tables.len() - 1
                    }
                })
            })
            .collect::<Result<_, CoreError>>()?;
        let lookups = self.entity_keys(&state, project, &tables, req.entities)?;
        if !req.routes.is_empty() {
            self.check_routes(&state, &req.routes, &lookups, linearizable).await?;
        }
        let mut shards: Vec<u64> = lookups.iter().flatten().map(|(shard, ..)| *shard).collect();
        shards.sort_unstable();
        shards.dedup();
        let groups = shards.into_iter().map(|s| self.node.groups.group(s)).collect::<Result<Vec<_>>>()?;
        let staleness_bound_ms = if linearizable {
            try_join_all(groups.iter().map(|g| g.linearize())).await?;
            0
        } else {
            groups.iter().map(|g| g.staleness_bound_ms(self.node.id)).max().unwrap_or(0)
        };
        let now = now_micros();
        let sampled = self.node.serving.sample();
        let mut results = Vec::with_capacity(lookups.len());
        for (i, keys) in lookups.into_iter().enumerate() {
            let rows: Vec<Option<StoredRow>> = tables
                .iter()
                .zip(&keys)
                .map(|((_, table), (shard, key, hash))| {
                    let group = self.node.groups.group(*shard)?;
                    let row = read_row(group.data.as_ref(), table, key)?;
                    // Checked after the read: a split shrinks the range before it moves rows.
                    if let Some(range) = &group.range {
                        range.check(*hash, i + 1)?;
                    }
                    Ok(row)
                })
                .collect::<Result<_>>()?;
            let values = features
                .iter()
                .zip(&column_table)
                .map(|(f, &t)| answer(rows[t].as_ref(), f.index, tables[t].0.ttl_secs, now))
                .collect();
            if sampled {
                self.log_served(&features, &column_table, &tables, &rows, now);
            }
            results.push(EntityResult { values });
        }
        Ok(GetOnlineFeaturesResponse {
            features: features.into_iter().map(|f| f.reference).collect(),
            results,
            served_by: self.node.id,
            staleness_bound_ms,
        })
    }

    /// Checks a routed read: every shard its entities fall in (by this node's map) must be
    /// named with the epoch this node knows, and served here as the read requires.
    async fn check_routes(
        &self,
        state: &MetaState,
        routes: &[ShardRoute],
        lookups: &[Vec<ShardKey>],
        linearizable: bool,
    ) -> Result<()> {
        let mut by_shard: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (shard, _, hash) in lookups.iter().flatten() {
            by_shard.entry(*shard).or_default().push(*hash);
        }
        for (shard, hashes) in by_shard {
            let Some(route) = routes.iter().find(|r| r.shard_id == shard) else {
                // The client's map puts these keys elsewhere: it is out of date.
                let current = state.shard_map.shard(shard)?.epoch;
                return Err(CoreError::EpochMismatch { shard, current }.into());
            };
            self.check_route(route, &hashes, linearizable).await?;
        }
        Ok(())
    }

    /// Refuses a request a routing client sent here for shard `route`, when this node's
    /// view differs from the client's: an unknown shard or one not hosted here, another
    /// epoch, a key outside the shard's range, or (for `leader_only` requests) a shard this
    /// node does not lead. Nothing has been proposed when it refuses.
    async fn check_route(&self, route: &ShardRoute, hashes: &[u64], leader_only: bool) -> Result<()> {
        let sent = Epoch { version: route.version, conf_ver: route.conf_ver };
        let mut state = self.node.meta.latest();
        let known = state.shard_map.shard(route.shard_id).ok().map(|s| (s.epoch.version, s.epoch.conf_ver));
        if known.is_none_or(|known| (sent.version, sent.conf_ver) > known) {
            // The client saw a newer map than this node has applied (a shard it does not
            // know yet, a newer epoch): catch up first.
            state = self.node.meta.caught_up().await?;
        }
        let shard = state.shard_map.shard(route.shard_id)?.clone();
        if shard.epoch != sent {
            return Err(quiver_core::Error::EpochMismatch { shard: shard.id, current: shard.epoch }.into());
        }
        let group = self.node.groups.group(shard.id)?;
        if let Some(i) = hashes.iter().position(|h| !(shard.start..=shard.end).contains(h)) {
            return Err(quiver_core::Error::KeyNotInShard { shard: shard.id, entity: i + 1 }.into());
        }
        let leader = group.leader();
        if leader_only && leader != Some(self.node.id) {
            let addr = leader.and_then(|id| state.nodes.get(&id)).map(|n| n.addr.clone());
            return Err(quiver_core::Error::NotLeader { group: shard.id, leader: addr }.into());
        }
        Ok(())
    }

    /// Adds the fresh values served to one entity to the serving log.
    fn log_served(
        &self,
        features: &[ResolvedFeature],
        column_table: &[usize],
        tables: &[(&FeatureSet, TableRef)],
        rows: &[Option<StoredRow>],
        now: i64,
    ) {
        let served = features.iter().zip(column_table).filter_map(|(f, &t)| {
            let (fs, table) = &tables[t];
            let row = rows[t].as_ref().filter(|r| !is_expired(r.event_ts, fs.ttl_secs, now))?;
            let value = row.values.get(f.index)?;
            Some(Served { table, feature: fs.features.get(f.index)?.name.as_str(), value, ty: f.ty })
        });
        self.node.serving.record(now, served);
    }

    /// For each requested entity, the (shard, encoded key) of each table.
    fn entity_keys(
        &self,
        state: &MetaState,
        project: &Project,
        tables: &[(&FeatureSet, TableRef)],
        entities: Vec<quiver_proto::v1::EntityKey>,
    ) -> Result<Vec<Vec<ShardKey>>> {
        entities
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let fields = fields_from_proto(e.keys);
                tables
                    .iter()
                    .map(|(fs, _)| {
                        let entity = project.entity(&fs.entity)?;
                        let bad = |key: &str, reason: String| CoreError::InvalidEntityKey {
                            entity: i + 1,
                            key: key.into(),
                            reason,
                        };
                        let key =
                            encode_entity_key(&entity_key_from(&entity.join_keys, |k| fields.get(k).cloned(), bad)?);
                        let hash = key_hash(&key);
                        Ok((state.shard_map.shard_for(hash)?.id, key, hash))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect()
    }
}

fn answer(row: Option<&StoredRow>, index: usize, ttl_secs: u64, now: i64) -> FeatureValue {
    let (status, value, ts) = match row {
        None => (Freshness::NotFound, Value::Null, 0),
        Some(r) if is_expired(r.event_ts, ttl_secs, now) => (Freshness::Expired, Value::Null, r.event_ts),
        Some(r) => (Freshness::Present, r.values.get(index).cloned().unwrap_or_default(), r.event_ts),
    };
    let status = quiver_proto::freshness_to_proto(status);
    FeatureValue { value: Some(value_to_proto(value)), event_timestamp_micros: ts, status: status as i32 }
}

/// The longest request id a write may carry.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// What makes a write of `rows` rows apply once: its request id and row positions, checked.
fn once(id: Vec<u8>, positions: Vec<u32>, rows: usize) -> Result<Option<Once>, CoreError> {
    let invalid = |why: String| Err(CoreError::InvalidArgument(why));
    if id.is_empty() {
        return match positions.is_empty() {
            true => Ok(None),
            false => invalid("row_positions without a request_id: positions number the rows of a request".into()),
        };
    }
    if id.len() > MAX_REQUEST_ID_BYTES {
        return invalid(format!("request_id has {} bytes; at most {MAX_REQUEST_ID_BYTES}", id.len()));
    }
    let positions = match positions.is_empty() {
        true => (0..rows as u32).collect(),
        false if positions.len() != rows => {
            return invalid(format!("{} row_positions for {rows} rows: one per row", positions.len()));
        }
        false => positions,
    };
    if let Some(p) = positions.iter().find(|p| **p as usize >= MAX_ROWS_PER_WRITE) {
        return invalid(format!("row position {p} is not below {MAX_ROWS_PER_WRITE}, the most rows of a request"));
    }
    Ok(Some(Once { id, positions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_positions_are_checked_before_anything_is_proposed() {
        let refused = |id: &[u8], positions: Vec<u32>, rows| match once(id.to_vec(), positions, rows) {
            Err(CoreError::InvalidArgument(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(b"r", vec![0, 1], 3).contains("2 row_positions for 3 rows"));
        assert!(refused(b"r", vec![100_000], 1).contains("row position 100000"));
        assert!(refused(b"", vec![0], 1).contains("without a request_id"));
        assert!(refused(&[0; 129], vec![], 1).contains("129 bytes"));
        assert_eq!(once(Vec::new(), Vec::new(), 2).unwrap(), None);
        let whole = once(b"r".to_vec(), Vec::new(), 2).unwrap().unwrap();
        assert_eq!(whole.positions, vec![0, 1], "no positions: the rows as sent");
    }
}
