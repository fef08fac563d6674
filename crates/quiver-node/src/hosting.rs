//! Which Raft groups this node hosts: the meta group always; a shard group while the
//! applied meta state lists this node as one of its replicas. Groups are opened as
//! assignments appear and closed, their data dropped, once a move away is confirmed; at a
//! shard's first epoch its first replica initialises the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use quiver_core::shard_map::META_GROUP;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::groups::{Group, Groups};
use crate::keyspace::{TreePart, tree_name};
use crate::meta::{MetaState, MetaView};
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::read_index::ReadIndex;
use crate::raft::state_machine::{Kind, StateMachine};
use crate::raft::{NodeId, Raft};
use crate::shard::Range;
use crate::storage::KvEngine;

/// How often a shard waiting to be opened is looked at again.
const RETRY: Duration = Duration::from_millis(200);

pub struct Hosting {
    pub me: NodeId,
    pub engine: Arc<dyn KvEngine>,
    pub pool: PeerPool,
    pub raft_config: Arc<openraft::Config>,
    /// How long a read-index round lets a leader serve linearizable reads.
    pub read_lease: Duration,
    pub groups: Arc<Groups>,
}

impl Hosting {
    /// Opens group `id` with its log and state machine; says whether it had no state yet.
    pub async fn open_group(&self, id: u64, kind: Kind) -> Result<(Arc<Group>, bool)> {
        let log = LogStore::open(self.engine.clone(), id)?;
        let fresh = log.is_empty()?;
        let sm = StateMachine::open(self.engine.clone(), id, kind)?;
        let (data, range, cuts, applied_time) = (sm.data(), sm.range(), sm.cuts(), sm.applied_time());
        let network = NetworkFactory { group: id, pool: self.pool.clone() };
        let raft = Raft::new(self.me, self.raft_config.clone(), network, log, sm)
            .await
            .map_err(|e| Error::Raft(format!("starting group {id}: {e}")))?;
        let group = Arc::new(Group::new(id, raft, (data, range, cuts), applied_time, ReadIndex::new(self.read_lease)));
        self.groups.insert(group.clone());
        Ok((group, fresh))
    }

    /// Keeps the shard groups open here in step with the meta state, until the meta
    /// state's sender is gone. Looks again every `RETRY` while a shard waits to be opened.
    pub async fn run(self, mut view: MetaView) {
        loop {
            let state = view.borrow_and_update().clone();
            let waiting = match self.host_assigned(&state).await {
                Ok(waiting) => waiting,
                Err(e) => {
                    warn!("opening or closing shard groups: {e}");
                    true
                }
            };
            let changed = view.changed();
            if waiting {
                if let Ok(Err(_)) = tokio::time::timeout(RETRY, changed).await {
                    return;
                }
            } else if changed.await.is_err() {
                return;
            }
        }
    }

    /// Opens and closes groups as `state` assigns them; true when a shard waits to be opened.
    async fn host_assigned(&self, state: &MetaState) -> Result<bool> {
        let mut waiting = false;
        for shard in &state.shard_map.shards {
            let hosted = self.groups.get(shard.id).is_some();
            if shard.hosted_by(self.me) && !hosted {
                // A shard made by a split opens once no group here still owns part of its
                // range, that is once this node's parent replica applied the split (and so
                // seeded it), or caught up past it (then the child's leader sends a snapshot).
                if self.overlapped(shard.start, shard.end) {
                    waiting = true;
                    continue;
                }
                let first_layout = shard.epoch.version == 1;
                let initial = first_layout.then_some((shard.start, shard.end));
                let kind = Kind::Shard { range: Arc::new(Range::new(shard.id, None)), initial };
                let (group, fresh) = self.open_group(shard.id, kind).await?;
                // Only a shard's first membership is initialised; replicas added later are
                // brought in by the shard's leader, and a split's child starts from its seed.
                if fresh && first_layout && shard.epoch.conf_ver == 1 && shard.replicas.first() == Some(&self.me) {
                    let members: BTreeMap<_, _> = shard
                        .replicas
                        .iter()
                        .filter_map(|id| state.nodes.get(id).map(|n| (*id, BasicNode { addr: n.addr.clone() })))
                        .collect();
                    group.raft.initialize(members).await.map_err(|e| Error::Raft(e.to_string()))?;
                }
                info!(shard = shard.id, "opened shard group");
            } else if !shard.hosted_by(self.me) && hosted {
                self.close_group(shard.id).await?;
                info!(shard = shard.id, "shard moved away: closed its group and dropped its data");
            }
        }
        // A shard the map no longer has was merged into its neighbour, which holds its rows.
        for group in self.groups.all() {
            if group.id != META_GROUP && state.shard_map.shard(group.id).is_err() {
                self.close_group(group.id).await?;
                info!(shard = group.id, "shard merged away: closed its group and dropped its data");
            }
        }
        Ok(waiting)
    }

    /// True when a shard group open here owns part of `start..=end`.
    fn overlapped(&self, start: u64, end: u64) -> bool {
        self.groups.all().iter().filter_map(|g| g.range.as_ref()?.get()).any(|(s, e)| s <= end && start <= e)
    }

    /// Stops a group and deletes its log, state and snapshots from the engine.
    async fn close_group(&self, id: u64) -> Result<()> {
        if let Some(group) = self.groups.remove(id) {
            group.raft.shutdown().await.map_err(|e| Error::Raft(format!("stopping group {id}: {e}")))?;
        }
        for part in TreePart::ALL {
            self.engine.drop_tree(&tree_name(id, part))?;
        }
        Ok(())
    }
}
