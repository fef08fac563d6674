//! Feature statistics and drift, computed from mergeable summaries.
//!
//! A [`FeatureSummary`] is built once per offline file and feature by [`FeatureSummary::observe`],
//! stored (serde + bincode) per feature set and day, and merged on read for any date range, so
//! statistics are never recomputed from raw rows. [`drift()`] compares two summaries of one feature.
//!
//! Every sketch here is deterministic: the same values in the same order, and the same merges,
//! give byte-identical summaries on every node.

mod categorical;
mod drift;
mod embedding;
mod moments;
mod numeric;
mod report;
mod sketch_image;
mod summary;
#[cfg(test)]
mod testdata;

pub use categorical::{CategoricalStats, TOP_VALUES};
pub use drift::{
    DriftMetrics, DriftStatus, DriftThresholds, PSI_EPSILON, Threshold, drift, hellinger, js_distance, psi, status, tvd,
};
pub use embedding::{EmbeddingStats, MAX_EMBEDDING_DIMS};
pub use moments::Moments;
pub use numeric::{HistogramBin, NumericStats};
pub use report::{
    DriftReport, DriftTarget, FeatureDrift, FeatureStatistics, Quantile, Statistics, StatsWindow, TopValue,
};
pub use summary::FeatureSummary;
