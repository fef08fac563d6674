//! `quiverctl`: declare features, push and read rows, and watch a Quiver cluster.

mod cli;
mod commands;
mod plaintext;

use anyhow::{Context, Result, bail};
use clap::Parser;
use quiver_admin::input::RowFormat;
use quiver_client::{AuditQuery, Client, Consistency, NewToken, Role, Scope};

use crate::cli::{
    AuditCmd, BackupCmd, CertCmd, Cli, ClusterCmd, Cmd, Listing, NodeCmd, ReadConsistency, ShardCmd, TokenCmd,
    TokenRole,
};
use crate::commands::{access, backup, cert, cluster, demo, offline, online, registry, stats};
use quiver_client::OpKind;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let endpoint = cli.endpoint.clone();
    if let Err(e) = run(cli).await {
        match plaintext::explain(&endpoint, &e) {
            Some(explained) => eprintln!("error: {explained}"),
            None => {
                // Errors found here before any request show their code as the node's errors do.
                let local = e.chain().find_map(|c| c.downcast_ref::<quiver_core::Error>());
                let code = local.map(|c| format!(" [{}]", c.code())).unwrap_or_default();
                eprintln!("error: {e:#}{code}");
            }
        }
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let cli = match cli.command {
        Cmd::Demo => return demo::run().await,
        Cmd::Audit { action: Some(AuditCmd::Verify { data_dir }), .. } => return access::verify(&data_dir),
        Cmd::Cert { action: CertCmd::CreateCa { out } } => return cert::create_ca(&out),
        Cmd::Cert { action: CertCmd::CreateNode { name, ca_dir, out, hosts } } => {
            return cert::create_node(&name, &ca_dir, &out, &hosts);
        }
        Cmd::Cert { action: CertCmd::CreateClient { name, ca_dir, out } } => {
            return cert::create_client(&name, &ca_dir, &out);
        }
        Cmd::Backup { action } => match action {
            BackupCmd::List { from, format } => return backup::list(&from, format).await,
            BackupCmd::Describe { id, from, format } => return backup::describe(&id, &from, format).await,
            BackupCmd::Verify { id, from, encrypt_key } => {
                return backup::verify(&id, &from, encrypt_key.as_deref()).await;
            }
            BackupCmd::NewKey { file } => return backup::new_key(&file),
            BackupCmd::Delete { id, keep, from } => return backup::delete(id.as_deref(), keep, &from).await,
            BackupCmd::Restore(args) => return backup::restore(args).await,
            create => Cli { command: Cmd::Backup { action: create }, ..cli },
        },
        command => Cli { command, ..cli },
    };
    if cli.endpoint.starts_with("https://") && cli.ca.is_none() {
        // Said here in the CLI's words; the client library's refusal names its own API.
        bail!(
            "{} speaks TLS: quiverctl needs the cluster's CA to check its certificate (--ca FILE or QUIVER_CA)",
            cli.endpoint
        );
    }
    let mut builder = Client::builder(&cli.endpoint);
    if let Some(ca) = &cli.ca {
        builder = builder.ca(std::fs::read(ca).with_context(|| format!("reading the CA {}", ca.display()))?);
    }
    if let Some(token) = &cli.token {
        builder = builder.token(token);
    }
    let client = builder.connect().await?;
    let project = || registry::project_name(&client, cli.project.clone());
    match cli.command {
        Cmd::Apply { file } => registry::apply(&client, &file).await,
        Cmd::List { what: None } => registry::list(&client, cli.project.clone()).await,
        Cmd::List { what: Some(Listing::Datasets) } => offline::list_datasets(&client, &project().await?).await,
        Cmd::Describe { kind, name } => registry::describe(&client, &project().await?, kind, &name).await,
        Cmd::Push { feature_set, file, format, batch_size } => {
            let format = RowFormat::for_path(&file, format);
            online::push(&client, &project().await?, &feature_set, &file, format, batch_size).await
        }
        Cmd::Get { features, vector, entities, format, consistency } => {
            let consistency = match consistency {
                ReadConsistency::Linearizable => Consistency::Linearizable,
                ReadConsistency::Stale => Consistency::Stale,
            };
            let selection = cli::selection(vector, features)?;
            print!("{}", online::get(&client, &project().await?, selection, &entities, format, consistency).await?);
            Ok(())
        }
        Cmd::Ingest { feature_set, path } => offline::ingest(&client, &project().await?, &feature_set, &path).await,
        Cmd::History { features, vector, spine, timestamp_column, out, short_names, save_as } => {
            let selection = cli::selection(vector, features)?;
            let spine = offline::SpineArg { path: spine, timestamp_column };
            offline::history(&client, &project().await?, selection, &spine, &out, short_names, save_as).await
        }
        Cmd::Materialize { feature_set, start, end } => {
            offline::materialize(&client, &project().await?, &feature_set, start, end).await
        }
        Cmd::Files { feature_set } => offline::files(&client, &project().await?, &feature_set).await,
        Cmd::Status { format } => cluster::status(&client, format).await,
        Cmd::Shards { format } => cluster::shards(&client, format).await,
        Cmd::Node { action: NodeCmd::Remove { id, wait } } => cluster::remove_node(&client, id, wait).await,
        Cmd::Cluster { action: ClusterCmd::FinalizeUpgrade } => cluster::finalize_upgrade(&client).await,
        Cmd::Shard { action } => {
            let (kind, wait) = match action {
                ShardCmd::Cancel { op } => return cluster::cancel(&client, op).await,
                ShardCmd::TransferLeader { id, to, wait } => (OpKind::TransferLeader { shard: id, to }, wait),
                ShardCmd::Move { id, from, to, wait } => (OpKind::MoveReplica { shard: id, from, to }, wait),
                ShardCmd::Rebalance { wait } => (OpKind::Rebalance, wait),
                ShardCmd::Merge { first, second, wait } => (OpKind::Merge { left: first, right: second }, wait),
                ShardCmd::Split { id, at, wait } => (OpKind::Split { shard: id, at: at.unwrap_or(0), child: 0 }, wait),
            };
            cluster::shard_operation(&client, kind, wait).await
        }
        Cmd::Stats { feature_set, from, to, window, format } => {
            let window = stats::window(from, to, window)?;
            stats::stats(&client, &project().await?, &feature_set, &window, format).await
        }
        Cmd::Drift { feature_set, vector, reference, current, format } => {
            let target = stats::target(feature_set, vector)?;
            stats::drift(&client, &project().await?, &target, (&reference, &current), format).await
        }
        Cmd::Backup { action: BackupCmd::Create { to, incremental, copy_offline, no_copy_offline, encrypt_key } } => {
            let copy_offline = (copy_offline || no_copy_offline).then_some(copy_offline);
            let encryption_key = encrypt_key.as_deref().map(backup::read_key).transpose()?;
            let options = quiver_client::BackupOptions { incremental, copy_offline, encryption_key };
            backup::create(&client, &to, &options).await
        }
        Cmd::Token { action: TokenCmd::Create { name, role, ttl, pii } } => {
            let (scope, role) = match role {
                TokenRole::ClusterAdmin => (Scope::Cluster, Role::Admin),
                TokenRole::Viewer => (Scope::Project(project().await?), Role::Viewer),
                TokenRole::Writer => (Scope::Project(project().await?), Role::Writer),
                TokenRole::Admin => (Scope::Project(project().await?), Role::Admin),
            };
            access::create(&client, NewToken { name, scope, role, pii, ttl }).await
        }
        Cmd::Token { action: TokenCmd::List { format } } => access::list(&client, cli.project.as_deref(), format).await,
        Cmd::Token { action: TokenCmd::Revoke { name } } => access::revoke(&client, &name).await,
        Cmd::Audit { action: Some(AuditCmd::Retention { keep }), .. } => access::retention(&client, keep).await,
        Cmd::Audit { action: Some(AuditCmd::Verify { .. }), .. } => unreachable!("handled above"),
        Cmd::Audit { action: None, since, actor, limit, format } => {
            let since = since.map(|s| access::since(&s)).transpose()?;
            let query = AuditQuery { project: cli.project.clone(), since, actor, limit };
            access::audit(&client, &query, format).await
        }
        Cmd::Demo | Cmd::Backup { .. } | Cmd::Cert { .. } => unreachable!("handled above"),
    }
}
