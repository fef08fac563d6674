//! Meta commands of one concern: tokens and the audit log.

use quiver_core::access::TokenInfo;

use super::{EXPIRED_PER_COMMIT, MetaMachine, audit_chain};
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

impl MetaMachine {
    /// Applies a command of this concern (`MetaMachine::apply` sends each here by kind).
    pub(super) fn apply_access(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        let response = match cmd {
            MetaCommand::CreateToken { hash, name, scope, role, pii, ttl_micros, created_by } => {
                if self.state.tokens.values().any(|t| t.name == *name) {
                    let taken = format!(
                        "a token named '{name}' exists (names are never reused, revoked or not); pick another name"
                    );
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(taken)));
                }
                let info = TokenInfo {
                    name: name.clone(),
                    scope: scope.clone(),
                    role: *role,
                    pii: *pii,
                    created_at: leader_time,
                    created_by: created_by.clone(),
                    expires_at: ttl_micros.map(|ttl| leader_time.saturating_add(ttl)),
                    revoked_at: None,
                };
                self.state.tokens.insert(*hash, info);
                Response::Done
            }
            MetaCommand::RevokeToken { name } => match self.state.tokens.values_mut().find(|t| t.name == *name) {
                Some(token) => {
                    token.revoked_at.get_or_insert(leader_time);
                    Response::Done
                }
                None => return Ok(Response::Rejected(quiver_core::access::unknown_token(name))),
            },
            // Audit entries do not touch the in-memory state: only their own keys. The
            // retention is the cluster's (the chain's head), whatever the proposer says.
            MetaCommand::RecordAudit { entries, .. } => {
                let budget = EXPIRED_PER_COMMIT * entries.len().max(1);
                let retention = audit_chain::head(tree, batch)?.retention_micros();
                let cutoff = leader_time.saturating_sub(retention);
                // Entries from before the chain began expire by time, as they were kept.
                for kv in tree.scan_prefix(&[keyspace::AUDIT]).take(budget) {
                    let (key, _) = kv?;
                    match keyspace::audit_time(&key) {
                        Some(at) if at < cutoff => batch.delete(key),
                        _ => break,
                    }
                }
                audit_chain::append(tree, batch, entries, leader_time, budget)?;
                return Ok(Response::Done);
            }
            MetaCommand::SetAuditRetention { retention_micros } => {
                if *retention_micros < audit_chain::MIN_RETENTION_MICROS {
                    let short = "the audit log is kept for a day at least".to_string();
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(short)));
                }
                audit_chain::set_retention(tree, batch, *retention_micros)?;
                return Ok(Response::Done);
            }
            other => return Err(Error::Raft(format!("access does not apply {other:?}"))),
        };
        self.changed = true;
        Ok(response)
    }
}
