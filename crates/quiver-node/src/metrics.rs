//! Prometheus metrics served at `/metrics` on the HTTP port.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use quiver_store::storage::RowCache;

use crate::groups::Groups;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    admission_refused: IntCounterVec,
    latency: HistogramVec,
    pub rows_written: IntCounter,
    /// Reads of keys another node leads, asked of it for a client (`online::read_shard`).
    pub reads_forwarded: IntCounter,
    pub rows_summarized: IntCounter,
    pub audit_dropped: IntCounter,
    /// Joins running on this node: whole training sets, and parts of ones split over nodes.
    pub joins_running: IntGaugeVec,
    raft_applied: IntGaugeVec,
    raft_leader: IntGaugeVec,
    raft_term: IntGaugeVec,
    linearizable_reads: IntGaugeVec,
    read_index_rounds: IntGaugeVec,
    committed_writes: IntGaugeVec,
    commit_entries: IntGaugeVec,
    row_cache: Arc<RowCache>,
    /// The row cache's hits, misses, bytes and entries, read fresh from it.
    row_cache_gauges: [IntGauge; 4],
}

/// Counts one join in `joins_running` for as long as it lives: dropped with the work when a
/// caller goes away, as when it ends.
pub struct Running(prometheus::IntGauge);

impl Running {
    pub fn new(metrics: &Metrics, kind: &str) -> Running {
        let gauge = metrics.joins_running.with_label_values(&[kind]);
        gauge.inc();
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    #[allow(clippy::expect_used, reason = "the definitions are constants, built by every test that starts a node")]
    pub fn new(row_cache: Arc<RowCache>) -> Metrics {
        Metrics::build(row_cache).expect("metric definitions are valid")
    }

    fn build(row_cache: Arc<RowCache>) -> prometheus::Result<Metrics> {
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["group"]);
        let metrics = Metrics {
            registry: Registry::new_custom(Some("quiver".into()), None)?,
            requests: IntCounterVec::new(
                Opts::new("requests_total", "gRPC requests by method and outcome code"),
                &["method", "code"],
            )?,
            admission_refused: IntCounterVec::new(
                Opts::new("admission_refused_total", "gRPC requests refused on their headers, by outcome code"),
                &["code"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new("request_seconds", "gRPC request latency by method")
                    .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18)?),
                &["method"],
            )?,
            rows_written: IntCounter::new("rows_written_total", "feature rows acknowledged by writes")?,
            reads_forwarded: IntCounter::new(
                "reads_forwarded_total",
                "parts of online reads asked of the leader of their shard on a client's behalf",
            )?,
            rows_summarized: IntCounter::new(
                "rows_summarized_total",
                "offline rows summarized by the statistics worker",
            )?,
            audit_dropped: IntCounter::new(
                "audit_dropped_total",
                "audit entries of refused requests (a count per source and minute) dropped while the audit queue was full",
            )?,
            joins_running: IntGaugeVec::new(
                Opts::new("joins_running", "point-in-time joins running here: training sets, and parts of split ones"),
                &["kind"],
            )?,
            raft_applied: gauge("raft_applied_index", "last applied log index per group")?,
            raft_leader: gauge("raft_current_leader", "node id of each group's leader (0 when unknown)")?,
            raft_term: gauge("raft_term", "current term per group")?,
            linearizable_reads: gauge("raft_linearizable_reads", "linearizable reads per group since start")?,
            read_index_rounds: gauge(
                "raft_read_index_rounds",
                "read-index rounds per group since start (concurrent linearizable reads share one)",
            )?,
            committed_writes: gauge(
                "raft_committed_writes",
                "writes this node committed as leader per group since start",
            )?,
            commit_entries: gauge(
                "raft_commit_entries",
                "log entries that carried those writes (group commit puts many in one)",
            )?,
            row_cache,
            row_cache_gauges: [
                IntGauge::new(
                    "row_cache_hits",
                    "reads of the groups' state trees (online reads, write checks) served from memory since start",
                )?,
                IntGauge::new("row_cache_misses", "reads of the groups' state trees that went to disk since start")?,
                IntGauge::new("row_cache_bytes", "memory the row cache holds ([online] row_cache_mib bounds it)")?,
                IntGauge::new("row_cache_entries", "rows the row cache holds")?,
            ],
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.requests.clone()))?;
        r.register(Box::new(metrics.admission_refused.clone()))?;
        r.register(Box::new(metrics.audit_dropped.clone()))?;
        r.register(Box::new(metrics.latency.clone()))?;
        r.register(Box::new(metrics.rows_written.clone()))?;
        r.register(Box::new(metrics.reads_forwarded.clone()))?;
        r.register(Box::new(metrics.rows_summarized.clone()))?;
        r.register(Box::new(metrics.joins_running.clone()))?;
        r.register(Box::new(metrics.raft_applied.clone()))?;
        r.register(Box::new(metrics.raft_leader.clone()))?;
        r.register(Box::new(metrics.raft_term.clone()))?;
        r.register(Box::new(metrics.linearizable_reads.clone()))?;
        r.register(Box::new(metrics.read_index_rounds.clone()))?;
        r.register(Box::new(metrics.committed_writes.clone()))?;
        r.register(Box::new(metrics.commit_entries.clone()))?;
        for gauge in &metrics.row_cache_gauges {
            r.register(Box::new(gauge.clone()))?;
        }
        Ok(metrics)
    }

    /// Counts and times one request.
    pub fn observe(&self, method: &str, started: Instant, code: &str) {
        self.requests.with_label_values(&[method, code]).inc();
        self.latency.with_label_values(&[method]).observe(started.elapsed().as_secs_f64());
    }

    /// Counts a request admission refused on its headers.
    pub fn admission_refused(&self, code: tonic::Code) {
        self.admission_refused.with_label_values(&[&format!("{code:?}")]).inc();
    }

    /// The text exposition, with Raft gauges read fresh from each group.
    pub fn render(&self, groups: &Groups) -> String {
        for g in groups.all() {
            let m = g.raft.metrics().borrow().clone();
            let label = g.id.to_string();
            self.raft_applied.with_label_values(&[&label]).set(m.last_applied.map_or(0, |l| l.index) as i64);
            self.raft_leader.with_label_values(&[&label]).set(m.current_leader.unwrap_or(0) as i64);
            self.raft_term.with_label_values(&[&label]).set(m.current_term as i64);
            let (reads, rounds) = g.read_index_counts();
            self.linearizable_reads.with_label_values(&[&label]).set(reads as i64);
            self.read_index_rounds.with_label_values(&[&label]).set(rounds as i64);
            let (writes, entries) = g.commit_counts();
            self.committed_writes.with_label_values(&[&label]).set(writes as i64);
            self.commit_entries.with_label_values(&[&label]).set(entries as i64);
        }
        let cache = self.row_cache.stats();
        for (gauge, value) in self.row_cache_gauges.iter().zip([cache.hits, cache.misses, cache.bytes, cache.entries]) {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
