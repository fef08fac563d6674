//! Node configuration: serde defaults, overridden by a TOML file, then by `QUIVER_*`
//! environment variables and flags (see `main.rs`), then validated with messages that
//! name the setting at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id in every Raft group; unique in the cluster.
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// gRPC address for clients and peers.
    pub listen: SocketAddr,
    /// HTTP address for `/health` and `/metrics`.
    pub http: SocketAddr,
    /// Address peers use to reach this node (Raft, forwarding); defaults to `listen`.
    pub advertise: Option<String>,
    /// Address clients use to reach this node, handed out in shard maps and leader hints
    /// (as etcd's advertise-client-urls); defaults to `advertise`. Set it when clients
    /// reach the node by another name than its peers do (a published container port).
    pub advertise_client: Option<String>,
    /// Addresses of the members that form a new cluster together, this node's among them;
    /// node ids follow the list's order (1, 2, 3…). Empty: a single-node cluster.
    pub initial_cluster: Vec<String>,
    /// Address of any member of a running cluster to join on the first start (the
    /// cluster hands out the node id); ignored once this node has an identity.
    pub join: Option<String>,
    /// Without TLS, the file holding the secret members prove themselves to each other with
    /// (see `trust::secret`): given to every member of an initial cluster of several, and to a
    /// node that joins; copied into the data dir on the first start.
    pub cluster_secret: Option<PathBuf>,
    /// Shards laid out when the cluster is first initialised; ignored afterwards.
    pub shards: u64,
    /// Where Parquet files go: a directory, `s3://bucket/prefix`, or `memory://`;
    /// defaults to `<data_dir>/offline`.
    pub offline_store: Option<String>,
    /// Endpoint and credentials for an `s3://` offline store (else the `AWS_*` variables).
    pub s3: quiver_offline::store::S3Settings,
    pub raft: RaftConfig,
    pub workers: WorkerConfig,
    pub ingest: IngestConfig,
    pub offline: OfflineConfig,
    pub sharding: ShardingConfig,
    pub backup: BackupConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub online: OnlineConfig,
    /// Listen on an address other machines reach without TLS and authentication. Without it
    /// a node bound to a non-loopback address refuses to start unless both are on.
    pub insecure: bool,
}

/// Bearer tokens (see `auth`): who may read and write which project, and the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every request but `/health` needs a valid token; off, anyone who reaches the ports
    /// may do anything (the node says so in its log).
    pub enabled: bool,
    /// Serve `/metrics` without a token, for a scraper that cannot send one.
    pub open_metrics: bool,
    /// How long audit log entries are kept, e.g. `365d`: read by the first member when the
    /// cluster forms (the retention is the cluster's; `quiverctl audit retention` changes it).
    pub audit_retention: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { enabled: false, open_metrics: false, audit_retention: "365d".into() }
    }
}

impl AuthConfig {
    pub fn audit_retention(&self) -> Result<Duration> {
        match humantime::parse_duration(self.audit_retention.trim()) {
            Ok(d) if d >= Duration::from_secs(86_400) => Ok(d),
            Ok(_) => Err(Error::Config("auth.audit_retention must be a day or longer".into())),
            Err(e) => {
                Err(Error::Config(format!("auth.audit_retention = {:?}: {e} (e.g. \"365d\")", self.audit_retention)))
            }
        }
    }
}

/// The online store's serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// Memory for the rows online reads got lately (`storage::row_cache`), in MiB; 0: none.
    pub row_cache_mib: u64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig { row_cache_mib: 256 }
    }
}

impl OnlineConfig {
    pub fn row_cache_bytes(&self) -> usize {
        usize::try_from(self.row_cache_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// What one caller (token) may send, so one client cannot starve the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second one token may send on average; 0: no limit.
    pub requests_per_sec: u32,
    /// Requests a token may send at once above its rate, after a quiet spell.
    pub burst: u32,
    /// Bytes one request may carry; 0: only the server's message limit.
    pub max_request_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { requests_per_sec: 0, burst: 100, max_request_bytes: 0 }
    }
}

/// TLS on the gRPC port and between nodes (see `tls`); all three or none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// This node's certificate (PEM), also presented to its peers.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// The cluster's CA (PEM): peers' certificates, and clients' when they present one, are
    /// checked against it.
    pub ca: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.ca.is_some()
    }
}

/// Backups: how fast they write, and a schedule the metadata leader keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where scheduled backups go: a directory on the metadata leader's machine, or
    /// `s3://bucket/prefix` (with `[s3]`); empty: no schedule.
    pub to: String,
    /// How often a scheduled backup is made, e.g. `6h` or `1d`.
    pub every: String,
    /// Complete scheduled backups kept in `to`, with what they build on; 0 keeps all.
    pub keep: usize,
    /// One scheduled backup in this many is full, the others incremental; 1: all full.
    pub full_every: u32,
    /// MiB a backup writes per second at most, so it leaves the disks and network to
    /// normal traffic; 0: no limit.
    pub max_mib_per_sec: u64,
    /// A key file (`quiverctl backup new-key`): scheduled backups are encrypted with it.
    pub encrypt_key: Option<PathBuf>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            to: String::new(),
            every: "1d".into(),
            keep: 7,
            full_every: 1,
            max_mib_per_sec: 0,
            encrypt_key: None,
        }
    }
}

impl BackupConfig {
    /// The schedule's period, when there is a schedule.
    pub fn every(&self) -> Result<Option<Duration>> {
        if self.to.trim().is_empty() {
            return Ok(None);
        }
        match humantime::parse_duration(self.every.trim()) {
            Ok(every) if !every.is_zero() => Ok(Some(every)),
            Ok(_) => Err(Error::Config("backup.every must be longer than 0".into())),
            Err(e) => Err(Error::Config(format!("backup.every = {:?}: {e} (e.g. \"6h\", \"1d\")", self.every))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    /// The metadata leader moves shard leaderships until they are spread evenly over the
    /// nodes; off, they move only on `quiverctl shard rebalance` or `transfer-leader`.
    pub balance_leaders: bool,
    /// A shard's leader asks for a split of its shard (at the median key) once it holds
    /// more rows than this; 0 turns automatic splits off.
    pub split_above_rows: u64,
    /// How often shard leaders count their rows for `split_above_rows`.
    pub split_check_interval_ms: u64,
    /// A merge whose lower shard has not begun absorbing the upper one by then (the upper
    /// shard's rows still waiting for export, or its replica there behind) is abandoned,
    /// and the upper shard serves its range again.
    pub merge_deadline_ms: u64,
    /// A node silent this long (e.g. "5m", CockroachDB's default) is taken for dead: its
    /// replicas are made again on live nodes, and a replica move to it is rolled back. A
    /// node that comes back drops its stale copies.
    pub replace_dead_after: String,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig {
            balance_leaders: true,
            split_above_rows: 0,
            split_check_interval_ms: 10_000,
            merge_deadline_ms: 120_000,
            replace_dead_after: "5m".into(),
        }
    }
}

impl ShardingConfig {
    pub fn replace_dead_after(&self) -> Result<Duration> {
        match humantime::parse_duration(self.replace_dead_after.trim()) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            Ok(_) => Err(Error::Config("sharding.replace_dead_after must be a second or longer".into())),
            Err(e) => Err(Error::Config(format!(
                "sharding.replace_dead_after = {:?}: {e} (e.g. \"5m\")",
                self.replace_dead_after
            ))),
        }
    }
}

/// Training sets: how much memory a join may take before its events spill to disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Memory one feature set's join may take, e.g. `4GiB`, `512MiB`, or `25%` of the
    /// machine's memory; a join whose spine needs more partitions it and spills its events.
    pub retrieval_memory: String,
    /// Where spilled partitions go; defaults to `<data_dir>/spill`.
    pub spill_dir: Option<PathBuf>,
    /// A training set of at least this many spine rows is split over the cluster's nodes
    /// that share this node's offline store; a smaller one is joined here alone.
    pub split_min_rows: u64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { retrieval_memory: "25%".into(), spill_dir: None, split_min_rows: 100_000 }
    }
}

impl OfflineConfig {
    /// `retrieval_memory` in bytes.
    pub fn retrieval_bytes(&self) -> Result<u64> {
        let text = self.retrieval_memory.trim();
        let bad = || {
            Error::Config(format!(
                "offline.retrieval_memory = '{text}': give bytes with a unit (512MiB, 4GiB) or a share of the \
                 machine's memory (25%)"
            ))
        };
        if let Some(percent) = text.strip_suffix('%') {
            let share: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(share > 0.0 && share <= 100.0) {
                return Err(bad());
            }
            return Ok((machine_memory() as f64 * share / 100.0) as u64);
        }
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let number: u64 = text[..digits].parse().map_err(|_| bad())?;
        let unit = match text[digits..].trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(bad()),
        };
        match number.checked_mul(unit) {
            Some(bytes) if bytes > 0 => Ok(bytes),
            _ => Err(bad()),
        }
    }
}

/// The machine's memory (Linux `MemTotal`); 4 GiB where it cannot be read.
fn machine_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|rest| {
        rest.trim().strip_suffix("kB").and_then(|kib| kib.trim().parse::<u64>().ok()).map(|kib| kib << 10)
    });
    total.unwrap_or(4 << 30)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How far ahead of this node's clock an event time may be, for clocks that run ahead;
    /// pushed, ingested and materialized rows stamped later are refused.
    pub max_future_ms: u64,
    /// With authentication on, the only places an ingest may read: local directories and
    /// `s3://bucket/prefix` URLs (none by default; the node's own data never). Without it,
    /// any path the node can read (see `offline::source_policy`).
    pub allow: Vec<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_future_ms: 86_400_000, allow: Vec::new() }
    }
}

impl IngestConfig {
    pub fn max_future(&self) -> Duration {
        Duration::from_millis(self.max_future_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How often shard leaders export written rows to the offline store.
    pub export_interval_ms: u64,
    /// Rows per export file (at most).
    pub export_batch_rows: usize,
    /// How often the metadata leader looks for small files to compact.
    pub compaction_interval_ms: u64,
    /// A feature set's day is compacted once it has this many files.
    pub compaction_min_files: usize,
    /// How long replaced files stay in the store before they are deleted.
    pub compaction_grace_ms: u64,
    /// How often the metadata leader plans replica moves and shard leaders carry them out.
    pub placement_interval_ms: u64,
    /// How often the metadata leader summarizes new offline files.
    pub statistics_interval_ms: u64,
    /// Share of online reads whose served values are summarized (serving logs), 0 to 1.
    pub serving_sample_rate: f64,
    /// How often a node records its serving-log summaries in the meta group.
    pub serving_flush_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            export_interval_ms: 1000,
            export_batch_rows: 100_000,
            compaction_interval_ms: 30_000,
            compaction_min_files: 4,
            compaction_grace_ms: 600_000,
            placement_interval_ms: 500,
            statistics_interval_ms: 1000,
            serving_sample_rate: 0.01,
            serving_flush_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub logs_to_keep: u64,
    /// Linearizable reads within half the shortest election timeout of a confirmed
    /// leadership skip the quorum round (a lease; relies on clocks ticking at similar rates).
    pub lease_reads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("./quiver-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            http: SocketAddr::from(([127, 0, 0, 1], 7080)),
            advertise: None,
            advertise_client: None,
            initial_cluster: Vec::new(),
            join: None,
            cluster_secret: None,
            shards: 8,
            offline_store: None,
            s3: Default::default(),
            raft: RaftConfig::default(),
            workers: WorkerConfig::default(),
            ingest: IngestConfig::default(),
            offline: OfflineConfig::default(),
            sharding: ShardingConfig::default(),
            backup: BackupConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            online: OnlineConfig::default(),
            insecure: false,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 400,
            snapshot_every: 10_000,
            logs_to_keep: 1_000,
            lease_reads: true,
        }
    }
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))
    }

    /// What a training set's join may hold, and where it spills beyond it.
    pub fn retrieval_memory(&self) -> Result<quiver_offline::spill::Memory> {
        Ok(quiver_offline::spill::Memory { budget: self.offline.retrieval_bytes()?, spill_dir: self.spill_dir() })
    }

    /// Where retrievals spill and ingests stage their files.
    pub fn spill_dir(&self) -> PathBuf {
        self.offline.spill_dir.clone().unwrap_or_else(|| self.data_dir.join("spill"))
    }

    pub fn offline_location(&self) -> String {
        self.offline_store.clone().unwrap_or_else(|| self.data_dir.join("offline").display().to_string())
    }

    /// The members a new cluster starts with, by node id: the `initial_cluster` list, or
    /// this node alone.
    pub fn initial_members(&self) -> Result<BTreeMap<u64, String>> {
        if self.initial_cluster.is_empty() {
            return Ok(BTreeMap::from([(self.node_id, self.advertise_addr())]));
        }
        Ok(self.initial_cluster.iter().enumerate().map(|(i, addr)| (i as u64 + 1, addr.clone())).collect())
    }

    /// With an initial cluster, a node's id is its place in the list; it must be there.
    pub fn resolve_node_id(&mut self) -> Result<()> {
        if self.initial_cluster.is_empty() {
            return Ok(());
        }
        let me = self.advertise_addr();
        let position = self.initial_cluster.iter().position(|a| *a == me).ok_or_else(|| {
            Error::Config(format!(
                "this node's address {me} is not in initial_cluster ({}); give the same list to every member \
                 and set --listen or --advertise to this node's entry",
                self.initial_cluster.join(",")
            ))
        })?;
        self.node_id = position as u64 + 1;
        Ok(())
    }

    pub fn advertise_addr(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }

    pub fn client_addr(&self) -> String {
        self.advertise_client.clone().unwrap_or_else(|| self.advertise_addr())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.node_id == 0 {
            return bad("node_id must be 1 or more".into());
        }
        if self.shards == 0 || self.shards > 4096 {
            return bad(format!("shards = {} must be between 1 and 4096", self.shards));
        }
        if self.join.is_some() && !self.initial_cluster.is_empty() {
            return bad(
                "give either join (to enter a running cluster) or initial_cluster (to form one), not both".into()
            );
        }
        if self.listen == self.http {
            return bad(format!("listen and http are both {}; give them different ports", self.listen));
        }
        let t = &self.tls;
        if t.enabled() && (t.cert.is_none() || t.key.is_none() || t.ca.is_none()) {
            return bad("tls.cert, tls.key and tls.ca go together (--tls-cert, --tls-key, --tls-ca): \
                        the node serves its certificate and checks its peers' against the cluster's CA"
                .into());
        }
        let exposed = [self.listen, self.http].into_iter().find(|a| !a.ip().is_loopback());
        let secured = t.enabled() && self.auth.enabled;
        if let Some(addr) = exposed.filter(|_| !(self.insecure || secured)) {
            return bad(format!(
                "refusing to listen on {addr}, which other machines reach, without TLS and authentication: give \
                 --tls-cert, --tls-key, --tls-ca and --auth ([tls], [auth] enabled = true), or --insecure to run \
                 open anyway"
            ));
        }
        self.backup.every()?;
        self.auth.audit_retention()?;
        self.offline.retrieval_bytes()?;
        if self.backup.full_every == 0 {
            return bad("backup.full_every must be 1 or more (1: every scheduled backup is full)".into());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return bad(format!(
                "raft.election_timeout_min_ms ({}) must exceed raft.heartbeat_ms ({}), which must be above 0",
                r.election_timeout_min_ms, r.heartbeat_ms
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return bad(format!(
                "raft.election_timeout_max_ms ({}) must exceed raft.election_timeout_min_ms ({})",
                r.election_timeout_max_ms, r.election_timeout_min_ms
            ));
        }
        self.sharding.replace_dead_after()?;
        if self.sharding.merge_deadline_ms < 1_000 {
            let deadline = self.sharding.merge_deadline_ms;
            return bad(format!("sharding.merge_deadline_ms = {deadline} must be 1000 or more: a merge needs time"));
        }
        let w = &self.workers;
        let every = [
            w.export_interval_ms,
            w.export_batch_rows as u64,
            w.compaction_interval_ms,
            w.placement_interval_ms,
            w.statistics_interval_ms,
            w.serving_flush_ms,
        ];
        if every.contains(&0) {
            return bad("workers.export_interval_ms, export_batch_rows, compaction_interval_ms, \
                        placement_interval_ms, statistics_interval_ms and serving_flush_ms must be 1 or more"
                .into());
        }
        if w.compaction_min_files < 2 {
            return bad(format!("workers.compaction_min_files = {} must be 2 or more", w.compaction_min_files));
        }
        if !(0.0..=1.0).contains(&w.serving_sample_rate) {
            return bad(format!("workers.serving_sample_rate = {} must be between 0 and 1", w.serving_sample_rate));
        }
        if r.snapshot_every == 0 {
            return bad("raft.snapshot_every must be 1 or more".into());
        }
        Ok(())
    }

    pub fn openraft(&self) -> Result<openraft::Config> {
        /// Log entries per AppendEntries (see below).
        const MAX_ENTRIES_PER_APPEND: u64 = 64;
        let r = &self.raft;
        let config = openraft::Config {
            cluster_name: "quiver".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_every),
            max_in_snapshot_log_to_keep: r.logs_to_keep,
            // openraft gives an AppendEntries one heartbeat interval to answer. A follower
            // catching up on a busy node could not store openraft's default 300 entries in
            // that time, so every batch was sent again until the node was idle (the fault
            // suite's overloaded runs never caught up); smaller batches each make progress.
            max_payload_entries: MAX_ENTRIES_PER_APPEND,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(format!("raft: {e}")))
    }

    /// How long a confirmed leadership serves linearizable reads without another round.
    pub fn read_lease(&self) -> Duration {
        let r = &self.raft;
        if r.lease_reads { Duration::from_millis(r.election_timeout_min_ms / 2) } else { Duration::ZERO }
    }

    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.raft.election_timeout_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c = Config::from_toml("shards = 4\n[raft]\nsnapshot_every = 50\n", "test").unwrap();
        assert_eq!((c.shards, c.raft.snapshot_every, c.node_id), (4, 50, 1));
        assert_eq!(c.ingest.max_future(), Duration::from_secs(86_400), "one day unless set");
        let c = Config::from_toml("[offline]\nretrieval_memory = \"512MiB\"\n", "test").unwrap();
        assert_eq!(c.offline.retrieval_bytes().unwrap(), 512 << 20);
        assert!(Config::default().offline.retrieval_bytes().unwrap() > 0, "a quarter of the machine by default");
        for wrong in ["", "12 apples", "0GiB", "150%", "-1MiB"] {
            let c = OfflineConfig { retrieval_memory: wrong.into(), ..OfflineConfig::default() };
            assert!(c.retrieval_bytes().unwrap_err().to_string().contains("offline.retrieval_memory"), "{wrong}");
        }
        let c = Config::from_toml("[ingest]\nmax_future_ms = 60000\n", "test").unwrap();
        assert_eq!(c.ingest.max_future(), Duration::from_secs(60));
        let err = Config::from_toml("shard = 4\n", "quiver.toml").unwrap_err().to_string();
        assert!(err.contains("quiver.toml") && err.contains("shard"), "{err}");
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = Config::default();
        c.raft.election_timeout_min_ms = 50;
        assert!(c.validate().unwrap_err().to_string().contains("election_timeout_min_ms"));
        let c = Config { shards: 0, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("shards"));
        assert!(Config::default().validate().is_ok());
        assert!(Config::default().openraft().is_ok());
        let c = Config::from_toml("[backup]\nto = \"/b\"\nevery = \"soon\"\n", "t").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("backup.every"));
        let c = Config::from_toml("[backup]\nto = \"/b\"\nevery = \"6h\"\n", "t").unwrap();
        assert_eq!(c.backup.every().unwrap(), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(Config::default().backup.every().unwrap(), None, "no schedule without a location");
    }

    #[test]
    fn an_exposed_address_needs_tls_and_auth_or_insecure() {
        let exposed = Config { listen: SocketAddr::from(([0, 0, 0, 0], 7070)), ..Config::default() };
        let err = exposed.validate().unwrap_err().to_string();
        assert!(err.contains("0.0.0.0:7070") && err.contains("--insecure"), "{err}");
        let mut secured = exposed.clone();
        secured.tls = TlsConfig { cert: Some("c".into()), key: Some("k".into()), ca: Some("a".into()) };
        assert!(secured.validate().is_err(), "TLS alone is not enough");
        secured.auth.enabled = true;
        assert!(secured.validate().is_ok());
        assert!(Config { insecure: true, ..exposed }.validate().is_ok());
        let http = Config { http: SocketAddr::from(([10, 0, 0, 1], 7080)), ..Config::default() };
        assert!(http.validate().is_err(), "the HTTP port counts too");
    }
}
