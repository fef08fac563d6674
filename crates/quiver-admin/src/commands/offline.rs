//! The offline store: `ingest`, `history`, `materialize`, `files` and saved datasets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use futures::StreamExt;
use quiver_admin::render;
use quiver_client::{Client, FeatureSelection, HistoricalRequest, Spine};

/// Rows of a training set shown after it is written.
const PREVIEW_ROWS: usize = 10;

pub async fn ingest(client: &Client, project: &str, feature_set: &str, path: &str) -> Result<()> {
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
            bar.set_message(match p.files_done {
                0 => format!("{} rows checked", p.rows_checked),
                done => format!("{} rows, {done}/{} files", p.rows, p.files_total),
            });
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
pub struct SpineArg {
    pub path: PathBuf,
    pub timestamp_column: String,
}

pub async fn history(
    client: &Client,
    project: &str,
    features: FeatureSelection,
    spine_arg: &SpineArg,
    out: &Path,
    short_names: bool,
    save_as: Option<String>,
) -> Result<()> {
    let (spine, timestamp_column) = (spine_arg.path.as_path(), spine_arg.timestamp_column.as_str());
    let as_spine = match spine.extension().and_then(|e| e.to_str()) {
        Some("csv") => Spine::Csv,
        Some("parquet" | "pq") => Spine::Parquet,
        _ => bail!("spine {}: expected a .csv or .parquet file", spine.display()),
    };
    let bytes = std::fs::read(spine).with_context(|| format!("reading {}", spine.display()))?;
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("joining {} spine bytes", bytes.len()));
    let started = Instant::now();
    let request = HistoricalRequest {
        project: project.into(),
        features,
        spine: as_spine(bytes),
        timestamp_column: Some(timestamp_column.into()),
        short_names,
        save_as: save_as.clone(),
        spine_name: spine.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    spinner.enable_steady_tick(Duration::from_millis(100));
    let joining = spinner.message();
    let answer = client
        .historical_stream(request, |spent| spinner.set_message(format!("{joining}: {}s", spent.as_secs())))
        .await;
    spinner.finish_and_clear();
    // Written batch by batch as they arrive: the whole answer is never held here.
    let mut answer = answer?;
    let (schema, nodes) = (answer.schema(), answer.nodes());
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
    let bar = indicatif::ProgressBar::new(answer.rows()).with_style(
        indicatif::ProgressStyle::with_template("writing {bar:30} {human_pos}/{human_len} rows")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut head, mut rows) = (None, 0);
    while let Some(batch) = answer.next().await {
        let batch = batch?;
        writer.write(&batch)?;
        rows += batch.num_rows();
        bar.inc(batch.num_rows() as u64);
        head.get_or_insert_with(|| batch.slice(0, batch.num_rows().min(PREVIEW_ROWS)));
    }
    writer.close()?;
    bar.finish_and_clear();
    let head = head.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    print!("{}", render::offline::batch_preview(&head, PREVIEW_ROWS, rows)?);
    if let Some(name) = save_as {
        println!("saved as dataset {name} (quiverctl describe dataset {name})");
    }
    let split = if nodes > 1 { format!(", joined by {nodes} nodes") } else { String::new() };
    println!(
        "wrote {rows} rows x {} columns to {} in {:.2}s{split}",
        schema.fields().len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Loads the latest offline row per entity with event time in `[start, end)` online.
pub async fn materialize(
    client: &Client,
    project: &str,
    feature_set: &str,
    start: Option<String>,
    end: Option<String>,
) -> Result<()> {
    let parse = |t: Option<String>| -> Result<Option<i64>> {
        t.map(|t| quiver_core::time::parse_timestamp(&t).map_err(|e| anyhow::anyhow!("--start/--end: {e}"))).transpose()
    };
    let window = (parse(start)?, parse(end)?);
    let started = Instant::now();
    let report = client.materialize(project, feature_set, window, |_| {}).await?;
    println!(
        "materialized {feature_set}: read {} rows from {} files, wrote the latest of {} entities online in {:.2}s",
        report.rows_read,
        report.files_done,
        report.entities_written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn files(client: &Client, project: &str, feature_set: &str) -> Result<()> {
    print!("{}", render::offline::files_table(&client.files(project, feature_set).await?));
    Ok(())
}

pub async fn list_datasets(client: &Client, project: &str) -> Result<()> {
    print!("{}", render::offline::dataset_listing(&client.datasets(project).await?));
    Ok(())
}
