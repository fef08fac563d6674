//! Access: issue a token (its secret is answered once), list them, revoke one; read the
//! audit log.

use std::time::Duration;

use quiver_core::access::{Role, Scope, TokenInfo};
use quiver_core::audit::{AuditEntry, AuditQuery};
use quiver_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

/// What a new token may do: a role on a project (or on every project, a cluster admin),
/// the PII grant, and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Unique for the cluster's life.
    pub name: String,
    /// A project, or `Scope::Cluster` for a cluster admin.
    pub scope: Scope,
    /// Ignored for a cluster admin, who is an admin everywhere.
    pub role: Role,
    /// May read the scope's features tagged `pii`.
    pub pii: bool,
    /// `None`: valid until revoked.
    pub ttl: Option<Duration>,
}

impl Client {
    /// Issues a token; answers its secret, which nothing else will show again, and its record.
    pub async fn create_token(&self, token: &NewToken) -> Result<(String, TokenInfo)> {
        let (project, cluster_admin) = match &token.scope {
            Scope::Cluster => (String::new(), true),
            Scope::Project(p) => (p.clone(), false),
        };
        let request = v1::CreateTokenRequest {
            name: token.name.clone(),
            project,
            role: token.role.to_string(),
            pii: token.pii,
            ttl_secs: token.ttl.map_or(0, |t| t.as_secs().max(1)),
            cluster_admin,
        };
        let reply = self.admin.clone().create_token(request).await.map_err(Error::from)?.into_inner();
        let info = reply.info.ok_or_else(|| Error::Rpc(tonic::Status::internal("the node sent no token record")))?;
        Ok((reply.token, quiver_proto::token_info_from_proto(info)?))
    }

    /// The tokens of `project`, or every token the caller administers, revoked ones too.
    pub async fn list_tokens(&self, project: Option<&str>) -> Result<Vec<TokenInfo>> {
        let request = v1::ListTokensRequest { project: project.unwrap_or_default().into() };
        let reply = self.admin.clone().list_tokens(request).await.map_err(Error::from)?.into_inner();
        Ok(reply.tokens.into_iter().map(quiver_proto::token_info_from_proto).collect::<Result<_, _>>()?)
    }

    /// Entries of the audit log that `query` asks for, oldest first: a cluster admin may
    /// read every project's, a project's admin that project's (`query.project`).
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let request = quiver_proto::audit_query_to_proto(query);
        let reply = self.admin.clone().list_audit(request).await.map_err(Error::from)?.into_inner();
        Ok(reply.entries.into_iter().map(quiver_proto::audit_entry_from_proto).collect())
    }

    /// Sets how long the cluster keeps audit entries (a cluster admin's; a day at least).
    pub async fn set_audit_retention(&self, retention: std::time::Duration) -> Result<()> {
        let request = v1::SetAuditRetentionRequest { retention_secs: retention.as_secs() };
        self.admin.clone().set_audit_retention(request).await.map_err(Error::from)?;
        Ok(())
    }

    /// Revokes a token by name: every node refuses it once it has applied the revocation.
    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        let request = v1::RevokeTokenRequest { name: name.into() };
        self.admin.clone().revoke_token(request).await.map_err(Error::from)?;
        Ok(())
    }
}
