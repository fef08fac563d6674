//! Tokens on the wire: a cluster admin is a token with no project.

use quiver_core::access::{Scope, TokenInfo};
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
}
