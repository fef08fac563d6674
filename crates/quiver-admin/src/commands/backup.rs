//! Backups: `backup create` asks a node; `list`, `describe`, `verify`, `delete` and
//! `restore` work on the backup location directly (S3 settings from the `AWS_*`
//! variables), so they need no running cluster.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use quiver_admin::render::backup as show;

use crate::cli::RestoreArgs;
use quiver_admin::render::format::{Format, answer};
use quiver_backup::catalog;
use quiver_backup::format::Place;
use quiver_backup::seal::BackupKey;
use quiver_client::{BackupOptions, BackupProgress, Client};
use quiver_offline::store::{S3Settings, absolute_location};
use quiver_store::config::Config;

fn bar() -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} objects, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn show_progress(bar: &ProgressBar, p: &BackupProgress) {
    bar.set_length(p.objects_total);
    bar.set_position(p.objects_done);
    bar.set_message(format!("{} written, {} online rows read: {}", HumanBytes(p.bytes), p.rows, p.phase));
}

/// The raw key in a key file, as the node that makes the backup takes it.
pub fn read_key(file: &Path) -> Result<Vec<u8>> {
    Ok(BackupKey::read(file)?.as_bytes().to_vec())
}

/// Writes a new backup key to `file`, readable by this user only.
pub fn new_key(file: &Path) -> Result<()> {
    super::cert::write(file, &format!("{}\n", BackupKey::generate()?), true)?;
    println!(
        "wrote a backup key to {}: keep a copy apart from the backups, which cannot be read without it",
        file.display()
    );
    Ok(())
}

pub async fn create(client: &Client, to: &str, options: &BackupOptions) -> Result<()> {
    let to = absolute_location(to);
    let started = Instant::now();
    let bar = bar();
    let done = client.create_backup(&to, options, |p| show_progress(&bar, p)).await;
    bar.finish_and_clear();
    let done = done?;
    let secs = started.elapsed().as_secs_f64();
    // The rows are those the backup holds; an incremental one writes only what changed.
    println!(
        "backup {} complete in {to}: holds {} online rows; {} written in {secs:.1}s ({}/s)",
        done.id,
        done.rows,
        HumanBytes(done.bytes),
        HumanBytes((done.bytes as f64 / secs.max(1e-9)) as u64)
    );
    Ok(())
}

fn open(from: &str) -> Result<quiver_offline::store::OfflineStore> {
    Ok(catalog::open(&absolute_location(from), &S3Settings::default())?)
}

pub async fn list(from: &str, format: Format) -> Result<()> {
    let listed = catalog::list(&open(from)?).await?;
    let rows: Vec<show::Listed> = listed.iter().map(show::Listed::from).collect();
    print!("{}", answer(format, &rows, |r| show::list_table(r))?);
    Ok(())
}

pub async fn describe(id: &str, from: &str, format: Format) -> Result<()> {
    let catalog = catalog::find(&open(from)?, id).await?;
    print!("{}", answer(format, &catalog, show::describe)?);
    Ok(())
}

pub async fn verify(id: &str, from: &str, key: Option<&Path>) -> Result<()> {
    let location = open(from)?;
    let found = catalog::find(&location, id).await?;
    let key = key.map(BackupKey::read).transpose()?;
    let place = Place { store: &location, key: found.key(key.as_ref())? };
    // Files a backup left in the source's offline store are checked there when it opens.
    let offline = catalog::open(&found.offline_store, &S3Settings::default()).ok();
    let bar = bar();
    bar.set_length(found.objects().count() as u64 + found.offline.iter().filter(|f| f.copy.is_none()).count() as u64);
    let problems = catalog::verify(place, &found, offline.as_ref(), |o| {
        bar.inc(1);
        bar.set_message(o.path.clone());
    })
    .await;
    bar.finish_and_clear();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        bail!("backup {id} failed verification: {} problem(s)", problems.len());
    }
    let left = found.offline.iter().filter(|f| f.copy.is_none()).count();
    if left > 0 && offline.is_none() {
        println!(
            "{left} offline file(s) left in {} were not checked: it cannot be opened from here",
            found.offline_store
        );
    }
    println!("backup {id} verified: every object present, sizes and checksums right ({})", HumanBytes(found.bytes()));
    Ok(())
}

pub async fn delete(id: Option<&str>, keep: Option<usize>, from: &str) -> Result<()> {
    let location = open(from)?;
    let listed = catalog::list(&location).await?;
    let gone = catalog::plan_delete(&listed, id, keep)?;
    if gone.is_empty() {
        println!("nothing to delete");
    }
    for id in gone {
        catalog::delete(&location, &id).await?;
        println!("deleted backup {id}");
    }
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> Result<()> {
    let mut config = Config {
        data_dir: args.data_dir.clone(),
        initial_cluster: args.initial_cluster.clone(),
        offline_store: args.offline_store.map(|s| absolute_location(&s)),
        ..Config::default()
    };
    config.advertise = args.advertise;
    let started = Instant::now();
    let bar = bar();
    let key = args.encrypt_key.as_deref().map(BackupKey::read).transpose()?;
    let from = absolute_location(&args.from);
    let restored =
        quiver_backup::restore::restore(&config, &from, &args.id, key.as_ref(), args.force, |p| show_progress(&bar, p))
            .await;
    bar.finish_and_clear();
    let restored = restored?;
    println!(
        "restored backup {} into {} as node {} in {:.1}s: {} group(s), {} rows, {} offline file(s) copied",
        args.id,
        args.data_dir.display(),
        restored.node_id,
        started.elapsed().as_secs_f64(),
        restored.groups.len(),
        restored.rows,
        restored.offline_copied
    );
    let mut start = format!("quiver-node --data-dir {} --listen {}", args.data_dir.display(), restored.address);
    if !args.initial_cluster.is_empty() {
        start += &format!(" --initial-cluster {}", args.initial_cluster.join(","));
    }
    if args.initial_cluster.len() > 1 {
        // Without TLS the members prove themselves with one secret (with TLS, omit it).
        start += " --cluster-secret <one file for every member>";
    }
    if let Some(store) = &config.offline_store {
        start += &format!(" --offline-store {store}");
    }
    println!("start it with: {start}");
    Ok(())
}
