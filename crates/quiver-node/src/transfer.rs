//! Leadership transfer. openraft 0.9 has no transfer call, and its voters refuse to vote
//! while the leader they last heard from holds a lease (`election_timeout_max` since its
//! last message). So the leader hands over in four steps:
//!
//! 1. It holds new proposals and linearizable reads (`Busy`, retried by clients) and ends
//!    its read lease: nothing new enters its log and nothing renews its voters' leases.
//! 2. It waits until the target's log matches its own: the target can win an election,
//!    and would hold every acknowledged write if it does.
//! 3. It stops its heartbeats and waits out the lease, so every voter will grant a vote.
//!    Followers campaign only after the lease plus an election timeout, so the target,
//!    told next, is the first candidate.
//! 4. It tells the target to campaign (`RaftService/Campaign`). The target wins with the
//!    longest log; the old leader, granting its vote to the higher term, steps down.
//!
//! Whatever happens, the old leader's heartbeats and proposals resume when the transfer
//! ends; if the target did not win, the old leader simply goes on leading. A linearizable
//! read on the old leader after the transfer needs a quorum round, which fails against
//! the new term: it is never answered from the old leader's state.

use std::time::{Duration, Instant};

use quiver_proto::v1::RaftMessage;
use quiver_proto::v1::raft_service_client::RaftServiceClient;

use crate::groups::Group;
use crate::raft::NodeId;
use crate::raft::network::PeerPool;
use quiver_store::error::{Error, Result};

/// How far behind the target may be when a transfer starts: further, it is refused at
/// once, without holding anything (a target that is down never catches up).
const CLOSE_ENOUGH: u64 = 100;
/// How long the target has to catch up with the leader's log, proposals held meanwhile.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Margin past the voters' lease before the target campaigns.
const LEASE_MARGIN: Duration = Duration::from_millis(100);

/// Hands leadership of `group`, led here, to voter `to` at `addr`; Ok once `to` leads.
pub async fn transfer_leadership(group: &Group, to: NodeId, addr: &str, pool: &PeerPool) -> Result<()> {
    let failed =
        |why: String| Error::Raft(format!("transferring leadership of group {} to node {to}: {why}", group.id));
    let raft = &group.raft;
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    // A target far behind is refused before anything is held (one that is down, by the caller).
    let behind = lag(group, to).map_err(failed)?;
    if behind > CLOSE_ENOUGH {
        return Err(failed(format!("it is {behind} entries behind")));
    }
    let _hold = group.hold_for_transfer(to);
    wait_until_caught_up(group, to).await.map_err(failed)?;
    raft.runtime_config().heartbeat(false);
    let _heartbeats = HeartbeatsBack(raft);
    tokio::time::sleep(lease + LEASE_MARGIN).await;
    let channel = pool.channel(addr).map_err(failed)?;
    let message = RaftMessage { group_id: group.id, payload: Vec::new(), error: Vec::new() };
    // A target that does not answer (paused, cut off) must not keep this leader silent.
    match tokio::time::timeout(lease, RaftServiceClient::new(channel).campaign(message)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => return Err(failed(status.message().to_string())),
        Err(_) => return Err(failed(format!("it did not answer within {lease:?}"))),
    }
    let mut metrics = raft.metrics();
    let won = async { metrics.wait_for(|m| m.current_leader == Some(to)).await.map(drop) };
    match tokio::time::timeout(lease * 2, won).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(failed(format!("it did not win an election within {:?}", lease * 2))),
    }
}

/// How many entries of this leader's log `to` does not hold yet.
fn lag(group: &Group, to: NodeId) -> std::result::Result<u64, String> {
    let m = group.raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err("this node no longer leads it".into());
    }
    let last = m.last_log_index.unwrap_or(0);
    Ok(match m.replication.as_ref().and_then(|r| r.get(&to).copied().flatten()) {
        Some(matched) => last.saturating_sub(matched.index),
        // Nothing acknowledged yet: the whole log.
        None => last + 1,
    })
}

/// Waits until `to` holds every entry of this leader's log (which takes no new ones now).
async fn wait_until_caught_up(group: &Group, to: NodeId) -> std::result::Result<(), String> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let behind = lag(group, to)?;
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("it did not catch up within {CATCH_UP:?} ({behind} entries behind)"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Turns the leader's heartbeats back on when the transfer ends, however it ends.
struct HeartbeatsBack<'a>(&'a crate::raft::Raft);

impl Drop for HeartbeatsBack<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}
