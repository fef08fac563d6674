//! Serving logs: a sample of the values online reads return, summarized in memory per
//! feature set version and day, and recorded in the meta group by the `serving_stats` worker, so
//! what models saw in production can be compared with what they were trained on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use quiver_core::Value;
use quiver_core::stats::FeatureSummary;
use quiver_core::table::TableRef;
use quiver_core::time::day_of;

use quiver_store::records::Summaries;

/// Summaries gathered since the last flush, by (table, day).
type Pending = BTreeMap<(TableRef, i64), (u64, BTreeMap<String, FeatureSummary>)>;

pub struct ServingLog {
    /// Every `every`-th read is sampled (0: none).
    every: u64,
    reads: AtomicU64,
    pending: Mutex<Pending>,
}

/// One value a read returned, as the log needs it.
pub struct Served<'a> {
    pub table: &'a TableRef,
    pub feature: &'a str,
    pub value: &'a Value,
    pub ty: quiver_core::ValueType,
}

impl ServingLog {
    /// `rate` in [0, 1]: the share of reads sampled, taken as every n-th read.
    pub fn new(rate: f64) -> ServingLog {
        let every = if rate <= 0.0 { 0 } else { (1.0 / rate.min(1.0)).round() as u64 };
        ServingLog { every, reads: AtomicU64::new(0), pending: Mutex::default() }
    }

    /// Whether the next read is in the sample.
    pub fn sample(&self) -> bool {
        self.every != 0 && self.reads.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.every)
    }

    /// Adds the values one sampled read served at `now` (µs); one call per entity answered.
    pub fn record<'a>(&self, now: i64, values: impl IntoIterator<Item = Served<'a>>) {
        let day = day_of(now);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut counted = std::collections::BTreeSet::new();
        for served in values {
            let (rows, features) = pending.entry((served.table.clone(), day)).or_default();
            if counted.insert(served.table.clone()) {
                *rows += 1;
            }
            let summary = features.entry(served.feature.to_string()).or_insert_with(|| FeatureSummary::new(served.ty));
            // A value of another type than the summary's cannot come from the store.
            let _ = summary.observe(served.value);
        }
    }

    /// Puts back summaries a flush could not record.
    pub fn restore(&self, table: TableRef, day: i64, stats: Summaries) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (rows, features) = pending.entry((table, day)).or_default();
        *rows += stats.rows;
        let _ = quiver_store::meta::stats::merge_into(features, stats.columns);
    }

    /// Takes what was gathered since the last call.
    pub fn drain(&self) -> Vec<(TableRef, i64, Summaries)> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        pending
            .into_iter()
            .map(|((table, day), (rows, features))| {
                (table, day, Summaries { rows, columns: features.into_iter().collect() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::time::DAY_MICROS;

    use super::*;

    #[test]
    fn a_sample_of_reads_is_summarized_per_table_and_day() {
        let log = ServingLog::new(0.25);
        assert_eq!((0..100).filter(|_| log.sample()).count(), 25);
        assert!(!ServingLog::new(0.0).sample());
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        for x in [1.0, 3.0] {
            let value = Value::Float64(x);
            let served = Served { table: &table, feature: "f", value: &value, ty: quiver_core::ValueType::Float64 };
            log.record(DAY_MICROS * 3 + 5, [served]);
        }
        let drained = log.drain();
        assert_eq!(drained.len(), 1);
        let (t, day, summaries) = &drained[0];
        assert_eq!((t, *day, summaries.rows), (&table, 3, 2));
        assert_eq!(summaries.columns[0].1.mean(), Some(2.0));
        assert!(log.drain().is_empty(), "drained once");
    }
}
