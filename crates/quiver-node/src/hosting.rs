//! Which Raft groups this node hosts: the meta group always; a shard group while the
//! applied meta state lists this node as one of its replicas. Groups are opened as
//! assignments appear and closed, their data dropped, once a move away is confirmed; at a
//! shard's first epoch its first replica initialises the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use quiver_core::shard_map::META_GROUP;
use quiver_core::shard_ops::OpKind;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::groups::{Group, Groups};
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::read_index::ReadIndex;
use crate::raft::state_machine::{Kind, StateMachine};
use crate::raft::{NodeId, Raft};
use crate::shard::Range;
use crate::shard::machine::ShardMachine;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{TreePart, tree_group, tree_name};
use quiver_store::meta::{MetaState, MetaView};
use quiver_store::storage::KvEngine;

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
        let shared = sm.shared();
        let applied_time = sm.applied_time();
        let network = NetworkFactory { group: id, pool: self.pool.clone() };
        let raft = Raft::new(self.me, self.raft_config.clone(), network, log, sm)
            .await
            .map_err(|e| Error::Raft(format!("starting group {id}: {e}")))?;
        let group = Arc::new(Group::new(id, raft, shared, applied_time, ReadIndex::new(self.read_lease)));
        self.groups.insert(group.clone());
        Ok((group, fresh))
    }

    /// Keeps the shard groups open here in step with the meta state, until the meta
    /// state's sender is gone. Looks again every `RETRY` while a shard waits to be opened.
    /// Once `caught_up` says the view has caught up with the metadata leader, sweeps the
    /// trees of groups this node no longer hosts (`sweep`).
    pub async fn run(self, mut view: MetaView, mut caught_up: oneshot::Receiver<()>) {
        let mut swept = false;
        loop {
            let state = view.borrow_and_update().clone();
            let mut waiting = match self.host_assigned(&state).await {
                Ok(waiting) => waiting,
                Err(e) => {
                    warn!("opening or closing shard groups: {e}");
                    true
                }
            };
            if !swept && caught_up.try_recv().is_ok() {
                match self.sweep(&state) {
                    Ok(()) => swept = true,
                    Err(e) => warn!("sweeping the trees of groups no longer hosted here: {e}"),
                }
            }
            waiting |= !swept && !caught_up.is_terminated();
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
                let kind = Kind::Shard(Box::new(ShardMachine::new(Arc::new(Range::new(shard.id, None)), initial)));
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

    /// Drops the trees of shard groups that are not open here and that `state` (caught up
    /// with the metadata leader: an older view could miss a move to this node) does not
    /// give this node: left by moves and merges made while it was down. Kept: a split's
    /// child under way (the parent seeds it before the map has it) and any group with an id
    /// the state has not given out yet.
    fn sweep(&self, state: &MetaState) -> Result<()> {
        let child_of_a_split =
            |id: u64| state.ops.iter().any(|op| matches!(op.kind, OpKind::Split { child, .. } if child == id));
        let hosted = |id: u64| state.shard_map.shard(id).is_ok_and(|s| s.hosted_by(self.me));
        let mut stale: Vec<u64> = self
            .engine
            .tree_names()?
            .iter()
            .filter_map(|name| tree_group(name))
            .filter(|id| *id != META_GROUP && *id < state.next_shard_id && self.groups.get(*id).is_none())
            .filter(|id| !hosted(*id) && !child_of_a_split(*id))
            .collect();
        stale.sort_unstable();
        stale.dedup();
        for id in stale {
            for part in TreePart::ALL {
                self.engine.drop_tree(&tree_name(id, part))?;
            }
            info!(shard = id, "dropped the data of a shard this node no longer hosts");
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use quiver_core::shard_map::ShardMap;
    use quiver_core::shard_ops::ShardOp;

    use super::*;
    use quiver_store::storage::MemEngine;

    #[test]
    fn a_sweep_drops_only_what_this_node_no_longer_hosts() {
        let engine: Arc<dyn KvEngine> = Arc::new(MemEngine::default());
        let hosting = Hosting {
            me: 1,
            engine: engine.clone(),
            pool: PeerPool::default(),
            raft_config: Arc::new(openraft::Config::default()),
            read_lease: Duration::ZERO,
            groups: Arc::new(Groups::new(1)),
        };
        for group in 0..=5 {
            engine.tree(&tree_name(group, TreePart::State)).unwrap();
        }
        // Shard 1 is this node's, shard 2 moved to node 2, shard 3 was merged away, shard 4
        // is the child of a split under way, shard 5 is an id not given out yet.
        let mut state =
            MetaState { shard_map: ShardMap::uniform(2, &[1]).unwrap(), next_shard_id: 5, ..Default::default() };
        state.shard_map.shards[1].replicas = vec![2];
        state.shard_map.shards[1].voters = vec![2];
        let kind = OpKind::Split { shard: 1, at: 0, child: 4 };
        state.ops.push(ShardOp { id: 1, kind, started_at: 0, requested: true });
        hosting.sweep(&state).unwrap();
        let mut left: Vec<u64> = engine.tree_names().unwrap().iter().filter_map(|n| tree_group(n)).collect();
        left.sort_unstable();
        assert_eq!(left, vec![0, 1, 4, 5]);
    }
}
