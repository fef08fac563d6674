//! Where a node is assembled: the engine, the meta group, the parts services use, and the
//! background workers, each given the parts it needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use quiver_core::access::{Role, Scope};
use quiver_core::shard_map::{META_GROUP, ShardMap};
use quiver_offline::store::OfflineStore;
use tracing::{info, warn};

use crate::auth::Gate;
use crate::auth::audit::AuditLog;
use crate::backup::create::Backups;
use crate::groups::Groups;
use crate::hosting::Hosting;
use crate::identity;
use crate::meta_reader::MetaReader;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::proposer::Proposer;
use crate::raft::network::PeerPool;
use crate::raft::state_machine::Kind;
use crate::serving_log::ServingLog;
use crate::tls::Tls;
use crate::trust::member::{ClusterMark, Credentials};
use crate::trust::{secret, token};
use crate::workers::{self, Context};
use quiver_store::command::{Command, MetaCommand};
use quiver_store::config::Config;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{self, TreePart};
use quiver_store::meta::{MetaMachine, NodeInfo};
use quiver_store::release;
use quiver_store::storage::{CachingEngine, KvEngine, SledEngine};

/// Opens the data directory and the meta group, initialising a single-node cluster on the
/// first start, and starts the workers. Shard groups follow in the background.
pub async fn start(mut config: Config) -> Result<Arc<Node>> {
    config.validate()?;
    crate::failpoint::warn_if_missing();
    make_private(&config.data_dir)?;
    let tls = Tls::load(&config.tls)?;
    let secret = secret::establish(&config)?;
    let cluster = ClusterMark::default();
    let pool = PeerPool::new(tls.clone(), Credentials::new(secret.as_ref(), cluster.clone()));
    let mut identity = identity::establish(&mut config, &pool).await?;
    cluster.set_node(config.node_id);
    let spill_dir = config.spill_dir();
    let left = quiver_offline::spill::remove_leftovers(&spill_dir).map_err(|e| Error::Config(e.to_string()))?;
    if left > 0 {
        tracing::info!(dir = %spill_dir.display(), left, "removed spill files of retrievals a stop cut short");
    }
    let online = config.data_dir.join("online");
    std::fs::create_dir_all(&online).map_err(|e| Error::io(format!("creating {}", online.display()), e))?;
    // Online reads get rows from the shards' state trees: those are read through the cache.
    let engine = CachingEngine::new(Arc::new(SledEngine::open(&online)?), config.online.row_cache_bytes(), |name| {
        matches!(keyspace::tree_of(name), Some((_, TreePart::State)))
    });
    let row_cache = engine.cache();
    let engine: Arc<dyn KvEngine> = Arc::new(engine);
    let offline =
        OfflineStore::open(&config.offline_location(), &config.s3).map_err(|e| Error::Config(e.to_string()))?;
    let me = config.node_id;
    let groups = Arc::new(Groups::new(me));
    let (meta_machine, view) = MetaMachine::new();
    // Proposals and catch-ups wait through a few elections before giving up.
    let retry_for = config.election_timeout() * 6;
    let meta = MetaReader::new(groups.clone(), view, pool.clone(), retry_for);
    let proposer = Arc::new(Proposer::new(groups.clone(), meta.clone(), pool.clone(), retry_for));
    let hosting = Hosting {
        me,
        engine: engine.clone(),
        pool: pool.clone(),
        raft_config: Arc::new(config.openraft()?),
        read_lease: config.read_lease(),
        groups: groups.clone(),
    };
    let (meta_group, fresh) = hosting.open_group(META_GROUP, Kind::Meta(Box::new(meta_machine))).await?;
    identity::mark_cluster(
        &mut identity,
        &config.data_dir,
        quiver_store::meta::cluster_id(meta_group.data.as_ref())?,
        &cluster,
    )?;
    let in_force = quiver_store::meta::cluster_version(meta_group.data.as_ref())?;
    if in_force > release::CLUSTER_VERSION {
        return Err(Error::Config(format!(
            "this data dir's cluster is at cluster version {in_force}, which a later release put in force; \
             this release ({}) knows versions up to {}: start the node with the cluster's release",
            release::RELEASE,
            release::CLUSTER_VERSION
        )));
    }
    // On a first start the first member initialises the meta group with every initial
    // member as a voter; the others, and nodes that join, wait to be added. Later starts
    // reopen what is on disk.
    let members = config.initial_members()?;
    if fresh && !identity.joined && members.keys().next() == Some(&me) {
        let voters: BTreeMap<_, _> = members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        info!(node = me, voters = voters.len(), "first start: initialising the cluster");
        token::write_bootstrap(&config.data_dir)?;
        announce_bootstrap_token(&config);
        meta_group.raft.initialize(voters).await.map_err(|e| Error::Raft(e.to_string()))?;
        tokio::spawn(start_at_this_release(proposer.clone()));
    }
    if let Some(secret) = token::read_bootstrap(&config.data_dir)? {
        let retention = i64::try_from(config.auth.audit_retention()?.as_micros()).unwrap_or(i64::MAX);
        tokio::spawn(register_bootstrap_token(token::hash(&secret), retention, meta.clone(), proposer.clone()));
    }
    match (config.auth.enabled, config.insecure) {
        (false, true) => {
            warn!("INSECURE: authentication is off: anyone who reaches this node may read and write everything")
        }
        (false, false) => info!("authentication is off (--auth turns it on); the node listens on loopback only"),
        (true, _) => info!("authentication is on: every request needs a token"),
    }
    if config.insecure && !config.tls.enabled() {
        warn!("INSECURE: no TLS: requests, answers and tokens cross the network in the clear");
    }
    tokio::spawn(identity::learn_cluster(identity, config.data_dir.clone(), meta_group.data.clone(), cluster.clone()));
    let (caught_up, sweep_when) = tokio::sync::oneshot::channel();
    tokio::spawn(hosting.run(meta.watch(), sweep_when));
    tokio::spawn(tell_when_caught_up(meta.clone(), caught_up));
    tokio::spawn(watch_membership(me, meta.clone()));
    tokio::spawn(crate::offline::shared::check(meta_group.data.clone(), offline.clone(), pool.halt()));
    tokio::spawn(bootstrap_shards(config.clone(), meta.clone(), groups.clone(), proposer.clone()));
    tokio::spawn(advertise_to_clients(me, config.client_addr(), meta.clone(), proposer.clone()));
    tokio::spawn(report_version(me, meta.clone(), proposer.clone()));
    let backups = Arc::new(Backups {
        groups: groups.clone(),
        meta: meta.clone(),
        proposer: proposer.clone(),
        pool: pool.clone(),
        offline: offline.clone(),
        s3: config.s3.clone(),
        max_bytes_per_sec: config.backup.max_mib_per_sec.saturating_mul(1 << 20),
        running: tokio::sync::Mutex::new(()),
    });
    let metrics = Metrics::new(row_cache);
    let node = Arc::new(Node {
        id: me,
        gate: Arc::new(Gate::new(&config, meta.clone(), secret, cluster)),
        audit: AuditLog::start(me, proposer.clone(), config.auth.audit_retention()?, metrics.audit_dropped.clone()),
        backups,
        tls,
        serving: Arc::new(ServingLog::new(config.workers.serving_sample_rate)),
        config,
        groups,
        meta,
        proposer,
        metrics,
        offline,
        peers: pool.clone(),
        engine,
    });
    start_workers(&node, pool);
    tokio::spawn(record_tallies(node.clone()));
    if node.config.auth.enabled {
        tokio::spawn(keep_caught_up(node.meta.clone()));
    }
    Ok(node)
}

fn start_workers(node: &Node, pool: PeerPool) {
    let context = Context {
        me: node.id,
        config: node.config.workers.clone(),
        sharding: node.config.sharding.clone(),
        pool,
        groups: node.groups.clone(),
        meta: node.meta.clone(),
        proposer: node.proposer.clone(),
        offline: node.offline.clone(),
        metrics: node.metrics.clone(),
        serving: node.serving.clone(),
        backups: node.backups.clone(),
        backup: node.config.backup.clone(),
    };
    let ms = Duration::from_millis;
    let config = &node.config.workers;
    let every = ms(config.placement_interval_ms);
    workers::spawn(context.clone(), "scheduler", every, workers::scheduler::round);
    workers::spawn(context.clone(), "replicas", every, workers::replicas::round);
    let every = ms(node.config.sharding.split_check_interval_ms);
    workers::spawn(context.clone(), "autosplit", every, workers::autosplit::round);
    workers::spawn(context.clone(), "export", ms(config.export_interval_ms), workers::export::round);
    workers::spawn(context.clone(), "compaction", ms(config.compaction_interval_ms), workers::compaction::round);
    let every = ms(config.statistics_interval_ms);
    workers::spawn(context.clone(), "statistics", every, workers::statistics::round);
    workers::spawn(context.clone(), "monitors", every, workers::monitors::round);
    workers::spawn(context.clone(), "serving-log", ms(config.serving_flush_ms), workers::serving_stats::flush);
    if let Ok(Some(every)) = node.config.backup.every() {
        // Checked often enough to keep a short schedule, rarely enough not to retry a
        // failing one in a loop.
        let check = every.clamp(Duration::from_secs(1), Duration::from_secs(30));
        workers::spawn(context, "backup", check, workers::backup::round);
    }
}

/// Lays out the first shard map once this node leads the meta group of a new cluster.
async fn bootstrap_shards(config: Config, meta: MetaReader, groups: Arc<Groups>, proposer: Arc<Proposer>) {
    loop {
        if !meta.latest().shard_map.shards.is_empty() {
            return;
        }
        if groups.leads(META_GROUP) {
            let nodes: Vec<NodeInfo> = match config.initial_members() {
                Ok(m) => m
                    .into_iter()
                    .map(|(id, addr)| NodeInfo { id, client_addr: addr.clone(), addr, draining: false })
                    .collect(),
                Err(e) => return warn!("laying out shards: {e}"),
            };
            // Up to three replicas per shard, on the first members.
            let replicas: Vec<u64> = nodes.iter().map(|n| n.id).take(3).collect();
            let cmd = ShardMap::uniform(config.shards, &replicas)
                .map_err(Error::from)
                .map(|shard_map| MetaCommand::Bootstrap { nodes, shard_map });
            match cmd {
                Ok(cmd) => match proposer.propose(META_GROUP, Command::Meta(cmd)).await {
                    Ok(_) => info!(shards = config.shards, "shard map laid out"),
                    Err(e) => warn!("laying out shards: {e}"),
                },
                Err(e) => return warn!("laying out shards: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Says once, at the cluster's first start, where the bootstrap cluster-admin token is, never
/// what it is: the node's output ends up in journald and `docker logs`.
fn announce_bootstrap_token(config: &Config) {
    let path = token::bootstrap_path(&config.data_dir);
    info!(file = %path.display(), "wrote the cluster admin token (readable by this user only)");
}

/// The data dir and everything the node writes are its user's alone: rows, Parquet files,
/// spills and local backups hold personal values. The umask covers every file a library
/// makes (sled, object_store, Parquet writers); the data dir made earlier is narrowed too.
fn make_private(data_dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("making {} private", data_dir.display()), e))
}

/// Catches up with the metadata leader every second, so that this node's view of the tokens
/// is never older than `auth::TOKEN_VIEW_BOUND` while it reaches the leader.
async fn keep_caught_up(meta: MetaReader) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = meta.caught_up().await {
            tracing::debug!("catching up with the metadata leader: {e}");
        }
    }
}

/// Puts what is counted rather than recorded one by one on record: refusals for want of a
/// valid token (each source's first in a minute, then how many more it sent,
/// `auth::refusals`), and writes once their minute has ended (`auth::write_tally`).
async fn record_tallies(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let writes = node.audit.writes.drain(node.id, quiver_core::time::now_micros());
        for entry in node.gate.refusals_to_record(node.id).into_iter().chain(writes) {
            node.audit.record_later(entry);
        }
    }
}

/// Records the bootstrap token in the meta group once it has a leader, unless a token of
/// its name exists already (registered before a restart, or revoked since: never again), and
/// with it the audit log's retention (`[auth] audit_retention` of this, the first member).
async fn register_bootstrap_token(
    hash: token::TokenHash,
    audit_retention_micros: i64,
    meta: MetaReader,
    proposer: Arc<Proposer>,
) {
    let command = MetaCommand::CreateToken {
        hash,
        name: token::BOOTSTRAP_NAME.into(),
        scope: Scope::Cluster,
        role: Role::Admin,
        pii: true,
        ttl_micros: None,
        created_by: "bootstrap".into(),
    };
    loop {
        match meta.caught_up().await {
            Ok(state) if state.tokens.values().any(|t| t.name == token::BOOTSTRAP_NAME) => return,
            Ok(_) => match proposer.write_meta(command.clone()).await {
                Ok(_) => {
                    info!("registered the cluster admin token");
                    let retention = MetaCommand::SetAuditRetention { retention_micros: audit_retention_micros };
                    if let Err(e) = proposer.write_meta(retention).await {
                        warn!("setting the audit log's retention: {e}");
                    }
                    return;
                }
                Err(e) => warn!("registering the cluster admin token: {e}"),
            },
            Err(e) => tracing::debug!("registering the cluster admin token: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records the address clients reach this node at, once the node is listed, whenever it
/// differs from the one recorded (first start, or a restart with another address).
async fn advertise_to_clients(me: u64, addr: String, meta: MetaReader, proposer: Arc<Proposer>) {
    loop {
        if let Some(node) = meta.latest().nodes.get(&me) {
            if node.client_addr == addr {
                return;
            }
            let command = MetaCommand::SetClientAddr { id: me, addr: addr.clone() };
            if let Err(e) = proposer.write_meta(command).await {
                warn!("recording the client address {addr}: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records, once the node is listed, the Quiver version it runs (`status` shows each node's).
async fn report_version(me: u64, meta: MetaReader, proposer: Arc<Proposer>) {
    let version = release::RELEASE.to_string();
    loop {
        if meta.latest().nodes.contains_key(&me) {
            match proposer.write_meta(MetaCommand::ReportVersion { node: me, version: version.clone() }).await {
                Ok(_) => return,
                Err(e) => tracing::debug!("reporting this node's version: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a new cluster's first member waits for every initial member to report running
/// this release, so that the cluster starts at its version (`release`).
const START_AT_RELEASE_FOR: Duration = Duration::from_secs(600);

/// Puts this release's cluster version in force in a cluster this node just made, once
/// every initial member reports running this release (or a later one). A member of an
/// earlier release keeps it at the earlier version, for an operator to finalize later.
async fn start_at_this_release(proposer: Arc<Proposer>) {
    let deadline = tokio::time::Instant::now() + START_AT_RELEASE_FOR;
    while tokio::time::Instant::now() < deadline {
        match proposer.finalize_upgrade().await {
            Ok(_) => return info!(version = release::CLUSTER_VERSION, "the new cluster is at this release's version"),
            Err(e) => tracing::debug!("starting the cluster at this release's version: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    warn!("a member of the new cluster runs an earlier release: it stays at cluster version 1 until finalized");
}

/// How often a node makes sure the cluster still counts it a member.
const MEMBERSHIP_CHECK: Duration = Duration::from_secs(5);

/// Asks now and then whether the cluster removed this node (`MetaReader::check_membership`);
/// the node stops once a peer says so (`halt::Halt`, in `main`).
async fn watch_membership(me: u64, meta: MetaReader) {
    loop {
        tokio::time::sleep(MEMBERSHIP_CHECK).await;
        meta.check_membership(me).await;
    }
}

/// Says once this node's meta view has caught up with the metadata leader's (retrying until
/// there is one): hosting then sweeps what it no longer hosts.
async fn tell_when_caught_up(meta: MetaReader, caught_up: tokio::sync::oneshot::Sender<()>) {
    while meta.caught_up().await.is_err() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = caught_up.send(());
}
