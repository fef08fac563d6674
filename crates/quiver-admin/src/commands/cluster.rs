//! `status`, `shards`, `node remove` and `shard ...`: the cluster.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::{Client, ClusterMap, OpKind, Outcome};

use crate::cli::Wait;

pub async fn status(client: &Client, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.status().await?, render::cluster::status_table)?);
    Ok(())
}

pub async fn shards(client: &Client, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.shard_map().await?, render::cluster::shard_map_table)?);
    Ok(())
}

/// Starts draining node `id` and follows it until the node has left the cluster.
pub async fn remove_node(client: &Client, id: u64, wait: Wait) -> Result<()> {
    let Wait { no_wait, timeout } = wait;
    client.remove_node(id).await?;
    if no_wait {
        println!("node {id} is draining; `quiverctl status` shows its replicas leaving");
        return Ok(());
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + timeout;
    loop {
        let status = client.status().await?;
        let Some(node) = status.nodes.iter().find(|n| n.id == id) else {
            spinner.finish_and_clear();
            println!("node {id} drained and removed; it can be stopped");
            return Ok(());
        };
        spinner.set_message(format!("draining node {id}: {} replicas left", node.replicas));
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("node {id} still holds {} replicas after {timeout:?}; it keeps draining", node.replicas);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Says what the operation will do, starts it, and follows it to its end with a progress
/// line (unless `--no-wait`); fails when it failed.
pub async fn shard_operation(client: &Client, kind: OpKind, wait: Wait) -> Result<()> {
    let map = client.shard_map().await?;
    // Unless an operation is moving its leadership elsewhere: the node refuses that.
    if let OpKind::TransferLeader { shard, to } = kind
        && map.shard_map.shard(shard).is_ok_and(|s| s.leader == Some(to))
        && !map.operations.iter().any(|op| op.kind.shards().contains(&shard))
    {
        println!("shard {shard} is led by node {to} already: nothing to do");
        return Ok(());
    }
    println!("{}: {kind}", plan(&map, &kind));
    let op = client.start_shard_operation(kind).await?;
    if wait.no_wait {
        println!("operation {} started; `quiverctl shards` follows it", op.id);
        return Ok(());
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let ended = client
        .wait_for_operation(op.id, wait.timeout, |map| {
            spinner.set_message(format!("{:.0?} {}", started.elapsed(), progress(&op.kind, map)));
        })
        .await;
    spinner.finish_and_clear();
    match ended?.outcome {
        Outcome::Done => {
            println!("operation {} done in {:.1?}: {}", op.id, started.elapsed(), op.kind);
            if let OpKind::Split { .. } | OpKind::Merge { .. } = op.kind {
                print!("{}", render::cluster::shard_map_table(&client.shard_map().await?));
            }
            Ok(())
        }
        Outcome::Failed(why) => bail!("operation {} failed: {why}", op.id),
    }
}

/// What the cluster looks like before the operation, in the words of the plan line.
fn plan(map: &ClusterMap, kind: &OpKind) -> String {
    let shard = |id| map.shard_map.shard(id).ok();
    match *kind {
        OpKind::TransferLeader { shard: id, .. } => match shard(id).and_then(|s| s.leader) {
            Some(leader) => format!("shard {id} is led by node {leader}"),
            None => format!("shard {id} has no known leader"),
        },
        OpKind::MoveReplica { shard: id, .. } => match shard(id) {
            Some(s) => format!("shard {id} is on nodes {:?}", s.replicas),
            None => format!("shard {id} is unknown"),
        },
        OpKind::Rebalance => format!("leaders per node {}", leader_counts(map)),
        OpKind::Split { shard: id, .. } => match shard(id) {
            Some(s) => format!("shard {id} holds {:#018x}..={:#018x}", s.start, s.end),
            None => format!("shard {id} is unknown"),
        },
        OpKind::Merge { .. } => format!("the map has {} shards", map.shard_map.shards.len()),
    }
}

/// One line on where the operation stands.
fn progress(kind: &OpKind, map: &ClusterMap) -> String {
    let shard = |id| map.shard_map.shard(id).ok();
    match *kind {
        OpKind::TransferLeader { shard: id, to } => {
            let leader = shard(id).and_then(|s| s.leader).map_or("none".into(), |l| l.to_string());
            format!("shard {id}: leader {leader}, handing over to node {to}")
        }
        OpKind::MoveReplica { shard: id, .. } => match shard(id) {
            Some(s) => format!("shard {id}: replicas {:?}, voters {:?}", s.replicas, s.voters),
            None => format!("shard {id}: gone"),
        },
        OpKind::Split { shard: id, .. } => match shard(id) {
            Some(s) => format!("shard {id}: {:#018x}..={:#018x}, epoch {}", s.start, s.end, s.epoch.version),
            None => format!("shard {id}: gone"),
        },
        OpKind::Merge { left, right } => match shard(right) {
            Some(_) => format!("shard {right} freezing, shard {left} absorbing its rows"),
            None => format!("shard {right} merged into shard {left}"),
        },
        OpKind::Rebalance => {
            let moving = map.shard_map.shards.iter().filter(|s| s.moving()).count();
            let steps = map.operations.iter().filter(|op| op.kind != OpKind::Rebalance).count();
            format!("leaders per node {}; {moving} replica moves and {steps} transfers under way", leader_counts(map))
        }
    }
}

/// `node:shards led` for every node, e.g. `1:3 2:3 3:2`.
fn leader_counts(map: &ClusterMap) -> String {
    let count = |node| map.shard_map.shards.iter().filter(|s| s.leader == Some(node)).count();
    map.nodes.keys().map(|n| format!("{n}:{}", count(*n))).collect::<Vec<_>>().join(" ")
}

/// Cancels shard operation `op` and says whether it ended, and how.
pub async fn finalize_upgrade(client: &Client) -> Result<()> {
    match client.finalize_upgrade().await? {
        (version, true) => println!("cluster version {version} in force: the upgrade is finalized"),
        (version, false) => println!("cluster version {version} was already in force"),
    }
    Ok(())
}

pub async fn cancel(client: &Client, op: u64) -> Result<()> {
    let (_, note) = client.cancel_shard_operation(op).await?;
    println!("{note}");
    Ok(())
}
