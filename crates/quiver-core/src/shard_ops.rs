//! Operations on the shard map that take time: asked for by an operator (`quiverctl shard
//! ...`) or by the placement rule, recorded in the meta group when they start and when they
//! finish, and carried out in the background by the nodes concerned. Because the record is
//! in the meta group, a new metadata leader sees every operation in flight and follows it to
//! its end.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::shard_map::ShardMap;
use crate::{Error, Result};

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// Leadership of `shard` moves to node `to`, one of its voters.
    TransferLeader { shard: u64, to: u64 },
    /// One replica of `shard` moves from node `from` to node `to`.
    MoveReplica { shard: u64, from: u64, to: u64 },
    /// Replicas and leaders spread over the active nodes by the placement rules, until
    /// neither has a step left.
    Rebalance,
    /// `shard` keeps the hashes below `at`; a new shard `child`, on the same replicas,
    /// takes `at` and above. `at` 0 leaves the point to the shard's leader: the median of
    /// its keys' hashes (`placement::split_point`). In a request `child` is 0: it is given
    /// when the operation starts.
    Split { shard: u64, at: u64, child: u64 },
    /// `left` takes over the range of `right`, the shard just above it on the same
    /// replicas, and `right` is gone: the inverse of a split.
    Merge { left: u64, right: u64 },
}

impl OpKind {
    /// The shards the operation works on; none for cluster-wide ones.
    pub fn shards(&self) -> Vec<u64> {
        match self {
            OpKind::TransferLeader { shard, .. } | OpKind::MoveReplica { shard, .. } | OpKind::Split { shard, .. } => {
                vec![*shard]
            }
            OpKind::Merge { left, right } => vec![*left, *right],
            OpKind::Rebalance => Vec::new(),
        }
    }

    /// Refuses an operation that cannot be carried out on `map` as it is: an unknown shard
    /// or node, a transfer to a node that is not a voter, a move to a node that already
    /// holds a replica or from one that holds none, a split point outside the range, a merge
    /// of shards that are not neighbours on the same replicas, or a shard another operation
    /// is busy with.
    pub fn check(&self, map: &ShardMap, active: &[u64], in_flight: &[ShardOp]) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidArgument(m));
        for op in in_flight {
            if let Some(busy) = op.kind.shards().into_iter().find(|s| self.shards().contains(s)) {
                return invalid(format!("shard {busy} is busy: operation {} ({}) is under way", op.id, op.kind));
            }
        }
        if let OpKind::Merge { left, right } = *self {
            return check_merge(map, left, right);
        }
        if *self == OpKind::Rebalance {
            return match in_flight.iter().find(|op| op.kind == OpKind::Rebalance) {
                Some(op) => invalid(format!("a rebalance is already under way (operation {})", op.id)),
                None => Ok(()),
            };
        }
        let id = self.shards().first().copied().unwrap_or_default();
        let shard = known_shard(map, id)?;
        if shard.moving() {
            return invalid(format!("shard {} is busy: a replica is moving", shard.id));
        }
        let known = |node: &u64, role: &str| match active.contains(node) {
            true => Ok(()),
            false => Err(Error::InvalidArgument(format!("{role} node {node} is not an active node of the cluster"))),
        };
        match self {
            OpKind::TransferLeader { to, .. } => {
                known(to, "target")?;
                if !shard.voters.contains(to) {
                    return invalid(format!(
                        "node {to} is not a voter of shard {}; its voters are {:?}",
                        shard.id, shard.voters
                    ));
                }
                Ok(())
            }
            OpKind::MoveReplica { from, to, .. } => {
                if !shard.replicas.contains(from) {
                    return invalid(format!(
                        "node {from} holds no replica of shard {}; its replicas are {:?}",
                        shard.id, shard.replicas
                    ));
                }
                known(to, "target")?;
                if shard.replicas.contains(to) {
                    return invalid(format!("node {to} already holds a replica of shard {}", shard.id));
                }
                Ok(())
            }
            OpKind::Split { at, .. } => {
                let side = if *at <= shard.start {
                    "it must be above the range's start"
                } else if *at > shard.end {
                    "it must not be above the range's end"
                } else {
                    return Ok(());
                };
                if *at == 0 {
                    return Ok(());
                }
                invalid(format!(
                    "split point {at:#018x} is not inside shard {}'s range {:#018x}..={:#018x} ({side})",
                    shard.id, shard.start, shard.end
                ))
            }
            OpKind::Rebalance | OpKind::Merge { .. } => Ok(()),
        }
    }

    /// A request made concrete for `map`: a split gets `child` as the new shard's id, a
    /// merge names the lower shard first. Other operations are returned as they are.
    pub fn settle(self, map: &ShardMap, child: u64) -> OpKind {
        match self {
            OpKind::Split { shard, at, .. } => OpKind::Split { shard, at, child },
            // Either order names the same merge.
            OpKind::Merge { left, right } => {
                let start = |id| map.shard(id).map(|s| s.start).unwrap_or_default();
                if start(left) <= start(right) {
                    OpKind::Merge { left, right }
                } else {
                    OpKind::Merge { left: right, right: left }
                }
            }
            other => other,
        }
    }
}

fn known_shard(map: &ShardMap, id: u64) -> Result<&crate::shard_map::Shard> {
    map.shard(id).map_err(|_| Error::InvalidArgument(format!("no shard {id} in the shard map")))
}

fn check_merge(map: &ShardMap, left: u64, right: u64) -> Result<()> {
    let invalid = |m: String| Err(Error::InvalidArgument(m));
    if left == right {
        return invalid(format!("shard {left} cannot be merged with itself"));
    }
    let (l, r) = (known_shard(map, left)?, known_shard(map, right)?);
    if l.end.checked_add(1) != Some(r.start) {
        return invalid(format!("shards {left} and {right} are not adjacent: only neighbouring ranges merge"));
    }
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    if let Some(moving) = [l, r].into_iter().find(|s| s.moving()) {
        return invalid(format!("shard {} is busy: a replica is moving", moving.id));
    }
    if sorted(&l.replicas) != sorted(&r.replicas) {
        return invalid(format!(
            "shards {left} and {right} are not on the same nodes ({:?} and {:?}): move a replica first",
            l.replicas, r.replicas
        ));
    }
    Ok(())
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::TransferLeader { shard, to } => write!(f, "transfer leadership of shard {shard} to node {to}"),
            OpKind::MoveReplica { shard, from, to } => {
                write!(f, "move the replica of shard {shard} on node {from} to node {to}")
            }
            OpKind::Rebalance => f.write_str("rebalance replicas and leaders over the active nodes"),
            OpKind::Split { shard, at, child } => {
                match at {
                    0 => write!(f, "split shard {shard} at its median key: ")?,
                    at => write!(f, "split shard {shard} at {at:#018x}: ")?,
                }
                // A request's child is 0 until the operation starts and names it.
                match child {
                    0 => f.write_str("a new shard takes the upper part"),
                    child => write!(f, "shard {child} takes the upper part"),
                }
            }
            OpKind::Merge { left, right } => write!(f, "merge shard {right} into shard {left}"),
        }
    }
}

/// An operation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOp {
    pub id: u64,
    pub kind: OpKind,
    /// When it was recorded (µs since the epoch, the metadata leader's clock).
    pub started_at: i64,
    /// Asked for by an operator, rather than by the placement rules.
    pub requested: bool,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// It could not finish; what was done is undone or harmless (a transfer that did not
    /// happen leaves the old leader leading).
    Failed(String),
}

/// An operation that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedOp {
    pub op: ShardOp,
    pub finished_at: i64,
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, kind: OpKind) -> ShardOp {
        ShardOp { id, kind, started_at: 0, requested: true }
    }

    #[test]
    fn bad_operations_are_refused_with_what_is_wrong() {
        let mut map = ShardMap::uniform(4, &[1, 2, 3]).unwrap();
        let active = [1, 2, 3, 4];
        let refused = |kind: OpKind, map: &ShardMap, in_flight: &[ShardOp]| {
            kind.check(map, &active, in_flight).unwrap_err().to_string()
        };
        let transfer = |shard, to| OpKind::TransferLeader { shard, to };
        let mv = |shard, from, to| OpKind::MoveReplica { shard, from, to };
        assert!(refused(transfer(9, 2), &map, &[]).contains("no shard 9"));
        assert!(refused(transfer(1, 7), &map, &[]).contains("node 7 is not an active node"));
        assert!(refused(transfer(1, 4), &map, &[]).contains("not a voter of shard 1"));
        assert!(refused(mv(1, 1, 2), &map, &[]).contains("already holds a replica"));
        assert!(refused(mv(1, 4, 2), &map, &[]).contains("node 4 holds no replica"));
        assert!(refused(mv(1, 1, 5), &map, &[]).contains("node 5 is not an active node"));
        let busy = [op(3, transfer(1, 2))];
        assert!(refused(mv(1, 1, 4), &map, &busy).contains("operation 3"));
        assert!(refused(OpKind::Rebalance, &map, &[op(5, OpKind::Rebalance)]).contains("already under way"));
        let split = |at| OpKind::Split { shard: 1, at, child: 9 };
        let first = map.shards[0].clone();
        let second = map.shards[1].clone();
        let on_second = OpKind::Split { shard: 2, at: second.start, child: 9 };
        let below = refused(on_second, &map, &[]);
        assert!(below.contains("not inside shard 2's range") && below.contains("above the range's start"), "{below}");
        let above = refused(split(first.end + 1), &map, &[]);
        assert!(
            above.contains("not inside shard 1's range") && above.contains("not be above the range's end"),
            "{above}"
        );
        assert_eq!(split(first.end).check(&map, &active, &[]), Ok(()));
        let median = OpKind::Split { shard: 1, at: 0, child: 0 }.settle(&map, 9);
        assert_eq!(median, split(0), "the point is left to the shard's leader");
        assert_eq!(median.check(&map, &active, &[]), Ok(()));
        // Said before the operation starts, the new shard has no id yet; after, its own.
        let asked = OpKind::Split { shard: 1, at: 0, child: 0 }.to_string();
        assert_eq!(asked, "split shard 1 at its median key: a new shard takes the upper part");
        assert_eq!(split(7).to_string(), "split shard 1 at 0x0000000000000007: shard 9 takes the upper part");
        let merge = |left, right| OpKind::Merge { left, right };
        assert!(refused(merge(1, 3), &map, &[]).contains("not adjacent"));
        assert!(refused(merge(2, 2), &map, &[]).contains("with itself"));
        assert!(refused(merge(4, 5), &map, &[]).contains("no shard 5"));
        assert_eq!(merge(2, 1).settle(&map, 0), merge(1, 2), "either order names the same merge");
        assert_eq!(merge(1, 2).check(&map, &active, &[]), Ok(()));
        assert!(refused(merge(1, 2), &map, &[op(8, split(first.end))]).contains("operation 8"));
        assert!(refused(transfer(3, 2), &map, &[op(8, merge(2, 3))]).contains("shard 3 is busy"));
        map.shards[1].replicas = vec![1, 2, 4];
        assert!(refused(transfer(2, 2), &map, &[]).contains("a replica is moving"));
        assert!(refused(merge(1, 2), &map, &[]).contains("a replica is moving"));
        map.shards[1].voters = vec![1, 2, 4];
        assert!(refused(merge(1, 2), &map, &[]).contains("not on the same nodes"));
        // What is valid passes, on another shard than a busy one.
        assert_eq!(mv(1, 1, 4).check(&map, &active, &[op(3, transfer(3, 2))]), Ok(()));
        assert_eq!(transfer(1, 3).check(&map, &active, &[op(4, OpKind::Rebalance)]), Ok(()));
    }
}
