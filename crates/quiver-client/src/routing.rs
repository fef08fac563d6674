//! Client-side routing. The client keeps a copy of the shard map (hash ranges, epochs,
//! replicas, leader hints) and of the registry entries it needs to hash entity keys, splits
//! a request by shard and sends each part, in parallel, straight to the node that can
//! answer it: the shard's leader, or for stale reads any replica; a read's parts bound for
//! the same node go in one request. Routing errors come back
//! typed and are handled here, bounded: `NotLeader` follows the hint, `EpochMismatch`,
//! `ShardNotFound` and `KeyNotInShard` refresh the map (and when the shard's range changed,
//! a split, the request is split by shard again), `Busy` waits as told, and an
//! unreachable node is retried on another replica after a pause.
//!
//! Writes carry request ids (random per client, a counter per request, the shard per
//! part), so a part retried after a timeout is applied at most once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quiver_core::cluster::ClusterMap;
use quiver_core::registry::Project;
use quiver_core::shard_map::Shard;
use quiver_proto::v1;
use quiver_proto::v1::admin_service_client::AdminServiceClient;
use quiver_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use crate::conn::{Conn, Credentials};

use crate::error::{Error, Result};
use crate::table::{self, Parts, Table};
use crate::tls::{self, Tls};

/// Tries per request part before the last error is returned: about 10 s of them, paused
/// `MAX_BACKOFF` apart.
const ATTEMPTS: usize = 200;
/// How long a part waits out `Busy` answers, which do not count as tries: a leadership
/// transfer holds a shard's requests for up to about four election timeouts.
const BUSY_FOR: Duration = Duration::from_secs(30);
/// Longest pause between tries while a shard elects a leader or a node is unreachable: a
/// try costs the survivors one short answer, and a shorter pause answers sooner once the
/// election is over (it adds up to this much to a failover).
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Connections the client keeps to each node: one HTTP/2 connection is read and written by
/// one task on each side, which caps concurrent requests at what one core can frame.
const CONNECTIONS_PER_NODE: usize = 4;

/// What a part is sent with: the shard and the epoch the client knows.
pub(crate) type Route = v1::ShardRoute;

pub(crate) struct Router {
    /// The node the client was connected to (`host:port`): asked for the map and the registry.
    seed: String,
    seed_channel: Conn,
    client_id: u64,
    next_request: AtomicU64,
    table: RwLock<Arc<Table>>,
    /// Leader addresses learned from `NotLeader` answers, by shard; newer than the map's hints.
    leaders: Mutex<HashMap<u64, String>>,
    projects: RwLock<HashMap<String, Arc<Project>>>,
    channels: Mutex<HashMap<String, Vec<Conn>>>,
    next_channel: AtomicU64,
    /// TLS to every node, when the client was built with a CA.
    tls: Option<Tls>,
    /// The token every call carries.
    credentials: Credentials,
}

impl Router {
    pub(crate) fn new(seed: &str, seed_channel: Conn, tls: Option<Tls>, credentials: Credentials) -> Router {
        let client_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
            .unwrap_or_default();
        Router {
            seed: seed.trim_start_matches("http://").trim_start_matches("https://").to_string(),
            tls,
            credentials,
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
        let table = self.table();
        channels.extend(table.addresses().filter(|a| *a != self.seed).filter_map(|a| self.channel(a).ok()));
        let mut last = None;
        for channel in channels {
            let mut admin = AdminServiceClient::new(channel);
            match tokio::time::timeout(Duration::from_secs(2), admin.get_shard_map(v1::GetShardMapRequest {})).await {
                Ok(Ok(reply)) => return Ok(self.install(quiver_proto::cluster_map_from_proto(reply.into_inner())?)),
                Ok(Err(status)) => last = Some(Error::from(status)),
                Err(_) => last = Some(Error::Transport { endpoint: self.seed.clone(), message: "timed out".into() }),
            }
        }
        Err(last.unwrap_or_else(|| Error::Server(quiver_core::Error::Unavailable("no node to ask".into()))))
    }

    /// Makes `map` the routing table; what was learned of leaders before is older than it.
    fn install(&self, map: ClusterMap) -> Arc<Table> {
        let table = Arc::new(Table::new(map));
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table.clone();
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).clear();
        table
    }

    async fn current_table(&self) -> Result<Arc<Table>> {
        let table = self.table();
        if table.is_empty() { self.refresh().await } else { Ok(table) }
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

    /// Groups items by the shard owning their key hash (see `Table::split`).
    pub(crate) async fn split<T>(&self, items: Vec<(u64, T)>) -> Result<Parts<T>> {
        self.current_table().await?.split(items)
    }

    /// One of the connections to `addr`, in turn.
    fn channel(&self, addr: &str) -> Result<Conn> {
        let turn = self.next_channel.fetch_add(1, Ordering::Relaxed) as usize;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = channels.get(addr) {
            return Ok(pool[turn % pool.len()].clone());
        }
        let transport = |e: &dyn std::fmt::Display| Error::Transport { endpoint: addr.into(), message: e.to_string() };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| transport(&e))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            endpoint = tls::secured(endpoint, tls).map_err(|e| transport(&e))?;
        }
        // Each lazy channel is a connection of its own.
        let connect = |_| InterceptedService::new(endpoint.connect_lazy(), self.credentials.clone());
        let pool: Vec<Conn> = (0..CONNECTIONS_PER_NODE).map(connect).collect();
        let channel = pool[turn % pool.len()].clone();
        channels.insert(addr.to_string(), pool);
        Ok(channel)
    }

    /// Where a part for `shard` goes on try `attempt` (see `Table::target`).
    fn target(&self, table: &Table, shard: &Shard, leader_only: bool, attempt: usize) -> String {
        let learned = self.leaders.lock().unwrap_or_else(|p| p.into_inner()).get(&shard.id).cloned();
        table.target(shard, learned.as_deref(), &self.seed, leader_only, attempt)
    }

    /// Records the node that answered for a shard as its leader, until the next map.
    fn learn_leader(&self, shard: u64, addr: String) {
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).insert(shard, addr);
    }

    /// Groups shard parts by the node the first try of each goes to.
    pub(crate) async fn by_node<T>(&self, parts: Parts<T>, leader_only: bool) -> Result<Vec<(String, Parts<T>)>> {
        let table = self.current_table().await?;
        let addr_of = |shard| table.shard(shard).map(|s| self.target(&table, s, leader_only, 0)).unwrap_or_default();
        Ok(table::by_node(parts, addr_of))
    }

    /// One try at `addr` for the parts of several shards at once, with a route for each;
    /// on failure the caller falls back to `send`, shard by shard.
    pub(crate) async fn send_once<T, Fut>(
        &self,
        addr: &str,
        shards: &[u64],
        leader_only: bool,
        call: impl FnOnce(Conn, Vec<Route>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let table = self.current_table().await?;
        let routes = shards
            .iter()
            .map(|&id| {
                Ok(quiver_proto::shard_route_to_proto(table.shard(id).ok_or(quiver_core::Error::ShardNotFound(id))?))
            })
            .collect::<Result<Vec<_>>>()?;
        let answer = call(self.channel(addr)?, routes).await?;
        if leader_only {
            shards.iter().for_each(|&id| self.learn_leader(id, addr.to_string()));
        }
        Ok(answer)
    }

    /// Sends one shard's part until it is answered or the tries run out.
    pub(crate) async fn send<T, F, Fut>(&self, shard_id: u64, leader_only: bool, call: F) -> Result<T>
    where
        F: Fn(Conn, Route) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = Duration::from_millis(20);
        let mut table = self.current_table().await?;
        let mut attempt = 0;
        let mut last = None;
        // Nodes that did not answer during this send: hints naming them are stale.
        let mut unreachable = HashSet::new();
        // Hints followed during this send: two nodes that each name the other (both behind
        // an election) are waited out like an election, not bounced between.
        let mut followed = HashSet::new();
        let busy_until = std::time::Instant::now() + BUSY_FOR;
        let mut tries = 0;
        while tries < ATTEMPTS {
            tries += 1;
            let Some(shard) = table.shard(shard_id).cloned() else {
                return Err(Error::Server(quiver_core::Error::ShardNotFound(shard_id)));
            };
            let addr = self.target(&table, &shard, leader_only, attempt);
            let error = match call(self.channel(&addr)?, quiver_proto::shard_route_to_proto(&shard)).await {
                Ok(answer) => {
                    if leader_only {
                        self.learn_leader(shard_id, addr);
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            match error.server_error() {
                Some(quiver_core::Error::NotLeader { leader: Some(hint), .. })
                    if *hint != addr && !unreachable.contains(hint) && followed.insert(hint.clone()) =>
                {
                    self.learn_leader(shard_id, hint.clone());
                    attempt = 0;
                }
                Some(quiver_core::Error::EpochMismatch { .. })
                | Some(quiver_core::Error::ShardNotFound(_))
                | Some(quiver_core::Error::KeyNotInShard { .. }) => {
                    let fresh = self.refresh().await.unwrap_or(table);
                    // The shard's range changed (a split): the caller splits its items again.
                    if fresh.shard(shard_id).map(|s| s.epoch.version) != Some(shard.epoch.version) {
                        return Err(error);
                    }
                    // The same map again: the node is ahead of the one the map came from.
                    table = fresh;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Some(quiver_core::Error::Busy { retry_after_ms, .. }) => {
                    if std::time::Instant::now() < busy_until {
                        tries -= 1;
                    }
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

/// True when a request was refused because a shard's range changed since its parts were
/// made: they are made again from the fresh map (at most `RESPLITS` times).
pub(crate) fn range_changed(error: &Error) -> bool {
    matches!(
        error.server_error(),
        Some(quiver_core::Error::EpochMismatch { .. } | quiver_core::Error::KeyNotInShard { .. })
    )
}

/// How many times a request is split again by a fresh map after a shard's range changed.
pub(crate) const RESPLITS: usize = 5;

/// True when no leader answered: an election is under way, or the node could not be reached.
fn electing_or_unreachable(error: &Error) -> bool {
    use tonic::Code;
    match error {
        Error::Transport { .. } => true,
        Error::Arrow(_) | Error::Timeout(_) => false,
        Error::Rpc(s) => {
            matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
        }
        Error::Server(e) => matches!(e, quiver_core::Error::NotLeader { .. } | quiver_core::Error::Unavailable(_)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use quiver_core::Error as CoreError;

    use super::*;
    use crate::table::tests::cluster;

    /// A router whose seed is nowhere: these tests never send, their calls answer themselves.
    fn router(map: ClusterMap) -> Router {
        let seed =
            InterceptedService::new(Endpoint::from_static("http://127.0.0.1:9").connect_lazy(), Credentials::default());
        let router = Router::new("http://n1:7070", seed, None, Credentials::default());
        router.install(map);
        router
    }

    fn leader_of(router: &Router, shard: u64) -> String {
        let table = router.table();
        router.target(&table, table.shard(shard).unwrap(), true, 0)
    }

    #[tokio::test]
    async fn a_new_map_brings_its_epochs_and_hints_and_drops_the_leaders_learned_before() {
        let router = router(cluster([Some(2), None, None, None], 1));
        assert_eq!(leader_of(&router, 1), "n2:7070");
        router.learn_leader(1, "n3:7070".into());
        assert_eq!(leader_of(&router, 1), "n3:7070");
        router.install(cluster([Some(1), None, None, None], 2));
        assert_eq!(leader_of(&router, 1), "n1:7070");
        let table = router.current_table().await.unwrap();
        assert_eq!(quiver_proto::shard_route_to_proto(table.shard(1).unwrap()).version, 2);
    }

    #[tokio::test]
    async fn a_not_leader_answer_is_followed_to_its_hint_which_is_remembered() {
        let router = router(cluster([Some(2), None, None, None], 7));
        let calls = AtomicUsize::new(0);
        let answer = router
            .send(1, true, |_, route| {
                let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
                async move {
                    if first {
                        Err(Error::Server(CoreError::NotLeader { group: 1, leader: Some("n3:7070".into()) }))
                    } else {
                        Ok(route)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!((answer.shard_id, answer.version), (1, 7), "sent with the shard's epoch");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(leader_of(&router, 1), "n3:7070");
    }

    #[tokio::test]
    async fn busy_is_waited_out_and_other_errors_come_back_at_once() {
        let router = router(cluster([Some(2), None, None, None], 1));
        let calls = AtomicUsize::new(0);
        let busy_once = router.send(1, true, |_, _| {
            let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
            async move {
                match first {
                    true => Err(Error::Server(CoreError::Busy { reason: "full".into(), retry_after_ms: 1 })),
                    false => Ok(()),
                }
            }
        });
        busy_once.await.unwrap();
        assert_eq!(calls.swap(0, Ordering::Relaxed), 2);
        // A long hold (a leadership transfer) outlasts the tries: Busy does not spend them.
        let long_hold = router.send(1, true, |_, _| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                match n < 2 * ATTEMPTS {
                    true => Err(Error::Server(CoreError::Busy { reason: "moving".into(), retry_after_ms: 1 })),
                    false => Ok(()),
                }
            }
        });
        long_hold.await.unwrap();
        assert_eq!(calls.swap(0, Ordering::Relaxed), 2 * ATTEMPTS + 1);
        let refused = router.send(1, true, |_, _| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(Error::Server(CoreError::InvalidArgument("bad row".into()))) }
        });
        assert!(matches!(refused.await, Err(Error::Server(CoreError::InvalidArgument(_)))));
        assert_eq!(calls.load(Ordering::Relaxed), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn every_request_gets_an_id_of_its_own() {
        let router = router(ClusterMap::default());
        let ids: HashSet<Vec<u8>> = (0..100).map(|_| router.request_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}
