//! What `quiverctl` accepts: global options, commands and their arguments.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use quiver_admin::input::RowFormat;
use quiver_admin::render::format::Format;
use quiver_client::FeatureSelection;

#[derive(Parser)]
#[command(name = "quiverctl", version, about = "Command-line client and admin tool for Quiver")]
pub struct Cli {
    /// gRPC endpoint of a Quiver node.
    #[arg(long, global = true, env = "QUIVER_ENDPOINT", default_value = "http://127.0.0.1:7070")]
    pub endpoint: String,
    /// The cluster's CA (PEM): talk TLS to nodes whose certificates it signed (https://).
    #[arg(long, global = true, env = "QUIVER_CA")]
    pub ca: Option<PathBuf>,
    /// A token for a cluster with authentication on (`token create`; a new cluster's first
    /// member writes a cluster admin's to <data-dir>/admin.token).
    #[arg(long, global = true, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Project to work in; may be left out when only one project exists.
    #[arg(long, global = true, env = "QUIVER_PROJECT")]
    pub project: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Apply definitions from a YAML file (idempotent).
    Apply {
        /// The YAML file of entities, feature sets and vectors.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List what a project declares (every project when none is chosen), or its datasets.
    List {
        /// What to list instead of the declarations.
        #[arg(value_enum)]
        what: Option<Listing>,
    },
    /// Show one entity, feature set (NAME or NAME@VERSION) or feature vector.
    Describe {
        /// What NAME is.
        kind: Kind,
        /// Its name (a feature set's as NAME or NAME@VERSION).
        name: String,
    },
    /// Write rows of a feature set from a JSON-lines or CSV file ('-' reads stdin).
    Push {
        /// The feature set the rows are of (NAME or NAME@VERSION).
        #[arg(long)]
        feature_set: String,
        /// The rows: a .csv or JSON-lines file, or - for stdin.
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
        /// The feature set the rows are of.
        #[arg(long)]
        feature_set: String,
        /// A file, a directory of them, or s3://bucket/key (read by the node).
        path: String,
    },
    /// Build a point-in-time-correct training set from a spine of entity keys and times.
    History {
        /// Comma-separated references: set:feature, set@2:feature, set:*.
        #[arg(long, conflicts_with = "vector", required_unless_present = "vector")]
        features: Option<String>,
        /// A feature vector name, instead of --features.
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
        /// The feature set to load.
        #[arg(long)]
        feature_set: String,
        /// Event times from (RFC 3339 time or integer microseconds) [default: the first].
        #[arg(long)]
        start: Option<String>,
        /// Event times before (RFC 3339 time or integer microseconds) [default: no end].
        #[arg(long)]
        end: Option<String>,
    },
    /// List the committed offline Parquet files of a feature set.
    Files {
        /// The feature set whose files to list.
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
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// linearizable (every write acknowledged before is seen), or stale (any replica
        /// answers, with a bound on how far behind it may be).
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
    },
    /// Show the node, the cluster's nodes and every Raft group with its leader and indexes.
    Status {
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Statistics of every feature of a feature set, merged from recorded summaries.
    Stats {
        /// The feature set whose statistics to show.
        #[arg(long)]
        feature_set: String,
        /// Event times from (a date, RFC 3339 or µs).
        #[arg(long)]
        from: Option<String>,
        /// Event times before (a date, RFC 3339 or µs).
        #[arg(long)]
        to: Option<String>,
        /// Instead of --from/--to: FROM..TO, dataset:NAME or serving[:FROM..TO].
        #[arg(long, conflicts_with_all = ["from", "to"])]
        window: Option<String>,
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drift of each feature between a reference and a current window: PSI, KS,
    /// Jensen–Shannon, Hellinger, TVD and a status.
    Drift {
        /// The feature set to compare.
        #[arg(long, required_unless_present = "vector", conflicts_with = "vector")]
        feature_set: Option<String>,
        /// A feature vector to compare, every feature set of it.
        #[arg(long)]
        vector: Option<String>,
        /// FROM..TO, dataset:NAME or serving[:FROM..TO].
        #[arg(long)]
        reference: String,
        /// FROM..TO or serving[:FROM..TO].
        #[arg(long)]
        current: String,
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cluster membership.
    Node {
        #[command(subcommand)]
        action: NodeCmd,
    },
    /// The cluster as a whole: upgrades.
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
    },
    /// Show the shard map: hash ranges, epochs, replicas and leaders, and shard operations
    /// under way and recently ended.
    Shards {
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Change the shard map of a running cluster: each command says what it will do and
    /// follows the operation to its end unless --no-wait.
    Shard {
        #[command(subcommand)]
        action: ShardCmd,
    },
    /// Consistent backups of the whole cluster to a directory or s3://bucket/prefix, and
    /// restores of them into new clusters.
    Backup {
        #[command(subcommand)]
        action: BackupCmd,
    },
    /// Tokens: who may read and write which project (with authentication on).
    Token {
        #[command(subcommand)]
        action: TokenCmd,
    },
    /// The audit log, oldest first: changes, token and cluster operations, refused requests
    /// and reads of personal features (a project's with --project, else every project's).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        action: Option<AuditCmd>,
        /// From this time: RFC 3339, a date, µs, or a duration ago (e.g. 1h).
        #[arg(long)]
        since: Option<String>,
        /// Only what this token (by name) did.
        #[arg(long)]
        actor: Option<String>,
        /// The newest this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A CA and node certificates for TLS, for a test or a small deployment.
    Cert {
        #[command(subcommand)]
        action: CertCmd,
    },
    /// Start a throwaway node, apply the examples, push rows and read a feature vector.
    Demo,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the audit log's hash chain in a stopped node's data dir (or a restored backup's):
    /// names the first entry edited, removed or moved.
    Verify {
        /// The data dir of a stopped node.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// How long the cluster keeps audit entries, e.g. 90d (a cluster admin's; a day at least).
    Retention {
        /// How long, e.g. 90d or 2w.
        #[arg(value_parser = humantime::parse_duration)]
        keep: std::time::Duration,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issue a token with a role on the project (--project or QUIVER_PROJECT), or a cluster
    /// admin's (--role cluster-admin); prints the token alone on its last line.
    Create {
        /// A name for the token, unique in the cluster (audit entries and `revoke` use it).
        #[arg(long)]
        name: String,
        /// viewer (reads), writer (+ push, ingest, materialize), admin (+ apply, datasets,
        /// the project's tokens), or cluster-admin (everything, every project).
        #[arg(long, value_enum)]
        role: TokenRole,
        /// How long it is valid, e.g. 30d or 12h [default: until revoked].
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// May read features tagged pii.
        #[arg(long)]
        pii: bool,
    },
    /// The tokens of the project (--project), or all you administer, revoked ones too.
    List {
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a token by name; every node refuses it within moments.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum TokenRole {
    Viewer,
    Writer,
    Admin,
    ClusterAdmin,
}

#[derive(Subcommand)]
// The commands are named as users type them: `cert create-ca`, `create-node`, `create-client`.
#[allow(clippy::enum_variant_names)]
pub enum CertCmd {
    /// Write a new CA: ca.pem (give it to nodes as --tls-ca and to clients as --ca) and
    /// ca.key (keep it private: it signs node certificates).
    CreateCa {
        /// The directory to write ca.pem and ca.key into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write NAME.pem and NAME.key, a member certificate signed by the CA in --ca-dir for
    /// the --host names and addresses the node is reached at (nodes present it to each
    /// other; only it admits a caller to the RPCs between nodes). Valid 365 days.
    CreateNode {
        /// The certificate's name, and the files' (NAME.pem, NAME.key).
        name: String,
        /// The directory `cert create-ca` wrote ca.pem and ca.key into.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The directory to write NAME.pem and NAME.key into.
        #[arg(long)]
        out: PathBuf,
        /// A DNS name or IP address of the node; repeat for more [default: 127.0.0.1,
        /// localhost and NAME].
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Write NAME.pem and NAME.key, a client certificate signed by the CA in --ca-dir, for a
    /// client that must present one; never a member's. Valid 90 days.
    CreateClient {
        /// The certificate's name, and the files' (NAME.pem, NAME.key).
        name: String,
        /// The directory `cert create-ca` wrote ca.pem and ca.key into.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The directory to write NAME.pem and NAME.key into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Back up the cluster: the registry, statistics and shard map, every shard's online
    /// rows (each at one Raft index) and the offline files, with a progress bar; writes go
    /// on meanwhile. The catalog is written last, so a backup that dies is never complete.
    Create {
        /// A directory on the connected node's machine, or s3://bucket/prefix (the node's
        /// S3 settings).
        #[arg(long)]
        to: String,
        /// Store only what changed since the newest complete backup in --to.
        #[arg(long)]
        incremental: bool,
        /// Copy the offline Parquet files into the backup [default: unless --to is the
        /// offline store itself].
        #[arg(long, conflicts_with = "no_copy_offline")]
        copy_offline: bool,
        /// Only list the offline files, with checksums: they stay in the offline store.
        #[arg(long)]
        no_copy_offline: bool,
        /// Encrypt every object of the backup (AES-256-GCM) with the key in FILE
        /// (`backup new-key`); verify and restore then need it.
        #[arg(long, value_name = "FILE")]
        encrypt_key: Option<PathBuf>,
    },
    /// Write a new backup key to FILE (readable by you only), for --encrypt-key.
    NewKey {
        /// Where to write the key (a new file).
        file: PathBuf,
    },
    /// The backups in a location, complete or not.
    List {
        /// The location: a directory on this machine, or s3://bucket/prefix (S3 settings from
        /// the AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server).
        #[arg(long)]
        from: String,
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One backup: when, the Raft index each group was cut at, sizes, rows, what it builds on.
    Describe {
        /// The backup's id (`backup list`).
        id: String,
        /// The location: a directory on this machine, or s3://bucket/prefix (S3 settings from
        /// the AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server).
        #[arg(long)]
        from: String,
        /// table for people, json (one object per line) for programs.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read every object of a backup and check its size and checksum; fails naming each
    /// object that is missing or damaged.
    Verify {
        /// The backup's id (`backup list`).
        id: String,
        /// The location: a directory on this machine, or s3://bucket/prefix (S3 settings from
        /// the AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server).
        #[arg(long)]
        from: String,
        /// The key an encrypted backup was made with.
        #[arg(long, value_name = "FILE")]
        encrypt_key: Option<PathBuf>,
    },
    /// Delete one backup (refused while an incremental backup builds on it), or with
    /// --keep N all but the newest N complete ones and what those build on.
    Delete {
        /// The backup's id (`backup list`).
        #[arg(required_unless_present = "keep", conflicts_with = "keep")]
        id: Option<String>,
        /// Keep the newest N complete backups, and what they build on.
        #[arg(long)]
        keep: Option<usize>,
        /// The location: a directory on this machine, or s3://bucket/prefix (S3 settings from
        /// the AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server).
        #[arg(long)]
        from: String,
    },
    /// Write a new node's data dir from a backup (checked as it is read); run it for each
    /// member of the new cluster with the same --initial-cluster, then start the nodes.
    Restore(RestoreArgs),
}

/// What `backup restore` restores, and where.
#[derive(Args)]
pub struct RestoreArgs {
    /// The backup's id (`backup list`).
    pub id: String,
    /// The location: a directory on this machine, or s3://bucket/prefix (S3 settings from
    /// the AWS_* variables, AWS_ENDPOINT_URL for an S3-compatible server).
    #[arg(long)]
    pub from: String,
    /// An empty (or new) directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Comma-separated addresses of the new cluster's members, as quiver-node takes
    /// them; empty: a single node.
    #[arg(long, value_delimiter = ',')]
    pub initial_cluster: Vec<String>,
    /// This member's address in --initial-cluster (for a single node: the address its
    /// peers would use) [default: 127.0.0.1:7070].
    #[arg(long)]
    pub advertise: Option<String>,
    /// The new cluster's offline store, where the offline files are restored
    /// [default: <data-dir>/offline].
    #[arg(long)]
    pub offline_store: Option<String>,
    /// The key an encrypted backup was made with.
    #[arg(long, value_name = "FILE")]
    pub encrypt_key: Option<PathBuf>,
    /// Restore into the offline store of the cluster the backup was made of: only when
    /// that cluster is gone for good (both would write there).
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Drain a node (its replicas move to the other nodes), then remove it from the cluster;
    /// waits until it is gone unless --no-wait.
    Remove {
        /// The node's id (`quiverctl status`).
        id: u64,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Once every node runs the new release (`quiverctl status`), put its cluster version
    /// in force: members start using what it brings, and a node of an earlier release can
    /// no longer run in the cluster. Refused, naming them, while a node runs an earlier release.
    FinalizeUpgrade,
}

#[derive(Subcommand)]
pub enum ShardCmd {
    /// Move leadership of shard ID to node --to, one of its voters; reads and writes go on.
    TransferLeader {
        /// The shard's id (`quiverctl shards`).
        id: u64,
        /// The node to lead it, one of its voters.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Move shard ID's replica on node --from to node --to (added as a learner, caught up,
    /// made a voter, then the old replica is dropped).
    Move {
        /// The shard's id (`quiverctl shards`).
        id: u64,
        /// The node whose replica moves.
        #[arg(long)]
        from: u64,
        /// The node it moves to, one without a replica of the shard.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Split shard ID's hash range in two: it keeps the lower part, a new shard on the same
    /// replicas takes the upper part (from --at, by default from the median of its keys).
    Split {
        /// The shard's id (`quiverctl shards`).
        id: u64,
        /// First hash of the upper part, decimal or 0x-hex.
        #[arg(long, value_parser = parse_hash)]
        at: Option<u64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Merge two neighbouring shards on the same replicas into one (the inverse of split):
    /// the lower one takes over the upper one's range and rows.
    Merge {
        /// One shard's id (`quiverctl shards`).
        first: u64,
        /// The other's: its neighbour, on the same nodes; either order.
        second: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Spread replicas and leaders evenly over the active nodes, now.
    Rebalance {
        #[command(flatten)]
        wait: Wait,
    },
    /// Cancel operation OP (see `quiverctl shards`): it ends as failed and what it began is
    /// undone; a split cannot be, a merge that began absorbing goes on.
    Cancel {
        /// The operation's id.
        op: u64,
    },
}

fn parse_hash(text: &str) -> std::result::Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(0) => Err("0 is the start of the hash space: no shard can be split there".into()),
        Ok(hash) => Ok(hash),
        Err(e) => Err(format!("{text:?} is not a 64-bit hash (decimal or 0x-hex): {e}")),
    }
}

/// How a command that starts background work waits for it.
#[derive(Args, Clone, Copy)]
pub struct Wait {
    /// Return once the work is recorded; `quiverctl shards` or `status` follow it.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long, e.g. 2m (the work goes on).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    FeatureSet,
    Entity,
    Vector,
    Dataset,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Listing {
    /// Saved training datasets and their lineage.
    Datasets,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReadConsistency {
    Linearizable,
    Stale,
}

/// The features of `--vector NAME` or `--features a:x,b:y`.
pub fn selection(vector: Option<String>, features: Option<String>) -> Result<FeatureSelection> {
    Ok(match (vector, features) {
        (Some(v), _) => FeatureSelection::Vector(v),
        (None, Some(f)) => FeatureSelection::Refs(f.split(',').map(|s| s.trim().to_string()).collect()),
        (None, None) => bail!("give --features or --vector"),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command, named by its path (`backup list --from`),
    /// that `--help` shows without a word on what it is for.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path} {}", arg.get_long().map_or(id.to_string(), |l| format!("--{l}"))));
            }
        }
        for sub in command.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_argument_says_what_it_is_for() {
        let mut missing = Vec::new();
        undocumented(&super::Cli::command(), "quiverctl", &mut missing);
        assert!(missing.is_empty(), "arguments without help:\n{}", missing.join("\n"));
    }
}
