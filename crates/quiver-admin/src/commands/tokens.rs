//! `token create|list|revoke`: who may use the cluster.

use anyhow::Result;
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::{Client, NewToken, Scope};

/// Issues a token and prints it alone on the last line, so a script can take it with `tail -1`.
pub async fn create(client: &Client, token: NewToken) -> Result<()> {
    let (secret, info) = client.create_token(&token).await?;
    let scope = match &info.scope {
        Scope::Cluster => "cluster admin".to_string(),
        Scope::Project(p) => format!("{} of project {p}", info.role),
    };
    let pii = if info.pii { ", with the PII grant" } else { "" };
    let until =
        info.expires_at.map(|at| format!(", until {}", quiver_core::time::format_timestamp(at))).unwrap_or_default();
    println!("token '{}': {scope}{pii}{until}; it is shown only now:", info.name);
    println!("{secret}");
    Ok(())
}

pub async fn list(client: &Client, project: Option<&str>, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.list_tokens(project).await?, render::tokens::tokens_table)?);
    Ok(())
}

pub async fn revoke(client: &Client, name: &str) -> Result<()> {
    client.revoke_token(name).await?;
    println!("token '{name}' revoked: every node refuses it once it has applied the revocation");
    Ok(())
}
