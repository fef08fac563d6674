//! Tokens on the wire: a cluster admin is a token with no project.

use quiver_core::access::{Scope, TokenInfo};
use quiver_core::audit::{AuditEntry, AuditQuery};
use quiver_core::{Error, Result};

use crate::v1;

pub fn token_info_to_proto(t: &TokenInfo) -> v1::TokenInfo {
    v1::TokenInfo {
        name: t.name.clone(),
        project: match &t.scope {
            Scope::Cluster => String::new(),
            Scope::Project(p) => p.clone(),
        },
        role: t.role.to_string(),
        pii: t.pii,
        created_at_micros: t.created_at,
        created_by: t.created_by.clone(),
        expires_at_micros: t.expires_at.unwrap_or(0),
        revoked_at_micros: t.revoked_at.unwrap_or(0),
    }
}

pub fn token_info_from_proto(t: v1::TokenInfo) -> Result<TokenInfo> {
    let when = |micros: i64| (micros != 0).then_some(micros);
    Ok(TokenInfo {
        scope: if t.project.is_empty() { Scope::Cluster } else { Scope::Project(t.project) },
        role: t.role.parse()?,
        name: t.name,
        pii: t.pii,
        created_at: t.created_at_micros,
        created_by: t.created_by,
        expires_at: when(t.expires_at_micros),
        revoked_at: when(t.revoked_at_micros),
    })
}

/// The scope a token request asks for: a project, or the cluster with `cluster_admin`.
pub fn token_scope_from_proto(req: &v1::CreateTokenRequest) -> Result<Scope> {
    match (req.cluster_admin, req.project.is_empty()) {
        (true, true) => Ok(Scope::Cluster),
        (false, false) => Ok(Scope::Project(req.project.clone())),
        (true, false) => {
            Err(Error::InvalidArgument("a cluster admin token is for every project: give no project".into()))
        }
        (false, true) => {
            Err(Error::InvalidArgument("give the project the token's role is on, or ask for a cluster admin".into()))
        }
    }
}

pub fn audit_entry_to_proto(e: &AuditEntry) -> v1::AuditEntry {
    v1::AuditEntry {
        at_micros: e.at,
        actor: e.actor.clone(),
        from: e.from.clone(),
        node: e.node,
        action: e.action.clone(),
        project: e.project.clone().unwrap_or_default(),
        detail: e.detail.clone(),
        outcome: e.outcome.clone(),
    }
}

pub fn audit_entry_from_proto(e: v1::AuditEntry) -> AuditEntry {
    AuditEntry {
        at: e.at_micros,
        actor: e.actor,
        from: e.from,
        node: e.node,
        action: e.action,
        project: (!e.project.is_empty()).then_some(e.project),
        detail: e.detail,
        outcome: e.outcome,
    }
}

pub fn audit_query_to_proto(q: &AuditQuery) -> v1::ListAuditRequest {
    v1::ListAuditRequest {
        project: q.project.clone().unwrap_or_default(),
        since_micros: q.since.unwrap_or(0),
        actor: q.actor.clone().unwrap_or_default(),
        limit: u32::try_from(q.limit).unwrap_or(u32::MAX),
    }
}

pub fn audit_query_from_proto(q: v1::ListAuditRequest) -> AuditQuery {
    let given = |s: String| (!s.is_empty()).then_some(s);
    AuditQuery {
        project: given(q.project),
        since: (q.since_micros != 0).then_some(q.since_micros),
        actor: given(q.actor),
        limit: q.limit as usize,
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::access::Role;

    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = TokenInfo {
            name: "ci".into(),
            scope: Scope::Project("fraud".into()),
            role: Role::Writer,
            pii: true,
            created_at: 5,
            created_by: "admin".into(),
            expires_at: Some(9),
            revoked_at: None,
        };
        assert_eq!(token_info_from_proto(token_info_to_proto(&token)).unwrap(), token);
        let admin =
            TokenInfo { scope: Scope::Cluster, role: Role::Admin, expires_at: None, revoked_at: Some(7), ..token };
        assert_eq!(token_info_from_proto(token_info_to_proto(&admin)).unwrap(), admin);
    }

    #[test]
    fn audit_entries_and_queries_round_trip() {
        let entry = AuditEntry {
            at: 3,
            actor: "ci".into(),
            from: "127.0.0.1:5".into(),
            node: 2,
            action: "Apply".into(),
            project: Some("rides".into()),
            detail: "applying definitions".into(),
            outcome: "ok".into(),
        };
        assert_eq!(audit_entry_from_proto(audit_entry_to_proto(&entry)), entry);
        let query = AuditQuery { project: Some("rides".into()), since: Some(9), actor: None, limit: 5 };
        assert_eq!(audit_query_from_proto(audit_query_to_proto(&query)), query);
        assert_eq!(audit_query_from_proto(audit_query_to_proto(&AuditQuery::default())), AuditQuery::default());
    }
}
