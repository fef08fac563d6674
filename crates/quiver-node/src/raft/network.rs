//! Raft messages to other nodes over gRPC: one lazily connected channel per peer address,
//! shared by every group; each message carries its group id. The pool remembers when each
//! peer last answered: a peer's log position says nothing of whether it is still up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use quiver_proto::v1::RaftMessage;
use quiver_proto::v1::raft_service_client::RaftServiceClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::{NodeId, TypeConfig};
use crate::halt::Halt;
use crate::tls::Tls;
use crate::trust::member::Credentials;
use quiver_store::codec::{decode, encode};

/// A channel to a peer whose every request carries this node's proof of membership.
pub type PeerChannel = InterceptedService<Channel, Credentials>;

/// Asks group `group_id`'s replica at `addr` by `call` (`Propose`, `ReadRows`): the request
/// travels as bincode, the answer as a `Result` whose error is the core error the peer met,
/// so a forwarded request fails as it would have here.
pub async fn ask_peer<Q, A, F, Fut>(
    pool: &PeerPool,
    addr: &str,
    group_id: u64,
    request: &Q,
    call: F,
) -> quiver_store::error::Result<A>
where
    Q: Serialize,
    A: DeserializeOwned,
    F: FnOnce(RaftServiceClient<PeerChannel>, RaftMessage) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
{
    let channel = pool.channel(addr).map_err(quiver_store::error::Error::Raft)?;
    let message = RaftMessage { group_id, payload: encode(request)?, error: Vec::new() };
    let reply = call(RaftServiceClient::new(channel), message).await.map_err(|s| {
        quiver_core::Error::Unavailable(format!("asking group {group_id}'s replica at {addr}: {}", s.message()))
    })?;
    let answer: Result<A, quiver_core::Error> = decode(&reply.into_inner().payload)?;
    Ok(answer?)
}

/// Channels to peers, by address; over TLS when the node has it (a renewed certificate
/// makes new channels: each remembers the generation it was made with), with the cluster
/// secret when it has one (`trust::member`).
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, (u64, PeerChannel)>>>,
    answered: Answered,
    tls: Option<Tls>,
    credentials: Credentials,
    halt: Halt,
}

/// When each peer last answered a Raft message of any group, and when the pool was made.
#[derive(Clone)]
struct Answered {
    at: Arc<Mutex<HashMap<NodeId, Instant>>>,
    since: Instant,
}

impl Default for Answered {
    fn default() -> Self {
        Answered { at: Arc::default(), since: Instant::now() }
    }
}

impl Answered {
    fn record(&self, node: NodeId) {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).insert(node, Instant::now());
    }
}

impl PeerPool {
    /// True when `node` answered a Raft message from here within `within`; a leader sends
    /// its followers a message every heartbeat, so a peer silent for longer is down or cut off.
    pub fn answered_within(&self, node: NodeId, within: Duration) -> bool {
        let answered = self.answered.at.lock().unwrap_or_else(|p| p.into_inner());
        answered.get(&node).is_some_and(|at| at.elapsed() <= within)
    }

    /// How long `node` has not answered: since its last answer, or since this pool was made
    /// (a node just started knows of no answer yet, and must not take every peer for dead).
    pub fn silent_for(&self, node: NodeId) -> Duration {
        let answered = self.answered.at.lock().unwrap_or_else(|p| p.into_inner());
        answered.get(&node).unwrap_or(&self.answered.since).elapsed()
    }

    pub fn channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let generation = self.tls.as_ref().map_or(0, Tls::generation);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_with, c)) = channels.get(addr)
            && *made_with == generation
        {
            return Ok(c.clone());
        }
        let channel = self.own_channel(addr)?;
        channels.insert(addr.to_string(), (generation, channel.clone()));
        Ok(channel)
    }

    /// A channel on a connection of its own: for a long stream read at its own pace, which
    /// on a shared connection could use up the connection's flow-control window while
    /// unread and stall the streams beside it.
    pub fn own_channel(&self, addr: &str) -> Result<PeerChannel, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("peer address {addr}: {e}"))?
            .connect_timeout(std::time::Duration::from_millis(500))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.peers()).map_err(|e| format!("TLS to {addr}: {e}"))?;
        }
        Ok(InterceptedService::new(endpoint.connect_lazy(), self.credentials.clone()))
    }

    /// A pool whose channels use `tls`, when given, and carry `credentials`.
    pub fn new(tls: Option<Tls>, credentials: Credentials) -> PeerPool {
        PeerPool { channels: Arc::default(), answered: Answered::default(), tls, credentials, halt: Halt::default() }
    }

    /// Notes a peer's refusal: one that says this node was removed stops the node.
    pub fn refused(&self, status: &tonic::Status) {
        refused(&self.halt, status);
    }

    /// Notes that this node's own meta state says the cluster removed it.
    pub fn note_removed(&self) {
        self.halt.set(REMOVED_REASON);
    }

    /// What stops the node: a removal noted here, or what other parts of the node set.
    pub fn halt(&self) -> Halt {
        self.halt.clone()
    }
}

fn refused(halt: &Halt, status: &tonic::Status) {
    if status.message().contains(crate::trust::member::REMOVED) {
        halt.set(REMOVED_REASON);
    }
}

/// Why a removed node stops.
const REMOVED_REASON: &str = "this node was removed from its cluster (quiverctl node remove) and stopped; to join \
                              again, start it with an empty data dir and --join";

pub struct NetworkFactory {
    pub group: u64,
    pub pool: PeerPool,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let channel = self.pool.channel(&node.addr);
        let (answered, halt) = (self.pool.answered.clone(), self.pool.halt.clone());
        PeerClient { group: self.group, target, channel, answered, halt }
    }
}

pub struct PeerClient {
    group: u64,
    target: NodeId,
    channel: Result<PeerChannel, String>,
    answered: Answered,
    halt: Halt,
}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self.channel.clone().map_err(|e| RPCError::Unreachable(Unreachable::new(&Msg(e))))?;
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { group_id: self.group, payload, error: Vec::new() };
        let mut client = RaftServiceClient::new(channel)
            .max_decoding_message_size(quiver_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(quiver_proto::MAX_MESSAGE_BYTES);
        let call = async {
            match rpc {
                Rpc::Append => client.append_entries(msg).await,
                Rpc::Vote => client.vote(msg).await,
                Rpc::Snapshot => client.install_snapshot(msg).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(format!("node {} timed out", self.target)))));
            }
            Ok(Err(status)) => {
                refused(&self.halt, &status);
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        self.answered.record(self.target);
        if !reply.error.is_empty() {
            let err: RaftError<NodeId, E> =
                decode(&reply.error).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            return Err(RPCError::RemoteError(RemoteError::new(self.target, err)));
        }
        decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

#[derive(Debug)]
struct Msg(String);

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
