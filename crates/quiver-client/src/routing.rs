//! Client-side routing. The client keeps a copy of the shard map (hash ranges, epochs,
//! replicas, leader hints) and of the registry entries it needs to hash entity keys, splits
//! a request by shard and sends each part, in parallel, straight to the node that can
//! answer it: the shard's leader, or for stale reads any replica; a read's parts bound for
//! the same node go in one request. Routing errors come back
//! typed and are handled here, bounded: `NotLeader` follows the hint, `EpochMismatch`,
//! `ShardNotFound` and `KeyNotInShard` refresh the map, `Busy` waits as told, and an
//! unreachable node is retried on another replica after a pause.
//!
//! Writes carry request ids (random per client, a counter per request, the shard per
//! part), so a part retried after a timeout is applied at most once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quiver_core::key::{encode_entity_key, entity_key_from, key_hash};
use quiver_core::registry::Project;
use quiver_proto::v1;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Tries per request part before the last error is returned.
const ATTEMPTS: usize = 50;
/// Longest pause between tries while a shard elects a leader or a node is unreachable.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Connections the client keeps to each node: one HTTP/2 connection is read and written by
/// one task on each side, which caps concurrent requests at what one core can frame.
const CONNECTIONS_PER_NODE: usize = 4;

/// What a part is sent with: the shard and the epoch the client knows.
pub(crate) type Route = v1::ShardRoute;

/// Request parts by shard: (shard id, the items bound for it).
pub(crate) type Parts<T> = Vec<(u64, Vec<T>)>;

#[derive(Default)]
struct Table {
    /// Sorted by range start.
    shards: Vec<v1::ShardInfo>,
    nodes: HashMap<u64, String>,
}

impl Table {
    fn shard_for(&self, hash: u64) -> Option<&v1::ShardInfo> {
        let i = self.shards.partition_point(|s| s.start <= hash);
        self.shards.get(i.checked_sub(1)?).filter(|s| hash <= s.end)
    }

    fn shard(&self, id: u64) -> Option<&v1::ShardInfo> {
        self.shards.iter().find(|s| s.shard_id == id)
    }
}

pub(crate) struct Router {
    /// The node the client was connected to (`host:port`): asked for the map and the registry.
    seed: String,
    seed_channel: Channel,
    client_id: u64,
    next_request: AtomicU64,
    table: RwLock<Arc<Table>>,
    /// Leader addresses learned from `NotLeader` answers, by shard; newer than the map's hints.
    leaders: Mutex<HashMap<u64, String>>,
    projects: RwLock<HashMap<String, Arc<Project>>>,
    channels: Mutex<HashMap<String, Vec<Channel>>>,
    next_channel: AtomicU64,
}

impl Router {
    pub(crate) fn new(seed: &str, seed_channel: Channel) -> Router {
        let client_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
            .unwrap_or_default();
        Router {
            seed: seed.trim_start_matches("http://").to_string(),
            seed_channel,
            client_id,
            next_request: AtomicU64::new(1),
            table: RwLock::default(),
            leaders: Mutex::default(),
            projects: RwLock::default(),
            channels: Mutex::default(),
            next_channel: AtomicU64::new(0),
        }
    }

    /// The channel to the node the client was connected to.
    pub(crate) fn seed_channel(&self) -> Channel {
        self.seed_channel.clone()
    }

    /// A fresh request id: unique per client and request.
    pub(crate) fn request_id(&self) -> Vec<u8> {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        [self.client_id.to_be_bytes(), n.to_be_bytes()].concat()
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches the shard map again, from the seed or, when it does not answer promptly,
    /// from another node it named; leader hints learned since are dropped for the map's.
    async fn refresh(&self) -> Result<Arc<Table>> {
        let mut channels = vec![self.seed_channel.clone()];
        let others: Vec<String> = self.table().nodes.values().filter(|a| **a != self.seed).cloned().collect();
        channels.extend(others.iter().filter_map(|a| self.channel(a).ok()));
        let mut last = None;
        for channel in channels {
            let mut admin = AdminServiceClient::new(channel);
            match tokio::time::timeout(Duration::from_secs(2), admin.get_shard_map(v1::GetShardMapRequest {})).await {
                Ok(Ok(reply)) => return Ok(self.install(reply.into_inner())),
                Ok(Err(status)) => last = Some(Error::from(status)),
                Err(_) => last = Some(Error::Transport { endpoint: self.seed.clone(), message: "timed out".into() }),
            }
        }
        Err(last.unwrap_or_else(|| Error::Server(quiver_core::Error::Unavailable("no node to ask".into()))))
    }

    fn install(&self, reply: v1::GetShardMapResponse) -> Arc<Table> {
        let mut shards = reply.shards;
        shards.sort_by_key(|s| s.start);
        let nodes = reply.nodes.into_iter().map(|n| (n.id, n.address)).collect();
        let table = Arc::new(Table { shards, nodes });
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table.clone();
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).clear();
        table
    }

    async fn current_table(&self) -> Result<Arc<Table>> {
        let table = self.table();
        if table.shards.is_empty() { self.refresh().await } else { Ok(table) }
    }

    /// The project's registry entries, cached; `fresh` asks the node again.
    pub(crate) async fn project(&self, name: &str, fresh: bool) -> Result<Arc<Project>> {
        if !fresh && let Some(p) = self.projects.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(p.clone());
        }
        let reply = RegistryServiceClient::new(self.seed_channel.clone())
            .get_project(v1::GetProjectRequest { project: name.into() })
            .await
            .map_err(Error::from)?;
        let project = Arc::new(quiver_proto::project_from_proto(reply.into_inner())?);
        self.projects.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), project.clone());
        Ok(project)
    }

    /// Runs `plan` on the cached project, then once more on a fresh copy if it failed;
    /// `None` when it still fails (the node will name what is wrong).
    pub(crate) async fn with_project<T>(&self, name: &str, plan: impl Fn(&Project) -> Option<T>) -> Option<T> {
        for fresh in [false, true] {
            if let Ok(project) = self.project(name, fresh).await
                && let Some(planned) = plan(&project)
            {
                return Some(planned);
            }
        }
        None
    }

    /// Groups items by the shard owning their key hash, in first-seen order of shards.
    pub(crate) async fn split<T>(&self, items: Vec<(u64, T)>) -> Result<Parts<T>> {
        let table = self.current_table().await?;
        let mut parts: BTreeMap<u64, Vec<T>> = BTreeMap::new();
        for (hash, item) in items {
            let shard = table.shard_for(hash).ok_or_else(|| {
                Error::Server(quiver_core::Error::Internal(format!("the shard map has no shard for hash {hash:#x}")))
            })?;
            parts.entry(shard.shard_id).or_default().push(item);
        }
        Ok(parts.into_iter().collect())
    }

    /// One of the connections to `addr`, in turn.
    fn channel(&self, addr: &str) -> Result<Channel> {
        let turn = self.next_channel.fetch_add(1, Ordering::Relaxed) as usize;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = channels.get(addr) {
            return Ok(pool[turn % pool.len()].clone());
        }
        let transport = |e: &dyn std::fmt::Display| Error::Transport { endpoint: addr.into(), message: e.to_string() };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| transport(&e))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        // Each lazy channel is a connection of its own.
        let pool: Vec<Channel> = (0..CONNECTIONS_PER_NODE).map(|_| endpoint.connect_lazy()).collect();
        let channel = pool[turn % pool.len()].clone();
        channels.insert(addr.to_string(), pool);
        Ok(channel)
    }

    /// Where a part for `shard` goes on try `attempt`: the leader (learned or hinted), or
    /// for reads that need no leader the seed when it hosts a replica; after failures, the
    /// other replicas in turn.
    fn target(&self, table: &Table, shard: &v1::ShardInfo, leader_only: bool, attempt: usize) -> String {
        let learned = self.leaders.lock().unwrap_or_else(|p| p.into_inner()).get(&shard.shard_id).cloned();
        let hinted = shard.leader_hint.and_then(|id| table.nodes.get(&id).cloned());
        let replicas: Vec<String> = shard.replicas.iter().filter_map(|id| table.nodes.get(id).cloned()).collect();
        let preferred = if leader_only {
            learned.or(hinted)
        } else {
            replicas.iter().find(|a| **a == self.seed).cloned().or(learned).or(hinted)
        };
        match (preferred, attempt) {
            (Some(addr), 0) => addr,
            _ if !replicas.is_empty() => replicas[attempt % replicas.len()].clone(),
            (Some(addr), _) => addr,
            (None, _) => self.seed.clone(),
        }
    }

    /// Groups shard parts by the node the first try of each goes to, so that a read of many
    /// entities costs one request per node rather than one per shard.
    pub(crate) async fn by_node<T>(&self, parts: Parts<T>, leader_only: bool) -> Result<Vec<(String, Parts<T>)>> {
        let table = self.current_table().await?;
        let mut groups: Vec<(String, Parts<T>)> = Vec::new();
        for (shard, items) in parts {
            let addr = table.shard(shard).map(|s| self.target(&table, s, leader_only, 0)).unwrap_or_default();
            match groups.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, group)) => group.push((shard, items)),
                None => groups.push((addr, vec![(shard, items)])),
            }
        }
        Ok(groups)
    }

    /// One try at `addr` for the parts of several shards at once, with a route for each;
    /// on failure the caller falls back to `send`, shard by shard.
    pub(crate) async fn send_once<T, Fut>(
        &self,
        addr: &str,
        shards: &[u64],
        leader_only: bool,
        call: impl FnOnce(Channel, Vec<Route>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let table = self.current_table().await?;
        let routes = shards
            .iter()
            .map(|&id| {
                let shard = table.shard(id).ok_or(Error::Server(quiver_core::Error::ShardNotFound(id)))?;
                Ok(Route { shard_id: id, version: shard.version, conf_ver: shard.conf_ver })
            })
            .collect::<Result<Vec<_>>>()?;
        let answer = call(self.channel(addr)?, routes).await?;
        if leader_only {
            let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
            leaders.extend(shards.iter().map(|&id| (id, addr.to_string())));
        }
        Ok(answer)
    }

    /// Sends one shard's part until it is answered or the tries run out.
    pub(crate) async fn send<T, F, Fut>(&self, shard_id: u64, leader_only: bool, call: F) -> Result<T>
    where
        F: Fn(Channel, Route) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = Duration::from_millis(20);
        let mut table = self.current_table().await?;
        let mut attempt = 0;
        let mut last = None;
        // Nodes that did not answer during this send: hints naming them are stale.
        let mut unreachable = std::collections::HashSet::new();
        for _ in 0..ATTEMPTS {
            let Some(shard) = table.shard(shard_id).cloned() else {
                return Err(Error::Server(quiver_core::Error::ShardNotFound(shard_id)));
            };
            let addr = self.target(&table, &shard, leader_only, attempt);
            let route = Route { shard_id, version: shard.version, conf_ver: shard.conf_ver };
            let error = match call(self.channel(&addr)?, route).await {
                Ok(answer) => {
                    if leader_only {
                        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).insert(shard_id, addr);
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            match error.server_error() {
                Some(quiver_core::Error::NotLeader { leader: Some(hint), .. })
                    if *hint != addr && !unreachable.contains(hint) =>
                {
                    self.leaders.lock().unwrap_or_else(|p| p.into_inner()).insert(shard_id, hint.clone());
                    attempt = 0;
                }
                Some(quiver_core::Error::EpochMismatch { .. })
                | Some(quiver_core::Error::ShardNotFound(_))
                | Some(quiver_core::Error::KeyNotInShard { .. }) => {
                    table = self.refresh().await.unwrap_or(table);
                }
                Some(quiver_core::Error::Busy { retry_after_ms, .. }) => {
                    tokio::time::sleep(Duration::from_millis(*retry_after_ms)).await;
                }
                // The shard is electing, or the node did not answer: pause, then try the
                // next replica with a fresh map. Safe for writes: their request id makes a
                // retry of an applied part a no-op.
                _ if electing_or_unreachable(&error) => {
                    if error.server_error().is_none() {
                        unreachable.insert(addr);
                    }
                    self.leaders.lock().unwrap_or_else(|p| p.into_inner()).remove(&shard_id);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                    table = self.refresh().await.unwrap_or(table);
                }
                _ => return Err(error),
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| Error::Server(quiver_core::Error::Unavailable(format!("shard {shard_id}")))))
    }
}

/// True when no leader answered: an election is under way, or the node could not be reached.
fn electing_or_unreachable(error: &Error) -> bool {
    use tonic::Code;
    match error {
        Error::Transport { .. } => true,
        Error::Rpc(s) => {
            matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
        }
        Error::Server(e) => matches!(e, quiver_core::Error::NotLeader { .. } | quiver_core::Error::Unavailable(_)),
    }
}

/// The shard-map hash of each row's entity key, or `None` when a row cannot be keyed
/// (the node then reports the problem with the whole request).
pub(crate) fn row_hashes(project: &Project, feature_set: &str, rows: &[crate::InputRow]) -> Option<Vec<u64>> {
    let fs = project.feature_set_by_ref(feature_set).ok()?;
    let entity = project.entity(&fs.entity).ok()?;
    // The whole batch is validated as the node would, so that a bad row is reported for
    // the whole request before any shard's part is written.
    let validated = quiver_core::row::validate_rows(entity, fs, rows.to_vec()).ok()?;
    // A row stamped ahead of this clock may be past the node's allowed skew, which only the
    // node knows: it then checks the whole request, numbering rows as they were given.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
    if validated.iter().any(|r| i64::try_from(now).is_ok_and(|now| r.event_ts > now)) {
        return None;
    }
    Some(validated.iter().map(|r| key_hash(&encode_entity_key(&r.key))).collect())
}

/// The hash of each entity of a read, when every feature read belongs to one entity (so
/// one shard answers each entity) and the read is within limits; `None` otherwise.
pub(crate) fn entity_hashes(
    project: &Project,
    refs: &[String],
    entities: &[BTreeMap<String, quiver_core::Value>],
) -> Option<Vec<u64>> {
    if entities.len() > quiver_core::row::MAX_ENTITIES_PER_READ {
        return None;
    }
    let features = project.resolve(refs).ok()?;
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
