//! One Quiver node: the sled engine, the Raft groups it hosts and how they come to be.
//!
//! Every node opens the meta group. Shard groups are opened only when the applied meta
//! state lists this node as a replica (and closed, their data dropped, once it no longer
//! does); at a shard's first epoch its first replica initialises the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::row::ValidatedRow;
use quiver_core::shard_map::{Epoch, META_GROUP, ShardMap};
use quiver_offline::files::DataFile;
use quiver_offline::store::OfflineStore;
use quiver_proto::v1::ShardRoute;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::meta::{ExportRange, MetaCommand, MetaMachine, MetaState, MetaView, NodeInfo};
use crate::metrics::Metrics;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::read_index::ReadIndex;
use crate::raft::state_machine::{Kind, StateMachine};
use crate::raft::{Command, NodeId, Raft, Request, Response, now_micros};
use crate::shard::{ShardCommand, ShardRow, TableRef};
use crate::storage::{KvEngine, KvTree, SledEngine};

/// Proposals a group takes at once before answering `Busy`.
const MAX_INFLIGHT_PROPOSALS: usize = 1024;

/// One Raft group open on this node.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    /// The state machine's tree, for direct reads after a read-index check.
    pub data: Arc<dyn KvTree>,
    /// Leader time of the newest applied command: bounds how stale a follower's read is.
    applied_time: Arc<AtomicI64>,
    inflight: AtomicUsize,
    read_index: Arc<ReadIndex>,
}

impl Group {
    /// Proposes a command (this node must lead the group) and waits until it is applied;
    /// returns the state machine's answer and the entry's log index.
    pub async fn propose(&self, command: Command) -> Result<(Response, u64)> {
        let group = self.id;
        let _slot = InflightSlot::take(&self.inflight, group)?;
        let commits_files = matches!(command, Command::Meta(MetaCommand::CommitFiles { .. }));
        let request = Request { leader_time: now_micros(), command };
        match self.raft.client_write(request).await {
            Ok(reply) => match reply.data {
                Response::Rejected(e) => Err(e.into()),
                other => {
                    if commits_files && other == Response::Done {
                        // Committed and applied, not yet answered: the metadata leader's
                        // worst moment to die.
                        crate::failpoint::hit("meta-after-commit");
                    }
                    Ok((other, reply.log_id.index))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(quiver_core::Error::NotLeader { group, leader: f.leader_node.map(|n| n.addr) }.into())
            }
            Err(e) => Err(Error::Raft(format!("group {group}: {e}"))),
        }
    }

    /// Linearizable reads served by this group here, and the read-index rounds they took.
    pub fn read_index_counts(&self) -> (u64, u64) {
        self.read_index.counts()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// An upper bound, in milliseconds, on how old a read served here without a read
    /// index can be: on the leader, the time since a quorum last acknowledged it; on a
    /// follower, the time since the newest command it applied was accepted.
    pub fn staleness_bound_ms(&self, me: NodeId) -> u64 {
        // Read the two fields under the borrow: a stale read should not copy the whole metrics.
        let quorum_ack = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.millis_since_quorum_ack.filter(|_| m.current_leader == Some(me))
        };
        if let Some(ms) = quorum_ack {
            return ms;
        }
        let applied = self.applied_time.load(Ordering::Relaxed);
        u64::try_from((now_micros() - applied) / 1000).unwrap_or(0)
    }
}

/// A place among a group's in-flight proposals, given back on drop.
struct InflightSlot<'a>(&'a AtomicUsize);

impl<'a> InflightSlot<'a> {
    fn take(counter: &'a AtomicUsize, group: u64) -> Result<InflightSlot<'a>> {
        if counter.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT_PROPOSALS {
            counter.fetch_sub(1, Ordering::AcqRel);
            let reason = format!("group {group} has {MAX_INFLIGHT_PROPOSALS} proposals in flight");
            return Err(quiver_core::Error::Busy { reason, retry_after_ms: 20 }.into());
        }
        Ok(InflightSlot(counter))
    }
}

impl Drop for InflightSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The groups open on this node, by group id.
#[derive(Default)]
pub struct Groups {
    map: RwLock<HashMap<u64, Arc<Group>>>,
}

impl Groups {
    pub fn get(&self, id: u64) -> Option<Arc<Group>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Group>> {
        let mut groups: Vec<_> = self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        groups.sort_by_key(|g| g.id);
        groups
    }

    fn insert(&self, group: Arc<Group>) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(group.id, group);
    }

    fn remove(&self, id: u64) -> Option<Arc<Group>> {
        self.map.write().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }
}

pub struct Node {
    pub id: NodeId,
    pub config: Config,
    pub groups: Arc<Groups>,
    pub meta: MetaView,
    pub metrics: Metrics,
    pub offline: OfflineStore,
    pub serving: crate::serving_log::ServingLog,
    engine: Arc<dyn KvEngine>,
    pub(crate) pool: PeerPool,
    raft_config: Arc<openraft::Config>,
    started_at: i64,
    requests: std::sync::atomic::AtomicU64,
}

impl Node {
    /// Opens the data directory and the meta group, initialising a single-node cluster on
    /// the first start. Shard groups follow in the background (see `run_placement`).
    pub async fn start(mut config: Config) -> Result<Arc<Node>> {
        config.validate()?;
        let identity = Identity::establish(&mut config).await?;
        let online = config.data_dir.join("online");
        std::fs::create_dir_all(&online).map_err(|e| Error::io(format!("creating {}", online.display()), e))?;
        let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(&online)?);
        let (meta_machine, meta) = MetaMachine::new();
        let offline =
            OfflineStore::open(&config.offline_location(), &config.s3).map_err(|e| Error::Config(e.to_string()))?;
        let node = Arc::new(Node {
            offline,
            serving: crate::serving_log::ServingLog::new(config.workers.serving_sample_rate),
            id: config.node_id,
            raft_config: Arc::new(config.openraft()?),
            config,
            groups: Arc::default(),
            meta,
            metrics: Metrics::new(),
            engine,
            pool: PeerPool::default(),
            started_at: now_micros(),
            requests: Default::default(),
        });
        let (meta_group, fresh) = node.open_group(META_GROUP, Kind::Meta(Box::new(meta_machine))).await?;
        // On a first start the first member initialises the meta group with every initial
        // member as a voter; the others, and nodes that join, wait to be added. Later
        // starts reopen what is on disk.
        let members = node.config.initial_members()?;
        if fresh && !identity.joined && members.keys().next() == Some(&node.id) {
            let voters: BTreeMap<_, _> = members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
            info!(node = node.id, voters = voters.len(), "first start: initialising the cluster");
            meta_group.raft.initialize(voters).await.map_err(|e| Error::Raft(e.to_string()))?;
        }
        tokio::spawn(node.clone().run_hosting());
        tokio::spawn(node.clone().bootstrap_shards());
        let every = Duration::from_millis(node.config.workers.placement_interval_ms);
        crate::workers::spawn(node.clone(), "scheduler", every, crate::workers::scheduler::round);
        crate::workers::spawn(node.clone(), "replicas", every, crate::workers::replicas::round);
        let every = Duration::from_millis(node.config.workers.export_interval_ms);
        crate::workers::spawn(node.clone(), "export", every, crate::workers::export::round);
        let every = Duration::from_millis(node.config.workers.compaction_interval_ms);
        crate::workers::spawn(node.clone(), "compaction", every, crate::workers::compaction::round);
        let every = Duration::from_millis(node.config.workers.statistics_interval_ms);
        crate::workers::spawn(node.clone(), "statistics", every, crate::workers::statistics::round);
        crate::workers::spawn(node.clone(), "monitors", every, crate::workers::monitors::round);
        let every = Duration::from_millis(node.config.workers.serving_flush_ms);
        crate::workers::spawn(node.clone(), "serving-log", every, crate::serving_log::flush);
        Ok(node)
    }

    /// Opens group `id` with its log and state machine; says whether it had no state yet.
    async fn open_group(&self, id: u64, kind: Kind) -> Result<(Arc<Group>, bool)> {
        let log = LogStore::open(self.engine.clone(), id)?;
        let fresh = log.is_empty()?;
        let sm = StateMachine::open(self.engine.clone(), id, kind)?;
        let (data, applied_time) = (sm.data(), sm.applied_time());
        let network = NetworkFactory { group: id, pool: self.pool.clone() };
        let raft = Raft::new(self.id, self.raft_config.clone(), network, log, sm)
            .await
            .map_err(|e| Error::Raft(format!("starting group {id}: {e}")))?;
        let group = Arc::new(Group {
            id,
            raft,
            data,
            applied_time,
            inflight: AtomicUsize::new(0),
            read_index: Arc::new(ReadIndex::new(self.config.read_lease())),
        });
        self.groups.insert(group.clone());
        Ok((group, fresh))
    }

    /// Lays out the first shard map once this node leads the meta group of a new cluster.
    async fn bootstrap_shards(self: Arc<Self>) {
        loop {
            if !self.meta.borrow().shard_map.shards.is_empty() {
                return;
            }
            if self.leader_of(META_GROUP) == Some(self.id) {
                let nodes: Vec<NodeInfo> = match self.config.initial_members() {
                    Ok(m) => m.into_iter().map(|(id, addr)| NodeInfo { id, addr, draining: false }).collect(),
                    Err(e) => return warn!("laying out shards: {e}"),
                };
                // Up to three replicas per shard, on the first members.
                let replicas: Vec<u64> = nodes.iter().map(|n| n.id).take(3).collect();
                let cmd = ShardMap::uniform(self.config.shards, &replicas)
                    .map_err(Error::from)
                    .map(|shard_map| MetaCommand::Bootstrap { nodes, shard_map });
                match cmd {
                    Ok(cmd) => match self.write(META_GROUP, Command::Meta(cmd)).await {
                        Ok(_) => info!(shards = self.config.shards, "shard map laid out"),
                        Err(e) => warn!("laying out shards: {e}"),
                    },
                    Err(e) => return warn!("laying out shards: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps the shard groups open here in step with the meta state: opens the ones
    /// assigned to this node as assignments appear, closes (and drops) the ones it no
    /// longer hosts once their move is confirmed.
    async fn run_hosting(self: Arc<Self>) {
        let mut view = self.meta.clone();
        loop {
            let state = view.borrow_and_update().clone();
            if let Err(e) = self.host_assigned(&state).await {
                warn!("opening or closing shard groups: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    }

    async fn host_assigned(&self, state: &MetaState) -> Result<()> {
        for shard in &state.shard_map.shards {
            let hosted = self.groups.get(shard.id).is_some();
            if shard.hosted_by(self.id) && !hosted {
                let (group, fresh) = self.open_group(shard.id, Kind::Shard).await?;
                // Only a shard's first membership is initialised; replicas added later are
                // brought in by the shard's leader.
                if fresh && shard.epoch.conf_ver == 1 && shard.replicas.first() == Some(&self.id) {
                    let members: BTreeMap<_, _> = shard
                        .replicas
                        .iter()
                        .filter_map(|id| state.nodes.get(id).map(|n| (*id, BasicNode { addr: n.addr.clone() })))
                        .collect();
                    group.raft.initialize(members).await.map_err(|e| Error::Raft(e.to_string()))?;
                }
                info!(shard = shard.id, "opened shard group");
            } else if !shard.hosted_by(self.id) && hosted {
                self.close_group(shard.id).await?;
                info!(shard = shard.id, "shard moved away: closed its group and dropped its data");
            }
        }
        Ok(())
    }

    /// Stops a group and deletes its log, state and snapshots from the engine.
    async fn close_group(&self, id: u64) -> Result<()> {
        if let Some(group) = self.groups.remove(id) {
            group.raft.shutdown().await.map_err(|e| Error::Raft(format!("stopping group {id}: {e}")))?;
        }
        for part in ["log", "state", "snapshot"] {
            self.engine.drop_tree(&format!("group-{id}-{part}"))?;
        }
        Ok(())
    }

    pub fn group(&self, id: u64) -> Result<Arc<Group>> {
        self.groups.get(id).ok_or(Error::Core(quiver_core::Error::ShardNotFound(id)))
    }

    pub fn leader_of(&self, group: u64) -> Option<NodeId> {
        self.groups.get(group).and_then(|g| g.leader())
    }

    /// True once the meta group and every shard assigned here have a leader.
    pub fn is_ready(&self) -> bool {
        let state = self.meta.borrow().clone();
        let assigned = state.shard_map.shards.iter().filter(|s| s.hosted_by(self.id));
        !state.shard_map.shards.is_empty()
            && self.leader_of(META_GROUP).is_some()
            && assigned.into_iter().all(|s| self.leader_of(s.id).is_some())
    }

    /// Proposes a command to a group this node leads and waits until it is applied;
    /// returns the state machine's answer and the entry's log index.
    pub async fn write(&self, group: u64, command: Command) -> Result<(Response, u64)> {
        self.group(group)?.propose(command).await
    }

    /// Proposes a metadata command wherever the metadata leader is: here, or forwarded.
    pub async fn write_meta(&self, command: MetaCommand) -> Result<Response> {
        self.propose_anywhere(META_GROUP, Command::Meta(command)).await.map(|(response, _)| response)
    }

    /// Proposes a command to group `group_id` wherever its leader is: here, or forwarded
    /// to it (internal work only — metadata writes, ingest and materialization upserts;
    /// client requests are routed by the client). Retried through elections for a bounded
    /// time only when it was refused before being proposed or the leader could not be
    /// reached. Every command sent this way is idempotent or refused as a duplicate on
    /// replay (rows: last writer wins, not queued for export), except that a retried
    /// `SaveDataset` may report its own name as taken.
    pub async fn propose_anywhere(&self, group_id: u64, command: Command) -> Result<(Response, u64)> {
        let deadline = Instant::now() + self.config.election_timeout() * 6;
        let mut pause = Duration::from_millis(20);
        let mut hint: Option<String> = None;
        let mut attempt = 0usize;
        loop {
            let result = match (self.groups.get(group_id), hint.take()) {
                (_, Some(addr)) => self.forward(&addr, group_id, &command).await,
                (Some(group), None) => {
                    let metrics = group.raft.metrics().borrow().clone();
                    match metrics.current_leader {
                        Some(id) if id == self.id => group.propose(command.clone()).await,
                        Some(id) => match metrics.membership_config.membership().get_node(&id) {
                            Some(node) => self.forward(&node.addr, group_id, &command).await,
                            None => Err(quiver_core::Error::Unavailable(format!("no address for leader {id}")).into()),
                        },
                        None => Err(quiver_core::Error::Unavailable(format!("group {group_id} has no leader")).into()),
                    }
                }
                // Not hosted here: ask its replicas in turn; they name the leader.
                (None, None) => {
                    let state = self.meta.borrow().clone();
                    let replicas = &state.shard_map.shard(group_id)?.replicas;
                    let addr = replicas.get(attempt % replicas.len().max(1)).and_then(|id| state.nodes.get(id));
                    match addr {
                        Some(node) => self.forward(&node.addr, group_id, &command).await,
                        None => Err(quiver_core::Error::ShardNotFound(group_id).into()),
                    }
                }
            };
            let retry = match &result {
                Err(Error::Core(quiver_core::Error::NotLeader { leader, .. })) => {
                    hint = leader.clone();
                    true
                }
                Err(Error::Core(
                    quiver_core::Error::Unavailable(_)
                    | quiver_core::Error::Busy { .. }
                    | quiver_core::Error::ShardNotFound(_),
                )) => true,
                _ => false,
            };
            if !retry || Instant::now() >= deadline {
                return result;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            attempt += 1;
        }
    }

    async fn forward(&self, addr: &str, group_id: u64, command: &Command) -> Result<(Response, u64)> {
        let channel = self.pool.channel(addr).map_err(Error::Raft)?;
        let mut client = quiver_proto::v1::raft_service_client::RaftServiceClient::new(channel);
        let payload = crate::codec::encode(command)?;
        let message = quiver_proto::v1::RaftMessage { group_id, payload, error: Vec::new() };
        let unreachable = |s: tonic::Status| {
            quiver_core::Error::Unavailable(format!(
                "forwarding to the leader of group {group_id} at {addr}: {}",
                s.message()
            ))
        };
        let reply = client.propose(message).await.map_err(unreachable)?.into_inner();
        let answer: std::result::Result<(Response, u64), quiver_core::Error> = crate::codec::decode(&reply.payload)?;
        Ok(answer?)
    }

    /// Writes validated rows of one table to the online shards, grouped by shard and
    /// proposed in parallel; returns the log index each shard gave its part.
    /// `export` queues the rows for the offline store: true for online writes, false for
    /// rows that come from the offline store (ingest, materialization).
    /// A `request` id makes the write apply at most once per shard (each shard's part
    /// carries the id with the shard's number appended).
    pub async fn put_rows(
        &self,
        table: &TableRef,
        rows: Vec<ValidatedRow>,
        export: bool,
        request: Option<Vec<u8>>,
    ) -> Result<HashMap<u64, u64>> {
        // Queued rows must not be queued twice when a forwarded part is retried: without a
        // caller's id, the node makes one.
        let request = request.or_else(|| export.then(|| self.own_request_id()));
        let state = self.meta.borrow().clone();
        let mut by_shard: BTreeMap<u64, Vec<ShardRow>> = BTreeMap::new();
        for row in rows {
            let key = encode_entity_key(&row.key);
            let shard = state.shard_map.shard_for(key_hash(&key))?.id;
            by_shard.entry(shard).or_default().push(ShardRow { key, event_ts: row.event_ts, values: row.values });
        }
        let writes = by_shard.into_iter().map(|(shard, rows)| {
            let request = request.as_ref().map(|id| [id.as_slice(), &shard.to_be_bytes()].concat());
            let command = Command::Shard(ShardCommand::Put { table: table.clone(), rows, export, request });
            async move { self.propose_anywhere(shard, command).await.map(|(_, index)| (shard, index)) }
        });
        Ok(futures::future::try_join_all(writes).await?.into_iter().collect())
    }

    /// Refuses a request a routing client sent here for shard `route`, when this node's
    /// view differs from the client's: an unknown shard or one not hosted here, another
    /// epoch, a key outside the shard's range, or (for `leader_only` requests) a shard this
    /// node does not lead. Nothing has been proposed when it refuses.
    pub async fn check_route(&self, route: &ShardRoute, hashes: &[u64], leader_only: bool) -> Result<()> {
        let sent = Epoch { version: route.version, conf_ver: route.conf_ver };
        let mut state = self.meta.borrow().clone();
        let mut shard = state.shard_map.shard(route.shard_id)?.clone();
        if (sent.version, sent.conf_ver) > (shard.epoch.version, shard.epoch.conf_ver) {
            // The client saw a newer map than this node has applied: catch up first.
            state = self.caught_up_meta().await?;
            shard = state.shard_map.shard(route.shard_id)?.clone();
        }
        if shard.epoch != sent {
            return Err(quiver_core::Error::EpochMismatch { shard: shard.id, current: shard.epoch }.into());
        }
        let group = self.group(shard.id)?;
        if let Some(i) = hashes.iter().position(|h| !(shard.start..=shard.end).contains(h)) {
            return Err(quiver_core::Error::KeyNotInShard { shard: shard.id, entity: i + 1 }.into());
        }
        let leader = group.leader();
        if leader_only && leader != Some(self.id) {
            let addr = leader.and_then(|id| state.nodes.get(&id)).map(|n| n.addr.clone());
            return Err(quiver_core::Error::NotLeader { group: shard.id, leader: addr }.into());
        }
        Ok(())
    }

    /// A request id no other request of any node uses: node id, start time, counter.
    fn own_request_id(&self) -> Vec<u8> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        [self.id.to_be_bytes(), self.started_at.to_be_bytes(), n.to_be_bytes()].concat()
    }

    /// Reserves `count` ingestion sequence numbers from the meta group; returns the first.
    pub async fn reserve_seq(&self, count: u64) -> Result<u64> {
        match self.write_meta(MetaCommand::ReserveSeq { count }).await? {
            Response::Seq(start) => Ok(start),
            other => Err(Error::Raft(format!("unexpected answer to a sequence reservation: {other:?}"))),
        }
    }

    /// Commits written files to the manifest in one step; false when their source (or
    /// export range) was committed before.
    pub async fn commit_files(
        &self,
        files: Vec<(TableRef, DataFile)>,
        source: (TableRef, String),
        export: Option<ExportRange>,
    ) -> Result<bool> {
        let command = MetaCommand::CommitFiles { files, source, export };
        Ok(!matches!(self.write_meta(command).await?, Response::Duplicate))
    }

    /// Waits until reads of `group` on this node reflect every write acknowledged before the call.
    pub async fn linearize(&self, group: &Group) -> Result<()> {
        match group.read_index.wait(&group.raft).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(quiver_core::Error::NotLeader { group: group.id, leader: f.leader_node.map(|n| n.addr) }.into())
            }
            Err(e) => Err(Error::Raft(format!("group {}: {e}", group.id))),
        }
    }

    /// The meta log index that covers every registry change acknowledged so far, from the
    /// metadata leader (this node, or asked over gRPC).
    pub async fn meta_read_index(&self) -> Result<u64> {
        let group = self.group(META_GROUP)?;
        if self.leader_of(META_GROUP) == Some(self.id) {
            self.linearize(&group).await?;
            return Ok(group.raft.metrics().borrow().last_applied.map_or(0, |l| l.index));
        }
        let leader = group.raft.metrics().borrow().current_leader;
        let addr = leader
            .and_then(|id| self.meta.borrow().nodes.get(&id).map(|n| n.addr.clone()))
            .ok_or_else(|| quiver_core::Error::Unavailable("the meta group has no leader".into()))?;
        let channel = self.pool.channel(&addr).map_err(Error::Raft)?;
        let mut client = quiver_proto::v1::admin_service_client::AdminServiceClient::new(channel);
        let reply = client
            .meta_read_index(quiver_proto::v1::MetaReadIndexRequest {})
            .await
            .map_err(|s| Error::Raft(format!("meta read index from {addr}: {}", s.message())))?;
        Ok(reply.into_inner().index)
    }

    /// The meta state once this node has applied everything the metadata leader acknowledged.
    pub async fn caught_up_meta(&self) -> Result<Arc<MetaState>> {
        let index = self.meta_read_index().await?;
        let group = self.group(META_GROUP)?;
        let waited =
            group.raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(index), "meta catch-up").await;
        waited.map_err(|e| quiver_core::Error::Unavailable(format!("catching up with the registry: {e}")))?;
        Ok(self.meta.borrow().clone())
    }

    /// Runs `check` on the applied meta state. When it fails for a name the registry does
    /// not know, the state may just be behind the metadata leader: catch up to the leader's
    /// read index and check once more, so a definition acknowledged through any node is
    /// seen here too.
    /// Returns the state the check passed on, with what the check computed from it.
    pub async fn current_meta<T>(&self, check: impl Fn(&MetaState) -> Result<T>) -> Result<(Arc<MetaState>, T)> {
        let state = self.meta.borrow().clone();
        match check(&state) {
            Err(Error::Core(
                quiver_core::Error::UnknownProject(_)
                | quiver_core::Error::UnknownEntity(_)
                | quiver_core::Error::UnknownFeatureSet(_)
                | quiver_core::Error::UnknownFeature(_)
                | quiver_core::Error::UnknownVector(_),
            )) => {
                let state = self.caught_up_meta().await?;
                let checked = check(&state)?;
                Ok((state, checked))
            }
            other => other.map(|checked| (state, checked)),
        }
    }

    /// Stops every group and flushes the engine.
    pub async fn shutdown(&self) {
        for group in self.groups.all() {
            if let Err(e) = group.raft.shutdown().await {
                warn!(group = group.id, "stopping raft: {e}");
            }
        }
        if let Err(e) = self.engine.flush() {
            warn!("final flush: {e}");
        }
    }
}
