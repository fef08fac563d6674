//! One Quiver node: the sled engine, the Raft groups it hosts and how they come to be.
//!
//! Every node opens the meta group. Shard groups are opened only when the applied meta
//! state lists this node as a replica; the first replica initialises a new group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::row::ValidatedRow;
use quiver_core::shard_map::{META_GROUP, ShardMap};
use quiver_offline::files::DataFile;
use quiver_offline::store::OfflineStore;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::{ExportRange, MetaCommand, MetaMachine, MetaState, MetaView, NodeInfo};
use crate::metrics::Metrics;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::state_machine::{Kind, StateMachine};
use crate::raft::{Command, NodeId, Raft, Request, Response, now_micros};
use crate::shard::{ShardCommand, ShardRow, TableRef};
use crate::storage::{KvEngine, KvTree, SledEngine};

/// One Raft group open on this node.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    /// The state machine's tree, for direct reads after a read-index check.
    pub data: Arc<dyn KvTree>,
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
}

pub struct Node {
    pub id: NodeId,
    pub config: Config,
    pub groups: Arc<Groups>,
    pub meta: MetaView,
    pub metrics: Metrics,
    pub offline: OfflineStore,
    engine: Arc<dyn KvEngine>,
    pool: PeerPool,
    raft_config: Arc<openraft::Config>,
}

impl Node {
    /// Opens the data directory and the meta group, initialising a single-node cluster on
    /// the first start. Shard groups follow in the background (see `run_placement`).
    pub async fn start(config: Config) -> Result<Arc<Node>> {
        config.validate()?;
        let online = config.data_dir.join("online");
        std::fs::create_dir_all(&online).map_err(|e| Error::io(format!("creating {}", online.display()), e))?;
        let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(&online)?);
        let (meta_machine, meta) = MetaMachine::new();
        let offline =
            OfflineStore::open(&config.offline_location(), &config.s3).map_err(|e| Error::Config(e.to_string()))?;
        let node = Arc::new(Node {
            offline,
            id: config.node_id,
            raft_config: Arc::new(config.openraft()?),
            config,
            groups: Arc::default(),
            meta,
            metrics: Metrics::new(),
            engine,
            pool: PeerPool::default(),
        });
        let (meta_group, fresh) = node.open_group(META_GROUP, Kind::Meta(Box::new(meta_machine))).await?;
        // On a first start the first member initialises the meta group with every initial
        // member as a voter; the others wait for it. Later starts reopen what is on disk.
        let members = node.config.initial_members()?;
        if fresh && members.keys().next() == Some(&node.id) {
            let voters: BTreeMap<_, _> = members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
            info!(node = node.id, voters = voters.len(), "first start: initialising the cluster");
            meta_group.raft.initialize(voters).await.map_err(|e| Error::Raft(e.to_string()))?;
        }
        tokio::spawn(node.clone().run_placement());
        tokio::spawn(node.clone().bootstrap_shards());
        let every = Duration::from_millis(node.config.workers.export_interval_ms);
        crate::workers::spawn(node.clone(), "export", every, crate::workers::export::round);
        let every = Duration::from_millis(node.config.workers.compaction_interval_ms);
        crate::workers::spawn(node.clone(), "compaction", every, crate::workers::compaction::round);
        Ok(node)
    }

    /// Opens group `id` with its log and state machine; says whether it had no state yet.
    async fn open_group(&self, id: u64, kind: Kind) -> Result<(Arc<Group>, bool)> {
        let log = LogStore::open(self.engine.clone(), id)?;
        let fresh = log.is_empty()?;
        let sm = StateMachine::open(self.engine.clone(), id, kind)?;
        let data = sm.data();
        let network = NetworkFactory { group: id, pool: self.pool.clone() };
        let raft = Raft::new(self.id, self.raft_config.clone(), network, log, sm)
            .await
            .map_err(|e| Error::Raft(format!("starting group {id}: {e}")))?;
        let group = Arc::new(Group { id, raft, data });
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
                    Ok(m) => m.into_iter().map(|(id, addr)| NodeInfo { id, addr }).collect(),
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

    /// Opens every shard group the meta state assigns to this node, as assignments appear.
    async fn run_placement(self: Arc<Self>) {
        let mut view = self.meta.clone();
        loop {
            let state = view.borrow_and_update().clone();
            if let Err(e) = self.open_assigned(&state).await {
                warn!("opening assigned shards: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    }

    async fn open_assigned(&self, state: &MetaState) -> Result<()> {
        for shard in &state.shard_map.shards {
            if !shard.replicas.contains(&self.id) || self.groups.get(shard.id).is_some() {
                continue;
            }
            let (group, fresh) = self.open_group(shard.id, Kind::Shard).await?;
            if fresh && shard.replicas.first() == Some(&self.id) {
                let members: BTreeMap<_, _> = shard
                    .replicas
                    .iter()
                    .filter_map(|id| state.nodes.get(id).map(|n| (*id, BasicNode { addr: n.addr.clone() })))
                    .collect();
                group.raft.initialize(members).await.map_err(|e| Error::Raft(e.to_string()))?;
            }
            info!(shard = shard.id, "opened shard group");
        }
        Ok(())
    }

    pub fn group(&self, id: u64) -> Result<Arc<Group>> {
        self.groups.get(id).ok_or(Error::Core(quiver_core::Error::ShardNotFound(id)))
    }

    pub fn leader_of(&self, group: u64) -> Option<NodeId> {
        self.groups.get(group).and_then(|g| g.raft.metrics().borrow().current_leader)
    }

    /// True once the meta group and every shard assigned here have a leader.
    pub fn is_ready(&self) -> bool {
        let state = self.meta.borrow().clone();
        let assigned = state.shard_map.shards.iter().filter(|s| s.replicas.contains(&self.id));
        !state.shard_map.shards.is_empty()
            && self.leader_of(META_GROUP).is_some()
            && assigned.into_iter().all(|s| self.leader_of(s.id).is_some())
    }

    /// Proposes a command to a group this node leads and waits until it is applied;
    /// returns the state machine's answer and the entry's log index.
    pub async fn write(&self, group: u64, command: Command) -> Result<(Response, u64)> {
        let g = self.group(group)?;
        let request = Request { leader_time: now_micros(), command };
        match g.raft.client_write(request).await {
            Ok(reply) => match reply.data {
                Response::Rejected(e) => Err(e.into()),
                other => Ok((other, reply.log_id.index)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(quiver_core::Error::NotLeader { group, leader: f.leader_node.map(|n| n.addr) }.into())
            }
            Err(e) => Err(Error::Raft(format!("group {group}: {e}"))),
        }
    }

    /// Writes validated rows of one table to the online shards, grouped by shard and
    /// proposed in parallel; returns the log index each shard gave its part.
    /// `export` queues the rows for the offline store: true for online writes, false for
    /// rows that come from the offline store (ingest, materialization).
    pub async fn put_rows(&self, table: &TableRef, rows: Vec<ValidatedRow>, export: bool) -> Result<HashMap<u64, u64>> {
        let state = self.meta.borrow().clone();
        let mut by_shard: BTreeMap<u64, Vec<ShardRow>> = BTreeMap::new();
        for row in rows {
            let key = encode_entity_key(&row.key);
            let shard = state.shard_map.shard_for(key_hash(&key))?.id;
            by_shard.entry(shard).or_default().push(ShardRow { key, event_ts: row.event_ts, values: row.values });
        }
        let writes = by_shard.into_iter().map(|(shard, rows)| {
            let command = Command::Shard(ShardCommand::Put { table: table.clone(), rows, export });
            async move { self.write(shard, command).await.map(|(_, index)| (shard, index)) }
        });
        Ok(futures::future::try_join_all(writes).await?.into_iter().collect())
    }

    /// Reserves `count` ingestion sequence numbers from the meta group; returns the first.
    pub async fn reserve_seq(&self, count: u64) -> Result<u64> {
        match self.write(META_GROUP, Command::Meta(MetaCommand::ReserveSeq { count })).await? {
            (Response::Seq(start), _) => Ok(start),
            (other, _) => Err(Error::Raft(format!("unexpected answer to a sequence reservation: {other:?}"))),
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
        Ok(!matches!(self.write(META_GROUP, Command::Meta(command)).await?.0, Response::Duplicate))
    }

    /// Waits until reads of `group` on this node reflect every write acknowledged before the call.
    pub async fn linearize(&self, group: &Group) -> Result<()> {
        match group.raft.ensure_linearizable().await {
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
