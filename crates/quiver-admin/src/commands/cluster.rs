//! `status`, `shards` and `node remove`: the cluster.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::Client;

pub async fn status(client: &Client, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.status().await?, render::cluster::status_table)?);
    Ok(())
}

pub async fn shards(client: &Client, format: Format) -> Result<()> {
    print!("{}", render::format::answer(format, &client.shard_map().await?, render::cluster::shard_map_table)?);
    Ok(())
}

/// Starts draining node `id` and follows it until the node has left the cluster.
pub async fn remove_node(client: &Client, id: u64, no_wait: bool, timeout: Duration) -> Result<()> {
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
