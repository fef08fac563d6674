//! Access RPCs. Tokens: a project's admin issues, lists and revokes the project's tokens; a
//! cluster admin any token. A token's secret is made here and answered once; the meta
//! group keeps its hash (`trust::token`). The audit log: a project's admin reads the
//! project's entries; a cluster admin every entry.

use quiver_core::Error as CoreError;
use quiver_core::access::{Need, Role, Scope, TokenInfo, unknown_token};
use quiver_core::shard_map::META_GROUP;
use quiver_proto::v1;

use crate::auth::{Call, audit as audit_log};
use crate::node::Node;
use crate::trust::token;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;

/// Longest token name; names are letters, digits, `-`, `_` and `.`.
const MAX_NAME: usize = 64;

/// `PermissionDenied` unless the caller administers tokens of `scope`.
fn allow_on(call: &Call, scope: &Scope, action: &str) -> Result<()> {
    match scope {
        Scope::Cluster => call.allow(Need::Cluster { action }),
        Scope::Project(project) => call.allow(Need::Project { project, role: Role::Admin, action }),
    }
}

pub async fn create(node: &Node, call: &Call, req: v1::CreateTokenRequest) -> Result<v1::CreateTokenResponse> {
    let name = req.name.trim().to_string();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(valid) {
        return Err(CoreError::InvalidArgument(format!(
            "token name {name:?}: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
        ))
        .into());
    }
    let scope = quiver_proto::token_scope_from_proto(&req)?;
    let role: Role = match (&scope, req.role.as_str()) {
        (Scope::Cluster, "" | "admin" | "cluster-admin") => Role::Admin,
        (Scope::Cluster, other) => {
            let why = format!("a cluster admin token has the admin role on every project, not '{other}'");
            return Err(CoreError::InvalidArgument(why).into());
        }
        (Scope::Project(_), role) => role.parse()?,
    };
    allow_on(call, &scope, "issuing tokens")?;
    let grant = if req.pii { ", with the PII grant" } else { "" };
    call.note(format!("token '{name}': {role} on {scope}{grant}"));
    if req.pii && !call.caller.may_give_pii(&scope) {
        let on = match &scope {
            Scope::Project(project) => format!("project '{project}'"),
            Scope::Cluster => "every project".into(),
        };
        let why = format!("token '{}' has no PII grant on {on}, so it cannot give one", call.caller.name);
        return Err(CoreError::PermissionDenied(why).into());
    }
    let ttl_micros = match req.ttl_secs {
        0 => None,
        secs => Some(i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000)),
    };
    let secret = token::generate()?;
    let hash = token::hash(&secret);
    let command = MetaCommand::CreateToken {
        hash,
        name,
        scope,
        role,
        pii: req.pii,
        ttl_micros,
        created_by: call.caller.name.clone(),
    };
    node.proposer.write_meta(command).await?;
    let state = node.meta.caught_up().await?;
    let info = state.tokens.get(&hash).map(quiver_proto::token_info_to_proto);
    Ok(v1::CreateTokenResponse { token: secret, info })
}

pub async fn list(node: &Node, call: &Call, req: v1::ListTokensRequest) -> Result<v1::ListTokensResponse> {
    if !req.project.is_empty() {
        allow_on(call, &Scope::Project(req.project.clone()), "listing tokens")?;
    }
    let state = node.meta.caught_up().await?;
    let visible = |t: &&TokenInfo| match &t.scope {
        Scope::Cluster => req.project.is_empty() && call.caller.is_cluster_admin(),
        Scope::Project(p) => {
            (req.project.is_empty() || *p == req.project) && call.caller.role_on(p) == Some(Role::Admin)
        }
    };
    let mut tokens: Vec<&TokenInfo> = state.tokens.values().filter(visible).collect();
    tokens.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    Ok(v1::ListTokensResponse { tokens: tokens.into_iter().map(quiver_proto::token_info_to_proto).collect() })
}

pub async fn revoke(node: &Node, call: &Call, req: v1::RevokeTokenRequest) -> Result<v1::RevokeTokenResponse> {
    let state = node.meta.caught_up().await?;
    let token = state.tokens.values().find(|t| t.name == req.name).ok_or_else(|| unknown_token(&req.name))?;
    allow_on(call, &token.scope, "revoking tokens")?;
    call.note(format!("token '{}': {} on {}", token.name, token.role, token.scope));
    node.proposer.write_meta(MetaCommand::RevokeToken { name: req.name }).await?;
    Ok(v1::RevokeTokenResponse {})
}

pub async fn audit(node: &Node, call: &Call, req: v1::ListAuditRequest) -> Result<v1::ListAuditResponse> {
    let query = quiver_proto::audit_query_from_proto(req);
    match &query.project {
        Some(project) => call.allow(Need::Project { project, role: Role::Admin, action: "reading the audit log" })?,
        None => call.allow(Need::Cluster { action: "reading the whole audit log" })?,
    }
    // Entries recorded through any node up to now are applied here first.
    node.meta.caught_up().await?;
    let tree = node.groups.group(META_GROUP)?.data.clone();
    let entries = audit_log::read(tree.as_ref(), &query)?;
    Ok(v1::ListAuditResponse { entries: entries.iter().map(quiver_proto::audit_entry_to_proto).collect() })
}
