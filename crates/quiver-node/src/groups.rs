//! The Raft groups open on this node: each group's handle (propose, linearize, leader,
//! staleness) and the table of them by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::group_commit::GroupCommit;
use crate::raft::cut::Cuts;
use crate::raft::read_index::ReadIndex;
use crate::raft::state_machine::Shared;
use crate::raft::{NodeId, Raft};
use crate::shard::Range;
use crate::shard::staging::Staging;
use quiver_core::time::now_micros;
use quiver_store::command::{Command, MetaCommand, Response, ShardCommand};
use quiver_store::error::{Error, Result};
use quiver_store::storage::KvTree;

/// Proposals a group takes at once before answering `Busy`.
const MAX_INFLIGHT_PROPOSALS: usize = 1024;

/// One Raft group open on this node.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    /// The state machine's tree, for direct reads after a read-index check.
    pub data: Arc<dyn KvTree>,
    /// A shard's hash range as applied here (`None` for the meta group); a read checks its
    /// key against it after reading.
    pub range: Option<Arc<Range>>,
    /// A shard's split pre-copy (`None` for the meta group): its leader proposes the split
    /// once the copy here is done.
    pub staging: Option<Arc<Staging>>,
    /// Consistent reads of the state tree for backups.
    pub cuts: Arc<Cuts>,
    /// Leader time of the newest applied command: bounds how stale a follower's read is.
    applied_time: Arc<AtomicI64>,
    inflight: AtomicUsize,
    /// Writes proposed together while earlier entries are appended and replicated.
    commits: GroupCommit,
    read_index: Arc<ReadIndex>,
    /// The node leadership is being handed to (0: none); meanwhile this leader takes no
    /// proposals and no linearizable reads, which would renew its voters' leases.
    transferring_to: AtomicU64,
}

impl Group {
    pub fn new(
        id: u64,
        raft: Raft,
        Shared { data, range, staging, cuts }: Shared,
        applied_time: Arc<AtomicI64>,
        read_index: ReadIndex,
    ) -> Group {
        Group {
            id,
            commits: GroupCommit::new(id, &raft),
            raft,
            data,
            range,
            staging,
            cuts,
            applied_time,
            inflight: AtomicUsize::new(0),
            read_index: Arc::new(read_index),
            transferring_to: AtomicU64::new(0),
        }
    }

    /// Holds proposals and linearizable reads (answered `Busy`) and ends the read lease
    /// until the returned guard is dropped: the first step of a leadership transfer.
    pub fn hold_for_transfer(&self, to: NodeId) -> TransferHold<'_> {
        self.transferring_to.store(to, Ordering::Release);
        self.read_index.revoke();
        TransferHold(self)
    }

    /// `Busy` while leadership is being handed over.
    fn check_not_transferring(&self) -> Result<()> {
        match self.transferring_to.load(Ordering::Acquire) {
            0 => Ok(()),
            to => {
                let reason = format!("leadership of group {} is moving to node {to}", self.id);
                Err(quiver_core::Error::Busy { reason, retry_after_ms: 100 }.into())
            }
        }
    }

    /// Proposes a command (this node must lead the group) and waits until it is applied;
    /// returns the state machine's answer and the entry's log index.
    pub async fn propose(&self, command: Command) -> Result<(Response, u64)> {
        self.check_not_transferring()?;
        let _slot = InflightSlot::take(&self.inflight, self.id)?;
        let command = match command {
            Command::Shard(ShardCommand::Write(write)) => return self.commits.submit(write).await,
            other => other,
        };
        let commits_files = matches!(command, Command::Meta(MetaCommand::CommitFiles { .. }));
        let answer = crate::raft::write(&self.raft, self.id, command).await?;
        if commits_files && answer.0 == Response::Done {
            // Committed and applied, not yet answered: the metadata leader's worst moment to die.
            crate::failpoint::hit("meta-after-commit");
        }
        Ok(answer)
    }

    /// Waits until reads of this group here reflect every write acknowledged before the call.
    pub async fn linearize(&self) -> Result<()> {
        self.check_not_transferring()?;
        match self.read_index.wait(&self.raft).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(quiver_core::Error::NotLeader { group: self.id, leader: f.leader_node.map(|n| n.addr) }.into())
            }
            Err(e) => Err(Error::Raft(format!("group {}: {e}", self.id))),
        }
    }

    /// Writes group-committed here, and the log entries that carried them.
    pub fn commit_counts(&self) -> (u64, u64) {
        self.commits.counts()
    }

    /// Linearizable reads served by this group here, and the read-index rounds they took.
    pub fn read_index_counts(&self) -> (u64, u64) {
        self.read_index.counts()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Where member `id` of this group is reached, as its membership says.
    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.raft.metrics().borrow().membership_config.membership().get_node(&id).map(|n| n.addr.clone())
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

/// Proposals and linearizable reads held by a leadership transfer; released on drop.
pub struct TransferHold<'a>(&'a Group);

impl Drop for TransferHold<'_> {
    fn drop(&mut self) {
        self.0.transferring_to.store(0, Ordering::Release);
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
pub struct Groups {
    me: NodeId,
    map: RwLock<HashMap<u64, Arc<Group>>>,
}

impl Groups {
    pub fn new(me: NodeId) -> Groups {
        Groups { me, map: RwLock::default() }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Group `id`, or `ShardNotFound` when it is not open here.
    pub fn group(&self, id: u64) -> Result<Arc<Group>> {
        self.get(id).ok_or(Error::Core(quiver_core::Error::ShardNotFound(id)))
    }

    pub fn leader_of(&self, id: u64) -> Option<NodeId> {
        self.get(id).and_then(|g| g.leader())
    }

    /// True when this node leads group `id`.
    pub fn leads(&self, id: u64) -> bool {
        self.leader_of(id) == Some(self.me)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Group>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Group>> {
        let mut groups: Vec<_> = self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        groups.sort_by_key(|g| g.id);
        groups
    }

    pub(crate) fn insert(&self, group: Arc<Group>) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(group.id, group);
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Group>> {
        self.map.write().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }
}
