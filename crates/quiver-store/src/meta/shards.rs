//! Meta commands of one concern: the shard map and the operations on it: replicas, voters, leaders, splits, merges, moves.

use quiver_core::shard_map::Shard;
use quiver_core::shard_ops::{FinishedOp, OpKind, Outcome, ShardOp};

use super::{FINISHED_OPS_KEPT, MetaMachine};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

impl MetaMachine {
    /// Applies a command of this concern (`MetaMachine::apply` sends each here by kind).
    pub(super) fn apply_shards(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        let response = match cmd {
            MetaCommand::SetReplicas { shard, replicas, conf_ver } => {
                let busy = self.state.ops.iter().any(|op| op.kind.shards().contains(shard));
                let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else {
                    return Ok(Response::Rejected(quiver_core::Error::ShardNotFound(*shard)));
                };
                if s.epoch.conf_ver != *conf_ver || s.moving() || busy {
                    return Ok(Response::Rejected(quiver_core::Error::EpochMismatch {
                        shard: *shard,
                        current: s.epoch,
                    }));
                }
                s.replicas = replicas.clone();
                s.epoch.conf_ver += 1;
                Response::Done
            }
            MetaCommand::SetVoters { shard, voters } => {
                let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else {
                    return Ok(Response::Rejected(quiver_core::Error::ShardNotFound(*shard)));
                };
                s.voters = voters.clone();
                Response::Done
            }
            MetaCommand::ReportLeader { leader, terms } => {
                let mut changed = false;
                for (shard, term) in terms {
                    let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard) else { continue };
                    if *term > s.leader_term {
                        (s.leader, s.leader_term) = (Some(*leader), *term);
                        changed = true;
                    }
                }
                // Only a change is worth persisting.
                if !changed {
                    return Ok(Response::Done);
                }
                Response::Done
            }
            MetaCommand::SetSplitPoint { op, at } => {
                let map = &self.state.shard_map;
                let Some(kind) = self.state.ops.iter_mut().find(|o| o.id == *op).map(|o| &mut o.kind) else {
                    let gone = format!("operation {op} is not under way");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                };
                let OpKind::Split { shard, at: chosen, .. } = kind else {
                    let odd = format!("operation {op} is not a split");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                };
                let inside = map.shard(*shard).is_ok_and(|s| s.start < *at && *at <= s.end);
                if *chosen == 0 && !inside {
                    let outside = format!("split point {at:#018x} is not inside shard {shard}'s range");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(outside)));
                }
                if *chosen == 0 {
                    *chosen = *at;
                }
                Response::Done
            }
            MetaCommand::StartOp { kind, requested } => match self.start_op(kind, *requested, leader_time) {
                Ok(id) => Response::OpId(id),
                Err(e) => return Ok(Response::Rejected(e)),
            },
            MetaCommand::FinishOp { id, outcome } => {
                batch.delete(keyspace::merge_claim(*id));
                if !self.finish_op(*id, outcome.clone(), leader_time) {
                    return Ok(Response::Done);
                }
                Response::Done
            }
            MetaCommand::ClaimMerge { op } => {
                if !self.state.ops.iter().any(|o| o.id == *op && matches!(o.kind, OpKind::Merge { .. })) {
                    let gone = format!("merge {op} is no longer under way: it ended or was abandoned");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                }
                batch.put(keyspace::merge_claim(*op), Vec::new());
                Response::Done
            }
            MetaCommand::AbandonOp { id, why } => {
                let Some(op) = self.state.ops.iter().find(|o| o.id == *id) else { return Ok(Response::Done) };
                match op.kind {
                    OpKind::Split { shard, .. } => {
                        let why = format!("a split cannot be cancelled: shard {shard} may have applied it already");
                        return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(why)));
                    }
                    OpKind::Merge { .. } => {
                        let key = keyspace::merge_claim(*id);
                        let claimed = match batch.pending(&key) {
                            Some(pending) => pending.is_some(),
                            None => tree.get(&key)?.is_some(),
                        };
                        if claimed {
                            return Ok(Response::Done);
                        }
                    }
                    OpKind::MoveReplica { shard, to, .. } => {
                        let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == shard) else {
                            return Ok(Response::Done);
                        };
                        if s.voters.contains(&to) {
                            return Ok(Response::Done);
                        }
                        roll_back(s);
                    }
                    OpKind::TransferLeader { .. } | OpKind::Rebalance => {}
                }
                self.finish_op(*id, Outcome::Failed(why.clone()), leader_time);
                Response::Done
            }
            MetaCommand::RollBackMove { shard, conf_ver } => {
                if let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard)
                    && s.epoch.conf_ver == *conf_ver
                {
                    roll_back(s);
                }
                Response::Done
            }
            MetaCommand::CommitMerge { op, left, right } => {
                let map = &mut self.state.shard_map;
                let Some(r) = map.shards.iter().position(|s| s.id == *right) else {
                    return Ok(Response::Done);
                };
                let below = r.checked_sub(1).filter(|l| map.shards[*l].id == *left);
                let Some(l) = below else {
                    let odd = format!("shard {left} is not the neighbour below shard {right}");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(odd)));
                };
                let upper = map.shards.remove(r);
                let lower = &mut map.shards[l];
                lower.end = upper.end;
                lower.epoch.version = lower.epoch.version.max(upper.epoch.version) + 1;
                self.state.export_marks.remove(right);
                batch.delete(keyspace::merge_claim(*op));
                self.finish_op(*op, Outcome::Done, leader_time);
                Response::Done
            }
            MetaCommand::CommitSplit { op, shard, at, child } => {
                let map = &mut self.state.shard_map;
                if map.shards.iter().any(|s| s.id == *child) {
                    return Ok(Response::Done);
                }
                let Some(i) = map.shards.iter().position(|s| s.id == *shard && s.start < *at && *at <= s.end) else {
                    let gone = format!("shard {shard} has no range to split at {at:#018x}");
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(gone)));
                };
                let parent = &mut map.shards[i];
                parent.epoch.version += 1;
                let upper = Shard { id: *child, start: *at, leader: None, leader_term: 0, ..parent.clone() };
                parent.end = at - 1;
                map.shards.insert(i + 1, upper);
                // The point the shard's leader chose, in the record of the operation.
                if let Some(OpKind::Split { at: chosen, .. }) =
                    self.state.ops.iter_mut().find(|o| o.id == *op).map(|o| &mut o.kind)
                {
                    *chosen = *at;
                }
                self.finish_op(*op, Outcome::Done, leader_time);
                Response::Done
            }

            other => return Err(Error::Raft(format!("shards does not apply {other:?}"))),
        };
        self.changed = true;
        Ok(response)
    }

    /// Records a shard operation after checking it against the state; an operator's request
    /// ends the placement rule's operations on the same shards. A replica move starts at once
    /// (the shard's leader carries it out, see `workers::replicas`).
    fn start_op(&mut self, kind: &OpKind, requested: bool, leader_time: i64) -> quiver_core::Result<u64> {
        let highest = self.state.shard_map.shards.iter().map(|s| s.id).max().unwrap_or(0);
        let child = self.state.next_shard_id.max(highest + 1);
        let kind = kind.clone().settle(&self.state.shard_map, child);
        if matches!(kind, OpKind::Split { .. } | OpKind::Merge { .. }) {
            self.state.check_no_backup_cut(leader_time, &kind.to_string())?;
        }
        // An operator's request goes before the placement rule's leadership moves on its
        // shards (never before a split, which may be applied in the shard already).
        let preemptible = |op: &ShardOp| {
            let overlaps = op.kind.shards().iter().any(|s| kind.shards().contains(s));
            requested && !op.requested && overlaps && matches!(op.kind, OpKind::TransferLeader { .. })
        };
        let (preempted, others): (Vec<ShardOp>, Vec<ShardOp>) = self.state.ops.iter().cloned().partition(preemptible);
        kind.check(&self.state.shard_map, &self.state.active_nodes(), &others)?;
        let id = self.state.next_op_id.max(1);
        for op in preempted {
            let outcome = Outcome::Failed(format!("preempted by operation {id}, asked for by an operator"));
            self.finish_op(op.id, outcome, leader_time);
        }
        if let OpKind::Split { .. } = kind {
            self.state.next_shard_id = child + 1;
        }
        if let OpKind::MoveReplica { shard, from, to } = &kind
            && let Some(s) = self.state.shard_map.shards.iter_mut().find(|s| s.id == *shard)
        {
            s.replicas = s.replicas.iter().map(|r| if r == from { *to } else { *r }).collect();
            s.epoch.conf_ver += 1;
        }
        self.state.next_op_id = id + 1;
        self.state.ops.push(ShardOp { id, kind, started_at: leader_time, requested });
        Ok(id)
    }

    /// Moves operation `id` to the ended ones; false when it is not under way.
    fn finish_op(&mut self, id: u64, outcome: Outcome, leader_time: i64) -> bool {
        let Some(i) = self.state.ops.iter().position(|op| op.id == id) else { return false };
        let op = self.state.ops.remove(i);
        self.state.finished_ops.push_back(FinishedOp { op, finished_at: leader_time, outcome });
        while self.state.finished_ops.len() > FINISHED_OPS_KEPT {
            self.state.finished_ops.pop_front();
        }
        true
    }
}

/// A replica move given up: the shard's replicas go back to its voters, at a new conf_ver.
fn roll_back(shard: &mut quiver_core::shard_map::Shard) {
    if shard.moving() {
        shard.replicas = shard.voters.clone();
        shard.epoch.conf_ver += 1;
    }
}
