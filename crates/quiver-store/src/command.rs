//! What Raft log entries carry and what applying them answers: the commands of the meta
//! group and of shard groups. A leaf module: the Raft plumbing, the state machines and the
//! node all use these types, and none of them is imported here.

use quiver_core::Value;
use quiver_core::access::{Role, Scope};
use quiver_core::offline::Dataset;
use quiver_core::registry::Change;
use quiver_core::row::WriteSeq;
use quiver_core::shard_map::ShardMap;
use quiver_core::shard_ops::{OpKind, Outcome};
use quiver_core::spec::Definitions;
use quiver_core::stats::DriftReport;
use quiver_core::table::TableRef;
use quiver_offline::files::DataFile;
use serde::{Deserialize, Serialize};

use crate::records::Summaries;
use crate::records::{ExportRange, NodeInfo};
use crate::token::TokenHash;

/// A log entry's payload. The leader stamps its clock into it, so `apply` never reads a
/// clock and every replica computes the same state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub leader_time: i64,
    pub command: Command,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Meta(MetaCommand),
    Shard(ShardCommand),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub enum Response {
    #[default]
    Done,
    /// A registry apply: what it changed.
    Applied(Vec<Change>),
    /// The command was valid Raft-wise but refused by the state machine; nothing changed.
    Rejected(quiver_core::Error),
    Written {
        rows: u64,
    },
    /// The first of a reserved range of ingestion sequence numbers.
    Seq(u64),
    /// The files were committed before (same source), or the write's request id was
    /// applied before: nothing was added.
    Duplicate,
    /// The id of a node that joined.
    NodeId(u64),
    /// The id of a shard operation that started.
    OpId(u64),
    /// The answers to a `ShardCommand::Writes`, in its order.
    Batch(Vec<Response>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    ApplyDefinitions(Definitions),
    /// Lays out the first shard map; refused once a map exists, so replays and racing
    /// bootstraps change nothing.
    Bootstrap {
        nodes: Vec<NodeInfo>,
        shard_map: ShardMap,
    },
    /// Records a saved training dataset and its feature statistics; refused when the name
    /// is taken.
    SaveDataset {
        project: String,
        dataset: Dataset,
        stats: Summaries,
    },
    /// Statistics of one committed offline file (same file again: the same summaries).
    RecordFileStats {
        table: TableRef,
        day: i64,
        path: String,
        stats: Summaries,
    },
    /// A monitor's drift report at `at`.
    RecordMonitorRun {
        table: TableRef,
        at: i64,
        report: DriftReport,
    },
    /// Statistics of values a node served online since its last report.
    RecordServingStats {
        table: TableRef,
        day: i64,
        node: u64,
        seq: u64,
        stats: Summaries,
    },
    /// Swaps files for their compacted replacement in one step; refused when any of them
    /// is no longer listed (another compaction got there first).
    ReplaceFiles {
        table: TableRef,
        remove: Vec<String>,
        add: DataFile,
    },
    /// The garbage files were deleted from the store.
    ForgetGarbage {
        paths: Vec<String>,
    },
    /// A node joins: answers its id, the same one again for an address already known.
    AddNode {
        addr: String,
    },
    /// A node tells the address clients reach it at.
    SetClientAddr {
        id: u64,
        addr: String,
    },
    /// Starts moving every replica away from a node before it leaves.
    DrainNode {
        id: u64,
    },
    /// Forgets a drained node; refused while it still hosts a replica.
    ForgetNode {
        id: u64,
    },
    /// The scheduler's decision: shard `shard` moves to `replicas`. Refused unless the
    /// shard is still at `conf_ver`, no move of it is under way and no operation is busy with it.
    SetReplicas {
        shard: u64,
        replicas: Vec<u64>,
        conf_ver: u64,
    },
    /// The shard's leader confirms its Raft group now has these voters.
    SetVoters {
        shard: u64,
        voters: Vec<u64>,
    },
    /// Node `leader` says it leads these shards, each in a term; a report of an older term
    /// than the one recorded changes nothing.
    ReportLeader {
        leader: u64,
        terms: Vec<(u64, u64)>,
    },
    /// Records a shard operation; refused, with what is wrong, when it cannot be carried
    /// out (`OpKind::check`).
    StartOp {
        kind: OpKind,
        requested: bool,
    },
    /// Shard `shard` applied its split at `at` into `child`: the map gets the child (the
    /// upper part, on the same replicas) and both epochs' versions move on; operation `op`
    /// ends. The same split again changes nothing.
    CommitSplit {
        op: u64,
        shard: u64,
        at: u64,
        child: u64,
    },
    /// Shard `left` grew over the range of `right`, its neighbour above: `right` leaves the
    /// map, `left` moves to a new epoch version; operation `op` ends. Again, nothing changes.
    CommitMerge {
        op: u64,
        left: u64,
        right: u64,
    },
    /// An operation ended; the same id again changes nothing.
    FinishOp {
        id: u64,
        outcome: Outcome,
    },
    /// Reserves `count` ingestion sequence numbers.
    ReserveSeq {
        count: u64,
    },
    /// Makes written files visible, all or none. `source` names what they came from;
    /// committing the same source (or an export range at or below the shard's mark)
    /// twice is refused as a duplicate, so retries never double data.
    CommitFiles {
        files: Vec<(TableRef, DataFile)>,
        source: (TableRef, String),
        export: Option<ExportRange>,
    },
    /// Backup `id` is about to cut every group: for `hold_ms` (or until `EndBackupCut`),
    /// export commits and new splits and merges are refused `Busy`, so the shards' cuts,
    /// taken first, and the meta group's, taken last, agree. Refused while a split or a
    /// merge is under way, or another backup holds the cut.
    BeginBackupCut {
        id: String,
        hold_ms: u64,
    },
    /// Backup `id` has cut every group.
    EndBackupCut {
        id: String,
    },
    /// Backup `backup` in `location` left these offline files in the offline store (it
    /// lists them, not copies): garbage collection keeps them while the backup exists.
    PinFiles {
        backup: String,
        location: String,
        paths: Vec<String>,
    },
    /// Backup `backup` no longer exists: its pins on `paths` go.
    UnpinFiles {
        backup: String,
        paths: Vec<String>,
    },
    /// A backup completed: kept for status and the dashboard (the last few).
    RecordBackup(quiver_core::backup::BackupRecord),
    /// Issues a token whose secret hashes to `hash`, valid for `ttl_micros` from the
    /// leader's time (or until revoked); refused when the name was ever used.
    CreateToken {
        hash: TokenHash,
        name: String,
        scope: Scope,
        role: Role,
        pii: bool,
        ttl_micros: Option<i64>,
        created_by: String,
    },
    /// The token stops working on every node once applied there; its record stays.
    RevokeToken {
        name: String,
    },
    /// Audit entries `node` recorded (numbered from `first_seq`), appended to the audit
    /// chain; entries older than the cluster's retention are forgotten a few at a time.
    /// `retention_micros` is read by no one (the cluster's is `SetAuditRetention`'s): it
    /// stays so that log entries of earlier versions decode.
    RecordAudit {
        node: u64,
        first_seq: u64,
        entries: Vec<quiver_core::audit::AuditEntry>,
        retention_micros: i64,
    },
    /// How long the cluster keeps audit entries; refused under a day.
    SetAuditRetention {
        retention_micros: i64,
    },
    /// The point split operation `op` (asked for at the median) splits at, chosen by the
    /// shard's leader before it proposes the split: recorded once, so a later leader
    /// proposes the same split whatever rows it holds. A point already recorded stays.
    SetSplitPoint {
        op: u64,
        at: u64,
    },
    /// The lower shard of merge `op` is about to absorb the upper one: from here on the
    /// merge is finished, never abandoned. Refused when the merge is no longer under way.
    ClaimMerge {
        op: u64,
    },
    /// Operation `id` passed its deadline or an operator cancels it: it ends as failed and
    /// what it began is undone (a replica move goes back to the shard's voters, a merge's
    /// upper shard thaws), unless it can no longer be: a merge already claimed
    /// (`ClaimMerge`) or a move whose target already votes goes on, a split is refused.
    AbandonOp {
        id: u64,
        why: String,
    },
    /// The replica move of `shard` (at `conf_ver`) is given up: its replicas go back to its
    /// voters. A shard no longer at `conf_ver`, or not moving, is left alone.
    RollBackMove {
        shard: u64,
        conf_ver: u64,
    },
    /// Ingest `id` is about to publish (commit its files, upsert its latest rows), for at
    /// most `lease_ms` more (asked again to extend): no backup begins cutting meanwhile, so a
    /// backup holds an ingest whole or not at all. Refused `Busy` while a backup cuts.
    BeginPublish {
        id: String,
        lease_ms: u64,
    },
    /// Ingest `id` has published.
    EndPublish {
        id: String,
    },
    /// The cluster's id (32 hex digits), unless it has one: the first set stays.
    SetClusterId {
        id: String,
    },
    /// The metadata leader wrote cluster `cluster`'s mark into its offline store: every
    /// member must find it in its own (`offline::shared`).
    MarkOfflineStore {
        cluster: String,
    },
    /// Node `node` runs Quiver `version`: reported by each member as it starts, shown by
    /// `status` so that an upgrade one node at a time can be followed.
    ReportVersion {
        node: u64,
        version: String,
    },
    /// Cluster version `version`, brought by release `release`, is in force; refused
    /// `MembersBehind` while a member has not reported running `release` or a later one.
    /// The version in force only rises (`Duplicate` when it does not).
    FinalizeUpgrade {
        version: u32,
        release: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRow {
    /// Canonical entity-key encoding (`quiver_core::key::encode_entity_key`).
    pub key: Vec<u8>,
    pub event_ts: i64,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardCommand {
    /// A write of earlier versions, whose request id named one part of a request: applied
    /// as a `Write` with the rows at positions 0, 1, ….
    Put { table: TableRef, rows: Vec<ShardRow>, export: bool, request: Option<Vec<u8>> },
    /// The queue through `through` is in the offline store: drop it.
    ExportAck { through: WriteSeq },
    /// Splits the shard's range `start..=end` at `at`: it keeps `start..at`, and the new
    /// shard `child` is created on every replica from this replica's rows in `at..=end`
    /// (`shard::split`). Applied again, it changes nothing; refused when the shard holds
    /// another range.
    Split { start: u64, end: u64, at: u64, child: u64 },
    /// The first step of a merge, in the upper shard's log: it owns nothing from here on
    /// (no write, no read), and its rows stay as they are to be absorbed.
    Freeze,
    /// Rows and request ids of a frozen neighbour, as its stored key-value pairs: written
    /// unless the shard already owns a row's key (so a replay after `Grow` changes nothing).
    Absorb { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// The last step of a merge: the shard's range grows over `start..=end`, the range of
    /// the neighbour just above it, whose rows it has absorbed.
    Grow { start: u64, end: u64 },
    /// Upserts rows (see `Write`).
    Write(Write),
    /// A frozen shard whose merge was abandoned owns its range again; otherwise nothing.
    Thaw,
    /// The first step of a split at `at`: every replica starts copying the rows and request
    /// ids that will move to `child` into its trees in the background, and notes the keys
    /// changed meanwhile, so the `Split` entry copies only those (`shard::staging`). Changes
    /// nothing a read sees.
    PrepareSplit { at: u64, child: u64 },
    /// Writes the leader committed together (`group_commit`): applied in order, each as its
    /// own `Write` with its rows after the earlier writes' in the entry, and answered
    /// `Response::Batch`, one answer per write. Proposed only from cluster version 2 on.
    Writes(Vec<Write>),
}

/// Upserts rows (last writer wins); `export` also queues them for the offline store.
/// With `once`, each row applies at most once per request id and position in the request,
/// whichever shard holds its key (`shard::requests`); a write all of whose rows were
/// applied before is answered `Duplicate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Write {
    pub table: TableRef,
    pub rows: Vec<ShardRow>,
    pub export: bool,
    pub once: Option<Once>,
}

/// What makes a write apply once: its request's id, and each row's position in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Once {
    pub id: Vec<u8>,
    pub positions: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    /// Log entries outlive the build that wrote them: a command's bytes, and the place of
    /// every variant, stay as they are (new variants go last).
    #[test]
    fn log_entries_keep_their_bytes() {
        let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
        let row = ShardRow { key: vec![7], event_ts: 1, values: Vec::new() };
        let put = Command::Shard(ShardCommand::Put {
            table: table.clone(),
            rows: vec![row.clone()],
            export: true,
            request: None,
        });
        assert_eq!(encode(&put).unwrap(), [1, 0, 1, 112, 1, 115, 1, 1, 1, 7, 2, 0, 1, 0]);
        let once = Some(Once { id: vec![9], positions: vec![3] });
        let one = Write { table, rows: vec![row], export: false, once };
        let write = Command::Shard(ShardCommand::Write(one.clone()));
        let write_bytes = [1, 6, 1, 112, 1, 115, 1, 1, 1, 7, 2, 0, 0, 1, 1, 9, 1, 3];
        assert_eq!(encode(&write).unwrap(), write_bytes);
        assert!(matches!(decode::<Command>(&encode(&write).unwrap()).unwrap(), Command::Shard(ShardCommand::Write(_))));
        // A group-committed entry: the tag, the count, then each write as a lone one has it.
        let writes = Command::Shard(ShardCommand::Writes(vec![one.clone(), one]));
        let body = &write_bytes[2..];
        assert_eq!(encode(&writes).unwrap(), [&[1, 9, 2][..], body, body].concat());
        assert_eq!(encode(&ShardCommand::Thaw).unwrap(), [7]);
        assert_eq!(encode(&ShardCommand::PrepareSplit { at: 5, child: 2 }).unwrap(), [8, 5, 2]);
        let last = MetaCommand::SetClusterId { id: "c".into() };
        assert_eq!(encode(&last).unwrap(), [36, 1, 99], "the meta commands added last stay last");
        assert_eq!(encode(&MetaCommand::MarkOfflineStore { cluster: "c".into() }).unwrap(), [37, 1, 99]);
        let version = MetaCommand::ReportVersion { node: 2, version: "v".into() };
        assert_eq!(encode(&version).unwrap(), [38, 2, 1, 118]);
        assert_eq!(encode(&MetaCommand::FinalizeUpgrade { version: 2, release: "r".into() }).unwrap(), [39, 2, 1, 114]);
    }
}
