//! The receiving side of Raft messages: finds the group the message names among the groups
//! this node hosts. A message for a group not opened here is refused, never answered by
//! opening it: only the meta state machine decides what a node hosts. Every message has
//! been admitted as a member's before it reaches here (`trust::member`).

use std::sync::Arc;

use quiver_proto::v1::RaftMessage;
use quiver_proto::v1::raft_service_server::RaftService;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::backup::format::{CutHeader, Frame};
use crate::groups::{Group, Groups};
use crate::online::{self, ShardRead};
use crate::streaming::{Streamed, channel_stream};
use quiver_store::codec::{decode, encode};
use quiver_store::command::Command;
use quiver_store::error::Error;

/// State-tree pairs per frame of a backup's read.
const CUT_CHUNK: usize = 2_000;

pub struct RaftRpc {
    pub groups: Arc<Groups>,
}

fn reply<T: Serialize, E: Serialize>(group_id: u64, result: Result<T, E>) -> Result<Response<RaftMessage>, Status> {
    let (payload, error) = match result {
        Ok(v) => (encode(&v)?, Vec::new()),
        Err(e) => (Vec::new(), encode(&e)?),
    };
    Ok(Response::new(RaftMessage { group_id, payload, error }))
}

impl RaftRpc {
    /// Does `work` with the group `msg` names and its decoded payload; the answer, or the
    /// core error met, travels in the reply's `payload`.
    async fn answer<Q, A, F, Fut>(&self, msg: RaftMessage, work: F) -> Result<Response<RaftMessage>, Status>
    where
        Q: serde::de::DeserializeOwned,
        A: Serialize,
        F: FnOnce(Arc<Group>, Q) -> Fut,
        Fut: std::future::Future<Output = quiver_store::error::Result<A>>,
    {
        let answer = match self.groups.get(msg.group_id) {
            Some(group) => match decode::<Q>(&msg.payload) {
                Ok(request) => work(group, request).await.map_err(Error::into_core),
                Err(e) => Err(e.into_core()),
            },
            None => Err(quiver_core::Error::ShardNotFound(msg.group_id)),
        };
        let payload = encode(&answer)?;
        Ok(Response::new(RaftMessage { group_id: msg.group_id, payload, error: Vec::new() }))
    }

    fn open<T: serde::de::DeserializeOwned>(&self, msg: &RaftMessage) -> Result<(crate::raft::Raft, T), Status> {
        let group = self
            .groups
            .get(msg.group_id)
            .ok_or_else(|| Status::not_found(format!("group {} is not hosted on this node", msg.group_id)))?;
        let req = decode(&msg.payload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((group.raft.clone(), req))
    }
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    type ReadCutStream = Streamed<RaftMessage>;

    async fn read_cut(&self, request: Request<RaftMessage>) -> Result<Response<Self::ReadCutStream>, Status> {
        let group_id = request.into_inner().group_id;
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| Status::not_found(format!("group {group_id} is not hosted on this node")))?;
        // Every write acknowledged before the backup asked is in the cut.
        group.linearize().await?;
        let mut cut = group.cuts.begin(group.data.clone())?;
        let header =
            Frame::Header(CutHeader { group: group_id, applied: cut.applied, membership: cut.membership.clone() });
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let send = |frame: quiver_store::error::Result<Frame>| {
                let message = frame
                    .and_then(|f| encode(&f))
                    .map(|payload| RaftMessage { group_id, payload, error: Vec::new() })
                    .map_err(Status::from);
                tx.blocking_send(message).is_ok()
            };
            if !send(Ok(header)) {
                return;
            }
            let mut pairs = 0u64;
            loop {
                match cut.next_chunk(CUT_CHUNK) {
                    Ok(chunk) if chunk.is_empty() => {
                        send(Ok(Frame::End { pairs }));
                        return;
                    }
                    Ok(chunk) => {
                        pairs += chunk.len() as u64;
                        if !send(Ok(Frame::Pairs(chunk))) {
                            return;
                        }
                    }
                    Err(e) => {
                        send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(channel_stream(rx)))
    }

    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (raft, req) = self.open(&msg)?;
        reply(msg.group_id, raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (raft, req) = self.open(&msg)?;
        reply(msg.group_id, raft.vote(req).await)
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (raft, req) = self.open(&msg)?;
        reply(msg.group_id, raft.install_snapshot(req).await)
    }

    /// The answer always travels in `payload`, as a `Result` whose error is the core error
    /// the proposer would have seen, so forwarding is transparent to the caller.
    async fn propose(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.answer(request.into_inner(), |group, command: Command| async move { group.propose(command).await }).await
    }

    /// Rows for a node answering a client's read of keys this node leads (`online::read_shard`);
    /// answered like `propose`.
    async fn read_rows(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let me = self.groups.me();
        self.answer(
            request.into_inner(),
            |group, read: ShardRead| async move { online::read_here(me, &group, &read).await },
        )
        .await
    }

    async fn campaign(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let group = self
            .groups
            .get(msg.group_id)
            .ok_or_else(|| Status::not_found(format!("group {} is not hosted on this node", msg.group_id)))?;
        group.raft.trigger().elect().await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(RaftMessage { group_id: msg.group_id, payload: Vec::new(), error: Vec::new() }))
    }
}
