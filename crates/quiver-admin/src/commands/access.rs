//! `token create|list|revoke` and `audit`: who may use the cluster, and what they did.

use anyhow::Result;
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::{AuditQuery, Client, NewToken, Scope};

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
    print!(
        "{}",
        render::format::answer(format, &client.list_tokens(project).await?, |t| render::access::tokens_table(t))?
    );
    Ok(())
}

pub async fn revoke(client: &Client, name: &str) -> Result<()> {
    client.revoke_token(name).await?;
    println!("token '{name}' revoked: every node refuses it once it has applied the revocation");
    Ok(())
}

/// A `--since`: a duration ago (`1h`), else a time or a date.
pub fn since(text: &str) -> Result<i64> {
    if let Ok(ago) = humantime::parse_duration(text.trim()) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        return Ok(now.saturating_sub(ago).as_micros() as i64);
    }
    quiver_core::time::parse_time_or_date(text).map_err(|e| anyhow::anyhow!("--since {text:?}: {e}"))
}

pub async fn audit(client: &Client, query: &AuditQuery, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.audit(query).await?, |e| render::access::audit_table(e))?);
    Ok(())
}

pub async fn retention(client: &Client, keep: std::time::Duration) -> Result<()> {
    client.set_audit_retention(keep).await?;
    println!("the cluster keeps audit entries for {}", humantime::format_duration(keep));
    Ok(())
}

/// Checks the audit chain of a stopped node's data dir; fails naming where it breaks.
pub fn verify(data_dir: &std::path::Path) -> Result<()> {
    match quiver_store::meta::audit_chain::verify_data_dir(data_dir)? {
        Ok(v) => {
            println!("audit log verified: {} chained entries from index {}, unbroken", v.entries, v.first);
            if v.unchained > 0 {
                println!("{} entries from before the chain began are not covered", v.unchained);
            }
            Ok(())
        }
        Err(broken) => anyhow::bail!("the audit log's chain breaks at entry {}: {}", broken.index, broken.why),
    }
}
