//! `push` and `get`: rows into the online store, the latest values out.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

use anyhow::{Context, Result};
use quiver_admin::input::{self, RowFormat};
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::{Client, Consistency, FeatureSelection, OnlineRequest, Project, Value};
use quiver_core::row::validate_row;
use quiver_core::spec::JoinKey;

/// Writes the rows of `file` ('-' reads stdin) in batches, after checking all of them.
pub async fn push(
    client: &Client,
    project: &str,
    feature_set: &str,
    file: &str,
    format: RowFormat,
    batch_size: usize,
) -> Result<()> {
    let registry = client.project(project).await?;
    let fs = registry.feature_set_by_ref(feature_set)?;
    let entity = registry.entity(&fs.entity)?;
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("opening {file}"))?)
    };
    let rows = input::parse_rows(reader, format, entity, fs).with_context(|| format!("in {file}"))?;
    // Check every row before sending any, so a bad row anywhere writes nothing.
    for (i, row) in rows.iter().enumerate() {
        validate_row(entity, fs, i + 1, row.clone()).with_context(|| format!("in {file}"))?;
    }
    let started = Instant::now();
    let target = fs.versioned_name();
    let mut written = 0;
    for batch in rows.chunks(batch_size.max(1)) {
        written += client.write(project, &target, batch.to_vec()).await?.rows_written;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("pushed {written} rows to {target} in {secs:.2}s ({:.0} rows/s)", written as f64 / secs.max(1e-9));
    Ok(())
}

/// The join keys a read of `selection` needs, from every feature set involved.
fn join_keys_for(project: &Project, selection: &FeatureSelection) -> Result<Vec<JoinKey>> {
    let refs = match selection {
        FeatureSelection::Vector(v) => project.vector(v)?.features.clone(),
        FeatureSelection::Refs(r) => r.clone(),
    };
    let mut keys: Vec<JoinKey> = Vec::new();
    for f in project.resolve(&refs)? {
        let entity = project.entity(&project.feature_set(&f.set, Some(f.version))?.entity)?;
        for k in &entity.join_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    Ok(keys)
}

/// The latest values for `--entity` arguments, as the text to print.
pub async fn get(
    client: &Client,
    project: &str,
    features: FeatureSelection,
    entity_args: &[String],
    format: Format,
    consistency: Consistency,
) -> Result<String> {
    let registry = client.project(project).await?;
    let entities: Vec<BTreeMap<String, Value>> =
        input::parse_entities(entity_args, &join_keys_for(&registry, &features)?)?;
    let request = OnlineRequest { project: project.into(), features, entities: entities.clone(), consistency };
    let answer = client.get_online(request).await?;
    let stale = consistency == Consistency::Stale;
    Ok(match format {
        Format::Table => render::online::online_table(&entities, &answer, stale),
        Format::Json => render::online::online_json(&entities, &answer, stale)?,
    })
}
