//! Meta commands of one concern: backups: the cut's hold, files pinned for them, the record of those made.

use std::collections::BTreeSet;

use quiver_core::shard_ops::OpKind;

use super::{BACKUPS_KEPT, MetaMachine};
use crate::codec::{load, store};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

impl MetaMachine {
    /// Applies a command of this concern (`MetaMachine::apply` sends each here by kind).
    pub(super) fn apply_backups(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        let response = match cmd {
            MetaCommand::BeginBackupCut { id, hold_ms } => {
                let held_by_another = self.state.backup_cut.as_ref().is_some_and(|(other, _)| other != id);
                if held_by_another
                    && let Err(busy) = self.state.check_no_backup_cut(leader_time, &format!("backup {id}"))
                {
                    return Ok(Response::Rejected(busy));
                }
                if let Some(ingest) = publishing(tree, batch, leader_time)? {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!(
                            "ingest {ingest} is publishing its files and rows; the backup cuts once it has"
                        ),
                        retry_after_ms: 500,
                    }));
                }
                let reshaping =
                    self.state.ops.iter().find(|op| matches!(op.kind, OpKind::Split { .. } | OpKind::Merge { .. }));
                if let Some(op) = reshaping {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!(
                            "shard operation {} ({}) is under way; a backup starts once it ends",
                            op.id, op.kind
                        ),
                        retry_after_ms: 1000,
                    }));
                }
                let until =
                    leader_time.saturating_add(i64::try_from(*hold_ms).unwrap_or(i64::MAX).saturating_mul(1000));
                self.state.backup_cut = Some((id.clone(), until));
                // Under way from here: garbage collection keeps what it may list (`backup::pins`).
                let abandoned = leader_time.saturating_sub(super::BACKUP_UNDER_WAY_MAX_MICROS);
                for kv in tree.scan_prefix(&[keyspace::BACKUP_UNDER_WAY]) {
                    let (key, value) = kv?;
                    if load::<i64>(&value)? < abandoned {
                        batch.delete(key);
                    }
                }
                batch.put(keyspace::backup_under_way(id), store(&leader_time)?);
                Response::Done
            }
            MetaCommand::EndBackupCut { id } => {
                // A cut taken after its hold lapsed, or was taken by another backup, may have
                // let an export commit between two groups' cuts: that backup must not stand.
                // (A lapsed hold holds nothing: it stays until the next backup's.)
                match &self.state.backup_cut {
                    None => return Ok(Response::Done),
                    Some((held, until)) if held != id || leader_time >= *until => {
                        return Ok(Response::Rejected(quiver_core::Error::Unavailable(format!(
                            "backup {id} took longer to cut the groups than its hold on exports lasted; make it \
                             again"
                        ))));
                    }
                    Some(_) => self.state.backup_cut = None,
                }
                Response::Done
            }
            // Pins do not touch the in-memory state: only their own keys.
            MetaCommand::PinFiles { backup, location, paths } => {
                for path in paths {
                    batch.put(keyspace::backup_pin(path, backup), store(location)?);
                }
                return Ok(Response::Done);
            }
            MetaCommand::UnpinFiles { backup, paths } => {
                for path in paths {
                    batch.delete(keyspace::backup_pin(path, backup));
                }
                return Ok(Response::Done);
            }
            MetaCommand::RecordBackup(record) => {
                batch.delete(keyspace::backup_under_way(&record.id));
                // Recorded again (a retried proposal): listed once.
                if self.state.backups.iter().any(|b| b.id == record.id) {
                    return Ok(Response::Done);
                }
                self.state.backups.push_back(record.clone());
                while self.state.backups.len() > BACKUPS_KEPT {
                    self.state.backups.pop_front();
                }
                Response::Done
            }
            other => return Err(Error::Raft(format!("backups does not apply {other:?}"))),
        };
        self.changed = true;
        Ok(response)
    }
}

/// An ingest whose publishing lease runs past `now`, as the tree and this apply's batch
/// have them.
fn publishing(tree: &dyn KvTree, batch: &WriteBatch, now: i64) -> Result<Option<String>> {
    let prefix = [keyspace::INGEST_PUBLISHING];
    let mut keys: BTreeSet<Vec<u8>> = batch.keys().filter(|k| k.starts_with(&prefix)).map(<[u8]>::to_vec).collect();
    for kv in tree.scan_prefix(&prefix) {
        keys.insert(kv?.0);
    }
    for key in keys {
        let value = match batch.pending(&key) {
            Some(pending) => pending.map(<[u8]>::to_vec),
            None => tree.get(&key)?,
        };
        if value.map(|v| load::<i64>(&v)).transpose()?.is_some_and(|until| until > now) {
            return Ok(Some(String::from_utf8_lossy(&key[1..]).into_owned()));
        }
    }
    Ok(None)
}
