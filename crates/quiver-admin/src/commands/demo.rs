//! `quiverctl demo`: Quiver's main job on the embedded single-node default, end to end.

use std::time::Duration;

use anyhow::{Context, Result};
use quiver_admin::input::RowFormat;
use quiver_admin::local_node::LocalNode;
use quiver_admin::render::format::Format;
use quiver_client::{Consistency, FeatureSelection};
use quiver_core::time::{MICROS_PER_SEC, format_timestamp, now_micros};

use crate::commands::offline::{self, SpineArg};
use crate::commands::{online, registry};

const DEFINITIONS: &str = include_str!("../../../../examples/rides.yaml");
const HISTORY: &[u8] = include_bytes!("../../../../examples/driver_stats.parquet");
const SPINE: &str = include_str!("../../../../examples/driver_spine.csv");

pub async fn run() -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let data_dir = dir.path().join("node");
    println!("starting quiver-node on {} ...", data_dir.display());
    let mut node = LocalNode::start(&data_dir, &[]).await?;
    let client = node.client().await?;
    println!("node ready at {}\n", node.endpoint());

    let defs_path = dir.path().join("rides.yaml");
    std::fs::write(&defs_path, DEFINITIONS)?;
    println!("$ quiverctl apply -f examples/rides.yaml");
    registry::apply(&client, &defs_path).await?;

    // Event times relative to now, so the 7-day TTL keeps them fresh.
    let rows_path = dir.path().join("driver_stats.csv");
    std::fs::write(&rows_path, example_rows(now_micros()))?;
    println!("\n$ quiverctl push --feature-set driver_stats driver_stats.csv");
    online::push(&client, "rides", "driver_stats", &rows_path.display().to_string(), RowFormat::Csv, 1000).await?;

    let entities: Vec<String> = (1001..=1005).map(|id| format!("driver_id={id}")).collect();
    println!("\n$ quiverctl get --vector driver_model_v1 --entity driver_id=1001 ... --entity driver_id=1005");
    let table = online::get(
        &client,
        "rides",
        FeatureSelection::Vector("driver_model_v1".into()),
        &entities,
        Format::Table,
        Consistency::Linearizable,
    )
    .await?;
    print!("{table}");

    println!(
        "\n$ quiverctl get --features driver_stats:conv_rate,driver_stats:city --entity driver_id=1001 --format json"
    );
    let json = online::get(
        &client,
        "rides",
        FeatureSelection::Refs(vec!["driver_stats:conv_rate".into(), "driver_stats:city".into()]),
        &entities[..1],
        Format::Json,
        Consistency::Linearizable,
    )
    .await?;
    print!("{json}");

    let history_path = dir.path().join("driver_stats.parquet");
    std::fs::write(&history_path, HISTORY)?;
    println!("\n$ quiverctl ingest --feature-set driver_stats examples/driver_stats.parquet");
    offline::ingest(&client, "rides", "driver_stats", &history_path.display().to_string()).await?;

    let spine = SpineArg { path: dir.path().join("driver_spine.csv"), timestamp_column: "event_timestamp".into() };
    std::fs::write(&spine.path, SPINE)?;
    let out = dir.path().join("train.parquet");
    println!(
        "\n$ quiverctl history --vector driver_model_v1 --spine examples/driver_spine.csv --out train.parquet --save-as demo_train"
    );
    let vector = FeatureSelection::Vector("driver_model_v1".into());
    offline::history(&client, "rides", vector, &spine, &out, false, Some("demo_train".into())).await?;

    node.terminate()?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("\ndemo done; the node was stopped and {} removed", dir.path().display());
    Ok(())
}

/// Three events per driver over the last three hours; the newest one is what `get` returns.
fn example_rows(now: i64) -> String {
    let cities = ["Lisbon", "Porto", "Braga", "Faro", "Coimbra"];
    let mut csv = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    for (i, driver) in (1001..=1005).enumerate() {
        for hour in (1..=3).rev() {
            let ts = now - hour * 3600 * MICROS_PER_SEC;
            let seed = (driver * 31 + hour * 7) as f64;
            csv += &format!(
                "{driver},{},{:.3},{:.3},{},{}\n",
                format_timestamp(ts),
                (seed * 0.137).fract(),
                (seed * 0.291).fract(),
                5 + (driver + hour) % 30,
                cities[i],
            );
        }
    }
    csv
}
