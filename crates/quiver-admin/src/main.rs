//! `quiverctl`: declare features, push and read rows, and watch a Quiver cluster.

mod demo;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use quiver_admin::input::{self, RowFormat};
use quiver_admin::render;
use quiver_client::{Client, Consistency, FeatureSelection, OnlineRequest, Project, Value};
use quiver_core::row::validate_row;
use quiver_core::spec::JoinKey;

#[derive(Parser)]
#[command(name = "quiverctl", version, about = "Command-line client and admin tool for Quiver")]
struct Cli {
    /// gRPC endpoint of a Quiver node.
    #[arg(long, global = true, env = "QUIVER_ENDPOINT", default_value = "http://127.0.0.1:7070")]
    endpoint: String,
    /// Project to work in; may be left out when only one project exists.
    #[arg(long, global = true, env = "QUIVER_PROJECT")]
    project: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Apply definitions from a YAML file (idempotent).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List what a project declares (every project when none is chosen).
    List,
    /// Show one entity, feature set (NAME or NAME@VERSION) or feature vector.
    Describe { kind: Kind, name: String },
    /// Write rows of a feature set from a JSON-lines or CSV file ('-' reads stdin).
    Push {
        #[arg(long)]
        feature_set: String,
        file: String,
        /// Input format; by default from the file name (.csv, else JSON lines).
        #[arg(long, value_enum)]
        format: Option<RowFormat>,
        /// Rows per write request.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
    /// Read the latest feature values for entities.
    Get {
        /// Comma-separated references: set:feature, set@2:feature, set:*.
        #[arg(long, conflicts_with = "vector", required_unless_present = "vector")]
        features: Option<String>,
        /// A feature vector name.
        #[arg(long)]
        vector: Option<String>,
        /// Join keys of one entity, e.g. driver_id=1001 or driver_id=1001,region=eu; repeat for more.
        #[arg(long = "entity", required = true)]
        entities: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
    },
    /// Show the node, the cluster's nodes and every Raft group with its leader and indexes.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Start a throwaway node, apply the examples, push rows and read a feature vector.
    Demo,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    FeatureSet,
    Entity,
    Vector,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReadConsistency {
    Linearizable,
    Stale,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Demo = cli.command {
        return demo::run().await;
    }
    let client = Client::connect(&cli.endpoint).await?;
    match cli.command {
        Cmd::Apply { file } => apply(&client, &file).await,
        Cmd::List => list(&client, cli.project).await,
        Cmd::Describe { kind, name } => {
            let project = client.project(&project_name(&client, cli.project).await?).await?;
            let text = match kind {
                Kind::FeatureSet => render::describe_feature_set(&project, &name),
                Kind::Entity => render::describe_entity(&project, &name),
                Kind::Vector => render::describe_vector(&project, &name),
            }?;
            print!("{text}");
            Ok(())
        }
        Cmd::Push { feature_set, file, format, batch_size } => {
            let project = project_name(&client, cli.project).await?;
            push(&client, &project, &feature_set, &file, RowFormat::for_path(&file, format), batch_size).await
        }
        Cmd::Get { features, vector, entities, format, consistency } => {
            let selection = match (vector, features) {
                (Some(v), _) => FeatureSelection::Vector(v),
                (None, Some(f)) => FeatureSelection::Refs(f.split(',').map(|s| s.trim().to_string()).collect()),
                (None, None) => bail!("give --features or --vector"),
            };
            let consistency = match consistency {
                ReadConsistency::Linearizable => Consistency::Linearizable,
                ReadConsistency::Stale => Consistency::Stale,
            };
            let project = project_name(&client, cli.project).await?;
            print!("{}", get(&client, &project, selection, &entities, format, consistency).await?);
            Ok(())
        }
        Cmd::Status { format } => {
            let status = client.status().await?;
            match format {
                Format::Table => print!("{}", render::status_table(&status)),
                Format::Json => println!("{}", render::status_json(&status)),
            }
            Ok(())
        }
        Cmd::Demo => unreachable!("handled above"),
    }
}

/// The chosen project, or the only one there is.
async fn project_name(client: &Client, chosen: Option<String>) -> Result<String> {
    if let Some(p) = chosen {
        return Ok(p);
    }
    let projects = client.projects().await?;
    match projects.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no project exists yet: apply definitions first (quiverctl apply -f FILE)"),
        many => bail!("several projects exist ({}): pass --project NAME or set QUIVER_PROJECT", many.join(", ")),
    }
}

async fn apply(client: &Client, file: &std::path::Path) -> Result<()> {
    let defs = input::read_definitions(file)?;
    let reply = client.apply(&defs).await?;
    for change in &reply.changes {
        if change.action != "unchanged" {
            println!("{}", change.summary);
        }
    }
    if reply.changed {
        println!("applied {} to project {}", file.display(), defs.project);
    } else {
        println!("no changes: project {} already matches {}", defs.project, file.display());
    }
    Ok(())
}

async fn list(client: &Client, chosen: Option<String>) -> Result<()> {
    let projects = match chosen {
        Some(p) => vec![p],
        None => client.projects().await?,
    };
    if projects.is_empty() {
        println!("no projects yet: apply definitions with quiverctl apply -f FILE");
    }
    for (i, name) in projects.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", render::project_listing(&client.project(name).await?));
    }
    Ok(())
}

async fn push(
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

async fn get(
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
    Ok(match format {
        Format::Table => render::online_table(&entities, &answer),
        Format::Json => render::online_json(&entities, &answer),
    })
}
