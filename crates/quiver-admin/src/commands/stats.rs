//! `stats` and `drift`: feature statistics and how they moved.

use anyhow::{Result, bail};
use quiver_admin::input;
use quiver_admin::render;
use quiver_admin::render::format::Format;
use quiver_client::{Client, DriftTarget, StatsWindow};

/// The window of `stats`: `--window`, or else offline rows between `--from` and `--to`.
pub fn window(from: Option<String>, to: Option<String>, window: Option<String>) -> Result<StatsWindow> {
    Ok(match window {
        Some(spec) => input::parse_window(&spec)?,
        None => StatsWindow::Offline {
            from: from.as_deref().map(input::parse_time).transpose()?,
            to: to.as_deref().map(input::parse_time).transpose()?,
        },
    })
}

pub async fn stats(
    client: &Client,
    project: &str,
    feature_set: &str,
    window: &StatsWindow,
    format: Format,
) -> Result<()> {
    let stats = client.statistics(project, feature_set, window).await?;
    print!("{}", render::format::answer(format, &stats, render::stats::statistics_table)?);
    Ok(())
}

/// The target of `drift`: `--feature-set` or `--vector`.
pub fn target(feature_set: Option<String>, vector: Option<String>) -> Result<DriftTarget> {
    Ok(match (feature_set, vector) {
        (Some(s), _) => DriftTarget::FeatureSet(s),
        (None, Some(v)) => DriftTarget::Vector(v),
        (None, None) => bail!("give --feature-set or --vector"),
    })
}

/// Drift of the target's features between two windows given as `FROM..TO`, `dataset:NAME`
/// or `serving[:FROM..TO]`.
pub async fn drift(
    client: &Client,
    project: &str,
    target: &DriftTarget,
    (reference, current): (&str, &str),
    format: Format,
) -> Result<()> {
    let (reference, current) = (input::parse_window(reference)?, input::parse_window(current)?);
    let report = client.drift(project, target, &reference, &current).await?;
    print!("{}", render::format::answer(format, &report, render::stats::drift_table)?);
    Ok(())
}
