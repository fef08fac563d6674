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
use quiver_client::{
    Client, Consistency, FeatureSelection, HistoricalRequest, OnlineRequest, Project, SpineFormat, Value,
};
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
    /// List what a project declares (every project when none is chosen), or its datasets.
    List {
        #[arg(value_enum)]
        what: Option<Listing>,
    },
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
    /// Ingest a Parquet or CSV file, a directory of them, or an s3:// URL into the offline
    /// store; the latest row per entity also goes online. Local paths are read by the node.
    Ingest {
        #[arg(long)]
        feature_set: String,
        path: String,
    },
    /// Build a point-in-time-correct training set from a spine of entity keys and times.
    History {
        /// Comma-separated references: set:feature, set@2:feature, set:*.
        #[arg(long, conflicts_with = "vector", required_unless_present = "vector")]
        features: Option<String>,
        #[arg(long)]
        vector: Option<String>,
        /// Parquet or CSV file with the join keys, a time column and any labels.
        #[arg(long)]
        spine: PathBuf,
        /// The spine's time column.
        #[arg(long, default_value = "event_timestamp")]
        timestamp_column: String,
        /// Where to write the training set (Parquet).
        #[arg(long)]
        out: PathBuf,
        /// Name columns `feature` instead of `set:feature` where unambiguous.
        #[arg(long)]
        short_names: bool,
        /// Also store the training set in the offline store under this name, with its lineage.
        #[arg(long)]
        save_as: Option<String>,
    },
    /// Load the latest offline row per entity (event time in [start, end)) into the online store.
    Materialize {
        #[arg(long)]
        feature_set: String,
        /// RFC 3339 time or integer microseconds.
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
    },
    /// List the committed offline Parquet files of a feature set.
    Files {
        #[arg(long)]
        feature_set: String,
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
    /// Statistics of every feature of a feature set, merged from recorded summaries.
    Stats {
        #[arg(long)]
        feature_set: String,
        /// Event times from (a date, RFC 3339 or µs).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Instead of --from/--to: FROM..TO, dataset:NAME or serving[:FROM..TO].
        #[arg(long, conflicts_with_all = ["from", "to"])]
        window: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drift of each feature between a reference and a current window: PSI, KS,
    /// Jensen–Shannon, Hellinger, TVD and a status.
    Drift {
        #[arg(long, required_unless_present = "vector", conflicts_with = "vector")]
        feature_set: Option<String>,
        #[arg(long)]
        vector: Option<String>,
        /// FROM..TO, dataset:NAME or serving[:FROM..TO].
        #[arg(long)]
        reference: String,
        /// FROM..TO or serving[:FROM..TO].
        #[arg(long)]
        current: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cluster membership.
    Node {
        #[command(subcommand)]
        action: NodeCmd,
    },
    /// Show the shard map: hash ranges, epochs, replicas and leaders.
    Shards {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Start a throwaway node, apply the examples, push rows and read a feature vector.
    Demo,
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Drain a node (its replicas move to the other nodes), then remove it from the cluster;
    /// waits until it is gone unless --no-wait.
    Remove {
        id: u64,
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long, e.g. 10m.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    FeatureSet,
    Entity,
    Vector,
    Dataset,
}

#[derive(Clone, Copy, ValueEnum)]
enum Listing {
    /// Saved training datasets and their lineage.
    Datasets,
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
        // Errors found here before any request show their code as the node's errors do.
        let local = e.chain().find_map(|c| c.downcast_ref::<quiver_core::Error>());
        let code = local.map(|c| format!(" [{}]", c.code())).unwrap_or_default();
        eprintln!("error: {e:#}{code}");
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
        Cmd::List { what: None } => list(&client, cli.project).await,
        Cmd::List { what: Some(Listing::Datasets) } => {
            let project = project_name(&client, cli.project).await?;
            print!("{}", render::dataset_listing(&client.datasets(&project).await?));
            Ok(())
        }
        Cmd::Describe { kind, name } => {
            let project = client.project(&project_name(&client, cli.project).await?).await?;
            let text = match kind {
                Kind::FeatureSet => render::describe_feature_set(&project, &name),
                Kind::Entity => render::describe_entity(&project, &name),
                Kind::Vector => render::describe_vector(&project, &name),
                Kind::Dataset => {
                    let datasets = client.datasets(&project.name).await?;
                    let dataset = datasets.iter().find(|d| d.name == name).ok_or_else(|| {
                        quiver_core::Error::InvalidArgument(format!(
                            "unknown dataset '{name}' in project {}",
                            project.name
                        ))
                    })?;
                    Ok(render::describe_dataset(dataset))
                }
            }?;
            print!("{text}");
            Ok(())
        }
        Cmd::Push { feature_set, file, format, batch_size } => {
            let project = project_name(&client, cli.project).await?;
            push(&client, &project, &feature_set, &file, RowFormat::for_path(&file, format), batch_size).await
        }
        Cmd::Get { features, vector, entities, format, consistency } => {
            let selection = selection(vector, features)?;
            let consistency = match consistency {
                ReadConsistency::Linearizable => Consistency::Linearizable,
                ReadConsistency::Stale => Consistency::Stale,
            };
            let project = project_name(&client, cli.project).await?;
            print!("{}", get(&client, &project, selection, &entities, format, consistency).await?);
            Ok(())
        }
        Cmd::Ingest { feature_set, path } => {
            let project = project_name(&client, cli.project).await?;
            ingest(&client, &project, &feature_set, &path).await
        }
        Cmd::History { features, vector, spine, timestamp_column, out, short_names, save_as } => {
            let project = project_name(&client, cli.project).await?;
            let selection = selection(vector, features)?;
            let spine = SpineArg { path: spine, timestamp_column };
            history(&client, &project, selection, &spine, &out, short_names, save_as).await
        }
        Cmd::Materialize { feature_set, start, end } => {
            let project = project_name(&client, cli.project).await?;
            let parse = |t: Option<String>| -> Result<Option<i64>> {
                t.map(|t| quiver_core::time::parse_timestamp(&t).map_err(|e| anyhow::anyhow!("--start/--end: {e}")))
                    .transpose()
            };
            let window = (parse(start)?, parse(end)?);
            let started = Instant::now();
            let report = client.materialize(&project, &feature_set, window, |_| {}).await?;
            println!(
                "materialized {feature_set}: read {} rows from {} files, wrote the latest of {} entities online in {:.2}s",
                report.rows_read,
                report.files_done,
                report.entities_written,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Files { feature_set } => {
            let project = project_name(&client, cli.project).await?;
            let files = client.files(&project, &feature_set).await?;
            let rows: Vec<Vec<String>> = files
                .iter()
                .map(|f| {
                    vec![
                        f.path.clone(),
                        f.rows.to_string(),
                        f.bytes.to_string(),
                        quiver_core::time::format_timestamp(f.min_ts_micros),
                        quiver_core::time::format_timestamp(f.max_ts_micros),
                    ]
                })
                .collect();
            print!("{}", render::table(&["PATH", "ROWS", "BYTES", "FIRST EVENT", "LAST EVENT"], &rows));
            let total: u64 = files.iter().map(|f| f.rows).sum();
            println!("{} files, {total} rows", files.len());
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
        Cmd::Node { action: NodeCmd::Remove { id, no_wait, timeout } } => {
            remove_node(&client, id, no_wait, timeout).await
        }
        Cmd::Stats { feature_set, from, to, window, format } => {
            let project = project_name(&client, cli.project).await?;
            let window = match window {
                Some(spec) => input::parse_window(&spec)?,
                None => quiver_client::StatsWindow::Offline {
                    from: from.as_deref().map(input::parse_time).transpose()?,
                    to: to.as_deref().map(input::parse_time).transpose()?,
                },
            };
            let stats = client.statistics(&project, &feature_set, &window).await?;
            match format {
                Format::Table => print!("{}", render::statistics_table(&stats)),
                Format::Json => println!("{}", render::statistics_json(&stats)),
            }
            Ok(())
        }
        Cmd::Drift { feature_set, vector, reference, current, format } => {
            let project = project_name(&client, cli.project).await?;
            let target = match (feature_set, vector) {
                (Some(s), _) => quiver_client::DriftTarget::FeatureSet(s),
                (None, Some(v)) => quiver_client::DriftTarget::Vector(v),
                (None, None) => bail!("give --feature-set or --vector"),
            };
            let (reference, current) = (input::parse_window(&reference)?, input::parse_window(&current)?);
            let report = client.drift(&project, &target, &reference, &current).await?;
            match format {
                Format::Table => print!("{}", render::drift_table(&report)),
                Format::Json => println!("{}", render::drift_json(&report)),
            }
            Ok(())
        }
        Cmd::Shards { format } => {
            let map = client.shard_map().await?;
            match format {
                Format::Table => print!("{}", render::shard_map_table(&map)),
                Format::Json => println!("{}", render::shard_map_json(&map)),
            }
            Ok(())
        }
        Cmd::Demo => unreachable!("handled above"),
    }
}

/// Starts draining node `id` and follows it until the node has left the cluster.
async fn remove_node(client: &Client, id: u64, no_wait: bool, timeout: std::time::Duration) -> Result<()> {
    client.remove_node(id).await?;
    if no_wait {
        println!("node {id} is draining; `quiverctl status` shows its replicas leaving");
        return Ok(());
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let status = client.status().await?;
        let Some(node) = status.nodes.iter().find(|n| n.id == id) else {
            spinner.finish_and_clear();
            println!("node {id} drained and removed; it can be stopped");
            return Ok(());
        };
        spinner.set_message(format!("draining node {id}: {} replicas left", node.replicas));
        if std::time::Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("node {id} still holds {} replicas after {timeout:?}; it keeps draining", node.replicas);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn selection(vector: Option<String>, features: Option<String>) -> Result<FeatureSelection> {
    Ok(match (vector, features) {
        (Some(v), _) => FeatureSelection::Vector(v),
        (None, Some(f)) => FeatureSelection::Refs(f.split(',').map(|s| s.trim().to_string()).collect()),
        (None, None) => bail!("give --features or --vector"),
    })
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

async fn ingest(client: &Client, project: &str, feature_set: &str, path: &str) -> Result<()> {
    // The node reads the path: make a local one absolute so it means the same there.
    let path = if path.starts_with("s3://") {
        path.to_string()
    } else {
        std::fs::canonicalize(path).with_context(|| format!("reading {path}"))?.display().to_string()
    };
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = client
        .ingest(project, feature_set, &path, |p| {
            bar.set_length(p.total_bytes);
            bar.set_position(p.bytes);
            bar.set_message(format!("{} rows, {}/{} files", p.rows, p.files_done, p.files_total));
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    for duplicate in &report.duplicates {
        println!("already ingested, nothing added: {duplicate}");
    }
    let secs = started.elapsed().as_secs_f64();
    if report.files_written == 0 && !report.duplicates.is_empty() {
        println!("nothing added: every source was ingested before");
        return Ok(());
    }
    println!(
        "ingested {} rows ({} bytes) from {} source file(s) into {feature_set}: {} Parquet file(s) committed in {secs:.2}s ({:.0} rows/s)",
        report.rows,
        report.bytes,
        report.files_done,
        report.files_written,
        report.rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// The spine file of a history request and its time column.
struct SpineArg {
    path: PathBuf,
    timestamp_column: String,
}

async fn history(
    client: &Client,
    project: &str,
    features: FeatureSelection,
    spine_arg: &SpineArg,
    out: &std::path::Path,
    short_names: bool,
    save_as: Option<String>,
) -> Result<()> {
    let (spine, timestamp_column) = (spine_arg.path.as_path(), spine_arg.timestamp_column.as_str());
    let spine_format = match spine.extension().and_then(|e| e.to_str()) {
        Some("csv") => SpineFormat::Csv,
        Some("parquet" | "pq") => SpineFormat::Parquet,
        _ => bail!("spine {}: expected a .csv or .parquet file", spine.display()),
    };
    let bytes = std::fs::read(spine).with_context(|| format!("reading {}", spine.display()))?;
    let started = Instant::now();
    let request = HistoricalRequest {
        project: project.into(),
        features,
        spine: bytes,
        spine_format,
        timestamp_column: Some(timestamp_column.into()),
        short_names,
        save_as: save_as.clone(),
        spine_name: spine.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let spinner =
        indicatif::ProgressBar::new_spinner().with_message(format!("joining {} spine bytes", request.spine.len()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let batch = client.historical(request).await;
    spinner.finish_and_clear();
    let batch = batch?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    print!("{}", render::batch_preview(&batch, 10)?);
    if let Some(name) = save_as {
        println!("saved as dataset {name} (quiverctl describe dataset {name})");
    }
    println!(
        "wrote {} rows x {} columns to {} in {:.2}s",
        batch.num_rows(),
        batch.num_columns(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
