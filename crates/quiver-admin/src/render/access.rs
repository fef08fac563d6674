//! Tokens (who may do what, until when) and the audit log (what they did).

use quiver_core::access::{Scope, TokenInfo};
use quiver_core::audit::AuditEntry;
use quiver_core::time::format_timestamp;

use super::format::table;

pub fn tokens_table(tokens: &[TokenInfo]) -> String {
    if tokens.is_empty() {
        return "no tokens you administer\n".into();
    }
    let cells: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let (scope, role) = match &t.scope {
                Scope::Cluster => ("*".to_string(), "cluster-admin".to_string()),
                Scope::Project(p) => (p.clone(), t.role.to_string()),
            };
            let state = match (t.revoked_at, t.expires_at) {
                (Some(at), _) => format!("revoked {}", format_timestamp(at)),
                (None, Some(at)) => format!("expires {}", format_timestamp(at)),
                (None, None) => "valid".into(),
            };
            let pii = if t.pii { "yes" } else { "no" }.to_string();
            vec![t.name.clone(), scope, role, pii, format_timestamp(t.created_at), t.created_by.clone(), state]
        })
        .collect();
    table(&["NAME", "PROJECT", "ROLE", "PII", "CREATED", "BY", "STATE"], &cells)
}

pub fn audit_table(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "no audit entries match\n".into();
    }
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                format_timestamp(e.at),
                e.actor.clone(),
                e.from.clone(),
                e.node.to_string(),
                e.action.clone(),
                e.project.clone().unwrap_or_else(|| "-".into()),
                e.detail.clone(),
                e.outcome.clone(),
            ]
        })
        .collect();
    table(&["TIME", "ACTOR", "FROM", "NODE", "ACTION", "PROJECT", "WHAT", "OUTCOME"], &cells)
}
