//! Golden bytes of every kind of record this crate defines or stores of openraft's
//! (`quiver_store::golden::pinned`); `quiver-store` pins the rest.

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, StoredMembership};
use quiver_core::row::WriteSeq;
use quiver_core::table::TableRef;
use quiver_core::value::Value;
use quiver_store::command::{Command, Request, ShardCommand, ShardRow, Write};
use quiver_store::golden::pinned;

use crate::raft::TypeConfig;
use crate::raft::state_machine::StoredSnapshot;
use crate::shard::export_order::ExportWait;
use crate::shard::{QueuedRow, QueuedWrite};

#[test]
fn every_kind_stored_here_keeps_its_bytes() {
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 7);
    let blank = Entry::<TypeConfig> { log_id, payload: EntryPayload::Blank };
    pinned(blank, "03010700");
    let thaw = Request { leader_time: 5, command: Command::Shard(ShardCommand::Thaw) };
    pinned(Entry::<TypeConfig> { log_id, payload: EntryPayload::Normal(thaw) }, "030107010a0107");
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::default(),
        snapshot_id: "s".into(),
    };
    pinned(StoredSnapshot { meta, data: vec![1, 2] }, "010301070000000173020102");
    let seq = WriteSeq { log_index: 9, pos: 1 };
    pinned(vec![ExportWait { shard: 2, through: seq, from: seq }], "010209010901");
    let table = TableRef { project: "p".into(), set: "s".into(), version: 1 };
    let row = ShardRow { key: vec![4], event_ts: 6, values: vec![Value::Bool(true)] };
    let write = Write { table: table.clone(), rows: vec![row.clone()], export: true, once: None };
    let writes = Request { leader_time: 5, command: Command::Shard(ShardCommand::Writes(vec![write])) };
    pinned(
        Entry::<TypeConfig> { log_id, payload: EntryPayload::Normal(writes) },
        "030107010a01090101700173010101040c0101010100",
    );
    pinned(QueuedWrite { table: table.clone(), rows: vec![(2, row.clone())] }, "0170017301010201040c010101");
    pinned(QueuedRow { table, row }, "017001730101040c010101");
}
