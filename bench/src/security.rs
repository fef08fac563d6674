//! The cost of security: one node three times over, open (plaintext, no tokens), with TLS,
//! and with TLS and authentication (a token on every request, looked up by its hash in the
//! meta state; what each role may do checked per request), with the same data and load each
//! time: online reads (a vector of 10 features of one entity, linearizable) from concurrent
//! readers, then pushes (batches of rows) from concurrent writers. The certificates are made
//! with `quiverctl cert`. Reads of features tagged `pii` would add an audit record each;
//! the data set has none. Then what callers without a valid token cost a node with `--auth`:
//! its peak memory under large bodies sent without a token, and the audit entries that many
//! made-up tokens add.

use anyhow::{Context, Result};
use quiver_admin::local_node::{LocalNode, binary};
use quiver_client::{Client, Consistency};
use serde_json::json;

use crate::online::{for_secs, load, push, read_loop};
use crate::output::{Format, Out};

#[derive(clap::Args)]
pub struct Args {
    /// Entities loaded before the reads.
    #[arg(long, default_value_t = 100_000)]
    entities: i64,
    /// Seconds of reads, and of pushes, per setting.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Rows per push.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds in all: 5,000 entities, 0.5 s per measurement.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn quiverctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(binary("quiverctl")?).args(args).output()?;
    anyhow::ensure!(out.status.success(), "quiverctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.entities, args.seconds) = (5_000, 0.5);
    }
    let out = Out::new(args.format);
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    let certs_dir = certs.to_str().context("a UTF-8 path")?;
    quiverctl(&["cert", "create-ca", "--out", certs_dir])?;
    quiverctl(&["cert", "create-node", "node", "--ca-dir", certs_dir, "--out", certs_dir])?;
    let tls = ["--tls-cert", "node.pem", "--tls-key", "node.key", "--tls-ca", "ca.pem"]
        .map(|a| if a.starts_with("--") { a.to_string() } else { format!("{certs_dir}/{a}") });
    let settings: [(&str, bool, bool); 3] = [("open", false, false), ("tls", true, false), ("tls+auth", true, true)];
    out.say(format!(
        "quiver-bench security: one node per setting, {} entities; reads: {} readers, pushes: {} writers x {} rows, {} s each",
        args.entities, args.concurrency, args.writers, args.batch, args.seconds
    ));
    out.say(format!(
        "{:<10} {:>12} {:>9} {:>9}   {:>10} {:>9} {:>9}",
        "setting", "reads/s", "p50 us", "p99 us", "rows/s", "p50 us", "p99 us"
    ));
    let mut figures = Vec::new();
    for (name, with_tls, with_auth) in settings {
        let mut flags: Vec<&str> = Vec::new();
        if with_tls {
            flags.extend(tls.iter().map(String::as_str));
        }
        if with_auth {
            flags.push("--auth");
        }
        let data_dir = dir.path().join(name);
        let node = LocalNode::start(&data_dir, &flags).await?;
        let mut builder =
            Client::builder(node.endpoint().replace("http://", if with_tls { "https://" } else { "http://" }));
        if with_tls {
            builder = builder.ca(std::fs::read(certs.join("ca.pem"))?);
        }
        if with_auth {
            builder = builder.token(std::fs::read_to_string(data_dir.join("admin.token"))?);
        }
        let client = builder.connect().await?;
        client.apply(&quiver_client::Definitions::from_yaml(crate::datagen::DEFINITIONS)?).await?;
        load(&client, args.entities, 1_000, args.writers).await?;
        let reads =
            read_loop(&client, args.entities, (1, Consistency::Linearizable), args.concurrency, for_secs(args.seconds))
                .await?;
        let writes = push(&client, args.entities, args.batch, args.writers, for_secs(args.seconds)).await?;
        let read_rate = reads.ops as f64 / reads.secs;
        let [r50, r99] = [0.5, 0.99].map(|q| reads.hist.value_at_quantile(q));
        let write_rate = writes.rows as f64 / writes.secs;
        let [w50, w99] = [0.5, 0.99].map(|q| writes.hist.value_at_quantile(q));
        out.say(format!("{name:<10} {read_rate:>12.0} {r50:>9} {r99:>9}   {write_rate:>10.0} {w50:>9} {w99:>9}"));
        figures.push(json!({"setting": name, "reads_per_sec": read_rate, "read_p50_us": r50, "read_p99_us": r99,
                            "rows_per_sec": write_rate, "write_p50_us": w50, "write_p99_us": w99}));
    }
    let floods = unauthenticated(&args, dir.path(), &out).await?;
    out.figures(&json!({"security": figures, "unauthenticated": floods}));
    Ok(())
}

/// The peak resident memory of process `pid` so far, in bytes (`VmHWM`).
fn peak_memory(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).context("no VmHWM")?;
    Ok(kib.trim().trim_end_matches("kB").trim().parse::<u64>()? << 10)
}

/// Bodies without a token, then made-up tokens, at a node with `--auth`.
async fn unauthenticated(args: &Args, dir: &std::path::Path, out: &Out) -> Result<serde_json::Value> {
    use quiver_proto::v1::admin_service_client::AdminServiceClient;
    use quiver_proto::v1::feature_service_client::FeatureServiceClient;
    use quiver_proto::v1::{StatusRequest, WriteFeaturesRequest};
    let (bodies, body_mib, tokens) = if args.quick { (5, 20, 1_000) } else { (5, 200, 10_000) };
    let data_dir = dir.join("flood");
    let node = LocalNode::start(&data_dir, &["--auth"]).await?;
    let pid = node.pid().context("the node runs")?;
    let channel = tonic::transport::Endpoint::from_shared(node.endpoint())?.connect().await?;
    let before = peak_memory(pid)?;
    let body = "x".repeat(body_mib << 20);
    let sends = (0..bodies).map(|_| {
        let mut client = FeatureServiceClient::new(channel.clone()).max_encoding_message_size(usize::MAX);
        let request = WriteFeaturesRequest { project: body.clone(), ..Default::default() };
        async move { client.write_features(request).await.is_err() }
    });
    let refused = futures::future::join_all(sends).await.into_iter().filter(|r| *r).count();
    let grown_mib = peak_memory(pid)?.saturating_sub(before) as f64 / (1 << 20) as f64;
    out.say(format!(
        "unauthenticated: {bodies} bodies of {body_mib} MiB at once, {refused} refused; the node's peak grew {grown_mib:.1} MiB"
    ));
    let root = Client::builder(node.endpoint())
        .token(std::fs::read_to_string(data_dir.join("admin.token"))?)
        .connect()
        .await?;
    let audited =
        || async { Ok::<usize, anyhow::Error>(root.audit(&quiver_client::AuditQuery::default()).await?.len()) };
    let entries_before = audited().await?;
    let mut admin = AdminServiceClient::new(channel);
    let started = std::time::Instant::now();
    for i in 0..tokens {
        let mut request = tonic::Request::new(StatusRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer qvt_made_up_{i}").parse()?);
        let _ = admin.status(request).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // The count of each source's refusals goes on record once its minute has ended.
    tokio::time::sleep(std::time::Duration::from_secs(if args.quick { 2 } else { 65 })).await;
    let added = audited().await?.saturating_sub(entries_before);
    out.say(format!(
        "unauthenticated: {tokens} made-up tokens in {secs:.1} s ({:.0}/s); audit entries added: {added}",
        tokens as f64 / secs
    ));
    Ok(json!({"bodies": bodies, "body_mib": body_mib, "peak_growth_mib": grown_mib, "made_up_tokens": tokens,
              "tokens_per_sec": tokens as f64 / secs, "audit_entries_added": added}))
}
