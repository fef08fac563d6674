//! The online data path, on domain types: writes validated whole, then proposed to each
//! shard's Raft group; reads checked for leadership (read index) or bounded in staleness,
//! then answered from the shards' trees as `OnlineFeatures`. Each front end (gRPC's
//! `api::features`; HTTP to come) authorizes on the call and adapts its wire format to this.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use quiver_core::epoch::Epoch;
use quiver_core::key::{encode_entity_key, entity_key_from, key_hash};
use quiver_core::online::{Consistency, FeatureSelection, FeatureValue, OnlineFeatures};
use quiver_core::registry::{FeatureSet, Project, ResolvedFeature};
use quiver_core::row::{
    Freshness, InputRow, MAX_ENTITIES_PER_READ, MAX_ROWS_PER_WRITE, StoredRow, check_event_time, is_expired,
    validate_rows,
};
use quiver_core::{Error as CoreError, Value};

use serde::{Deserialize, Serialize};

use crate::auth::Call;
use crate::groups::Group;
use crate::node::Node;
use crate::raft::NodeId;
use crate::raft::network::ask_peer;
use crate::serving_log::Served;
use crate::shard::read_row;
use quiver_core::access::{Need, Role, personal};
use quiver_core::shard_map::META_GROUP;
use quiver_core::table::TableRef;
use quiver_core::time::now_micros;
use quiver_store::command::Once;
use quiver_store::error::{Error, Result};
use quiver_store::meta::MetaState;
use quiver_store::release;

/// Where a routing client sent a request or part: the shard, at the epoch it knew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub shard: u64,
    pub epoch: Epoch,
}

/// Rows to write to one feature set.
#[derive(Debug, Clone, Default)]
pub struct Write {
    pub project: String,
    /// `name` for the current version, or `name@version`.
    pub feature_set: String,
    pub rows: Vec<InputRow>,
    /// Set by routing clients: the shard every row belongs to.
    pub route: Option<Route>,
    /// Makes a retried write apply at most once; empty: none.
    pub request_id: Vec<u8>,
    /// Each row's position in the request `request_id` names; empty: the rows as sent.
    pub row_positions: Vec<u32>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    /// The log index of each shard's part, for read-your-writes and `wait_for_export`.
    pub shard_log_index: HashMap<u64, u64>,
}

/// An online read.
#[derive(Debug, Clone)]
pub struct Read {
    pub project: String,
    pub features: FeatureSelection,
    /// Each entity's join-key values.
    pub entities: Vec<BTreeMap<String, Value>>,
    pub consistency: Consistency,
    /// Set by routing clients: every shard the entities belong to.
    pub routes: Vec<Route>,
}

/// Writes `req`'s rows, all of them or none: every row is checked before anything is proposed.
pub async fn write(node: &Node, call: &Call, req: Write) -> Result<Written> {
    call.allow(Need::Project { project: &req.project, role: Role::Writer, action: "writing rows" })?;
    let state = knowing(node, &req.project, &req.feature_set).await?;
    let project = state.registry.project(&req.project)?;
    let fs = project.feature_set_by_ref(&req.feature_set)?;
    let entity = project.entity(&fs.entity)?;
    let rows = validate_rows(entity, fs, req.rows)?;
    let (now, skew) = (now_micros(), node.config.ingest.max_future());
    for (i, row) in rows.iter().enumerate() {
        check_event_time(i + 1, &fs.timestamp_column, row.event_ts, now, skew)?;
    }
    if let Some(route) = &req.route {
        let hashes: Vec<u64> = rows.iter().map(|r| key_hash(&encode_entity_key(&r.key))).collect();
        check_route(node, route, &hashes, true).await?;
    }
    let count = rows.len() as u64;
    let once = once(req.request_id, req.row_positions, rows.len())?;
    let shard_log_index = node.proposer.put_rows(&TableRef::new(&project.name, fs), rows, true, once).await?;
    node.metrics.rows_written.inc_by(count);
    call.count_write(&node.audit, &fs.name, count);
    Ok(Written { rows: count, shard_log_index })
}

/// The meta state that knows `feature_set` of `project` and its entity: this node's, or
/// caught up with the metadata leader's when this node's does not yet.
pub async fn knowing(node: &Node, project: &str, feature_set: &str) -> Result<Arc<MetaState>> {
    let (state, ()) = node
        .meta
        .current(|s| {
            let project = s.registry.project(project)?;
            project.entity(&project.feature_set_by_ref(feature_set)?.entity)?;
            Ok(())
        })
        .await?;
    Ok(state)
}

/// Reads the latest values of `req`'s features for its entities, in request order.
pub async fn read(node: &Node, call: &Call, req: Read) -> Result<OnlineFeatures> {
    call.allow(Need::Project { project: &req.project, role: Role::Viewer, action: "reading online values" })?;
    let (state, features) = node.meta.current(|s| Ok(s.registry.project(&req.project)?.select(&req.features)?)).await?;
    let project = state.registry.project(&req.project)?;
    call.caller.check_pii(project, &features)?;
    call.record_personal_read(&node.audit, node.id, || personal(project, &features)).await?;
    let linearizable = req.consistency == Consistency::Linearizable;
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
    let lookups = entity_keys(&state, project, &tables, req.entities)?;
    if !req.routes.is_empty() {
        check_routes(node, &state, &req.routes, &lookups, linearizable).await?;
    }
    // Each shard's keys (moved, not copied), with where each goes in the answer.
    let table_refs: Vec<TableRef> = tables.iter().map(|(_, t)| t.clone()).collect();
    let entities = lookups.len();
    let mut parts: BTreeMap<u64, (ShardRead, Vec<usize>)> = BTreeMap::new();
    for (i, keys) in lookups.into_iter().enumerate() {
        for (t, (shard, key, hash)) in keys.into_iter().enumerate() {
            let (part, places) = parts.entry(shard).or_insert_with(|| {
                (ShardRead { linearizable, tables: table_refs.clone(), keys: Vec::new() }, Vec::new())
            });
            part.keys.push(KeyRead { table: t, key, hash, entity: i + 1 });
            places.push(i * tables.len() + t);
        }
    }
    // Routing clients sent the read where they think it is led: they are told otherwise.
    let forward = req.routes.is_empty() && peers_answer_reads(node);
    let reads = parts.into_iter().map(|(shard, (part, places))| async move {
        let (rows, bound) = read_shard(node, shard, &part, forward).await?;
        Ok::<_, Error>((places.into_iter().zip(rows), bound))
    });
    let mut found: Vec<Option<StoredRow>> = vec![None; entities * tables.len()];
    let mut staleness_bound_ms = 0;
    for (rows, bound) in try_join_all(reads).await? {
        staleness_bound_ms = staleness_bound_ms.max(bound);
        rows.for_each(|(place, row)| found[place] = row);
    }
    let now = now_micros();
    let sampled = node.serving.sample();
    let mut rows = Vec::with_capacity(entities);
    for i in 0..entities {
        let stored = &found[i * tables.len()..(i + 1) * tables.len()];
        if sampled {
            log_served(node, &features, &column_table, &tables, stored, now);
        }
        rows.push(
            features
                .iter()
                .zip(&column_table)
                .map(|(f, &t)| answer(stored[t].as_ref(), f.index, tables[t].0.ttl_secs, now))
                .collect(),
        );
    }
    Ok(OnlineFeatures { features: features.into_iter().map(|f| f.reference).collect(), rows, staleness_bound_ms })
}

/// The first cluster version whose nodes answer `ReadRows`.
const FORWARDED_READS: u32 = 2;
/// How long a read follows a shard's leadership as it moves (an election, a transfer).
const FOLLOW_LEADER_FOR: Duration = Duration::from_secs(5);

/// One key of a read: its table (by position in `ShardRead::tables`), the encoded key and
/// its hash, and the number of the entity in the client's request (errors name it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRead {
    pub table: usize,
    pub key: Vec<u8>,
    pub hash: u64,
    pub entity: usize,
}

/// The keys of a read that fall in one shard, as a node asks the shard's leader for them
/// (`RaftService.ReadRows`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRead {
    pub linearizable: bool,
    pub tables: Vec<TableRef>,
    pub keys: Vec<KeyRead>,
}

/// The stored rows of `read`'s keys in this node's replica of `group`, after a read-index
/// round when linearizable (refused `NotLeader` on a follower), with the bound on how stale
/// they may be (0 when linearizable).
pub async fn read_here(me: NodeId, group: &Group, read: &ShardRead) -> Result<(Vec<Option<StoredRow>>, u64)> {
    let bound = match read.linearizable {
        true => group.linearize().await.map(|()| 0)?,
        false => group.staleness_bound_ms(me),
    };
    let rows = read
        .keys
        .iter()
        .map(|k| {
            let table =
                read.tables.get(k.table).ok_or_else(|| CoreError::InvalidArgument(format!("no table {}", k.table)))?;
            let row = read_row(group.data.as_ref(), table, &k.key)?;
            // Checked after the read: a split shrinks the range before it moves rows.
            if let Some(range) = &group.range {
                range.check(k.hash, k.entity)?;
            }
            Ok(row)
        })
        .collect::<Result<_>>()?;
    Ok((rows, bound))
}

/// Reads `read`'s keys of `shard`: here when this node may serve them (leads the shard, or
/// holds a replica for a stale read), else, when `forward`, from the shard's leader, one hop,
/// following the leadership through elections and transfers for `FOLLOW_LEADER_FOR`.
async fn read_shard(node: &Node, shard: u64, read: &ShardRead, forward: bool) -> Result<(Vec<Option<StoredRow>>, u64)> {
    let deadline = Instant::now() + FOLLOW_LEADER_FOR;
    let mut pause = Duration::from_millis(10);
    let mut hint: Option<String> = None;
    loop {
        let group = node.groups.get(shard);
        let served_here = group.as_ref().is_some_and(|g| !read.linearizable || g.leader() == Some(node.id));
        let result = match (hint.take(), group) {
            (Some(addr), _) => read_there(node, &addr, shard, read).await,
            (None, Some(group)) if served_here || !forward => read_here(node.id, &group, read).await,
            (None, None) if !forward => Err(CoreError::ShardNotFound(shard).into()),
            (None, _) => match leader_addr(node, shard) {
                Some(addr) => read_there(node, &addr, shard, read).await,
                None => Err(CoreError::Unavailable(format!("shard {shard} has no leader")).into()),
            },
        };
        if !forward {
            return result;
        }
        if let Err(Error::Core(CoreError::NotLeader { leader, .. })) = &result {
            hint = leader.clone();
        }
        let retry =
            result.as_ref().is_err_and(|e| e.is_transient() || matches!(e, Error::Core(CoreError::ShardNotFound(_))));
        if !retry || Instant::now() >= deadline {
            return result;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// True when every member answers `ReadRows`: the cluster version brings it, or every member
/// runs this release or a later one (a new cluster before its first member finalizes). Else,
/// amid an upgrade, a read of keys this node does not lead is refused `NotLeader`, as the
/// earlier release did.
fn peers_answer_reads(node: &Node) -> bool {
    if quiver_store::codec::cluster_version() >= FORWARDED_READS {
        return true;
    }
    let Some(meta) = node.groups.get(META_GROUP) else { return false };
    let members = node.meta.latest().nodes.keys().copied().collect::<Vec<_>>();
    let reported = |id| quiver_store::meta::node_version(meta.data.as_ref(), id);
    matches!(quiver_store::meta::all_run(members.into_iter(), reported, release::RELEASE), Ok(Ok(())))
}

/// Where shard `shard`'s leader is reached: as this node's replica sees it, else as the
/// meta state last heard.
fn leader_addr(node: &Node, shard: u64) -> Option<String> {
    let state = node.meta.latest();
    let leader = node.groups.leader_of(shard).or_else(|| state.shard_map.shard(shard).ok()?.leader)?;
    state.nodes.get(&leader).map(|n| n.addr.clone())
}

async fn read_there(node: &Node, addr: &str, shard: u64, read: &ShardRead) -> Result<(Vec<Option<StoredRow>>, u64)> {
    node.metrics.reads_forwarded.inc();
    ask_peer(&node.peers, addr, shard, read, |mut peer, message| async move { peer.read_rows(message).await }).await
}

/// A key placed on its shard: (shard id, encoded entity key, its hash).
type ShardKey = (u64, Vec<u8>, u64);

/// Checks a routed read: every shard its entities fall in (by this node's map) must be
/// named with the epoch this node knows, and served here as the read requires.
async fn check_routes(
    node: &Node,
    state: &MetaState,
    routes: &[Route],
    lookups: &[Vec<ShardKey>],
    linearizable: bool,
) -> Result<()> {
    let mut by_shard: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (shard, _, hash) in lookups.iter().flatten() {
        by_shard.entry(*shard).or_default().push(*hash);
    }
    for (shard, hashes) in by_shard {
        let Some(route) = routes.iter().find(|r| r.shard == shard) else {
            // The client's map puts these keys elsewhere: it is out of date.
            let current = state.shard_map.shard(shard)?.epoch;
            return Err(CoreError::EpochMismatch { shard, current }.into());
        };
        check_route(node, route, &hashes, linearizable).await?;
    }
    Ok(())
}

/// Refuses a request a routing client sent here for shard `route`, when this node's
/// view differs from the client's: an unknown shard or one not hosted here, another
/// epoch, a key outside the shard's range, or (for `leader_only` requests) a shard this
/// node does not lead. Nothing has been proposed when it refuses.
async fn check_route(node: &Node, route: &Route, hashes: &[u64], leader_only: bool) -> Result<()> {
    let sent = route.epoch;
    let mut state = node.meta.latest();
    let known = state.shard_map.shard(route.shard).ok().map(|s| (s.epoch.version, s.epoch.conf_ver));
    if known.is_none_or(|known| (sent.version, sent.conf_ver) > known) {
        // The client saw a newer map than this node has applied (a shard it does not
        // know yet, a newer epoch): catch up first.
        state = node.meta.caught_up().await?;
    }
    let shard = state.shard_map.shard(route.shard)?;
    if shard.epoch != sent {
        return Err(quiver_core::Error::EpochMismatch { shard: shard.id, current: shard.epoch }.into());
    }
    let group = node.groups.group(shard.id)?;
    if let Some(i) = hashes.iter().position(|h| !(shard.start..=shard.end).contains(h)) {
        return Err(quiver_core::Error::KeyNotInShard { shard: shard.id, entity: i + 1 }.into());
    }
    let leader = group.leader();
    if leader_only && leader != Some(node.id) {
        let addr = leader.and_then(|id| state.nodes.get(&id)).map(|n| n.addr.clone());
        return Err(quiver_core::Error::NotLeader { group: shard.id, leader: addr }.into());
    }
    Ok(())
}

/// Adds the fresh values served to one entity to the serving log.
fn log_served(
    node: &Node,
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
    node.serving.record(now, served);
}

/// For each requested entity, the (shard, encoded key) of each table.
fn entity_keys(
    state: &MetaState,
    project: &Project,
    tables: &[(&FeatureSet, TableRef)],
    entities: Vec<BTreeMap<String, Value>>,
) -> Result<Vec<Vec<ShardKey>>> {
    entities
        .into_iter()
        .enumerate()
        .map(|(i, fields)| {
            tables
                .iter()
                .map(|(fs, _)| {
                    let entity = project.entity(&fs.entity)?;
                    let bad = |key: &str, reason: String| CoreError::InvalidEntityKey {
                        entity: i + 1,
                        key: key.into(),
                        reason,
                    };
                    let key = encode_entity_key(&entity_key_from(&entity.join_keys, |k| fields.get(k).cloned(), bad)?);
                    let hash = key_hash(&key);
                    Ok((state.shard_map.shard_for(hash)?.id, key, hash))
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

/// The value of feature `index` in a stored row, as of `now`.
fn answer(row: Option<&StoredRow>, index: usize, ttl_secs: u64, now: i64) -> FeatureValue {
    match row {
        None => FeatureValue { value: Value::Null, event_ts: None, status: Freshness::NotFound },
        Some(r) if is_expired(r.event_ts, ttl_secs, now) => {
            FeatureValue { value: Value::Null, event_ts: Some(r.event_ts), status: Freshness::Expired }
        }
        Some(r) => FeatureValue {
            value: r.values.get(index).cloned().unwrap_or_default(),
            event_ts: Some(r.event_ts),
            status: Freshness::Present,
        },
    }
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
