//! Golden bytes of every kind of record this crate stores (`golden::pinned`); `quiver-node`
//! pins the kinds it defines likewise.

use std::collections::BTreeMap;

use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership, Vote};
use quiver_core::audit::AuditEntry;
use quiver_core::row::{StoredRow, WriteSeq};
use quiver_core::stats::{DriftReport, FeatureDrift};
use quiver_core::value::Value;

use crate::golden::pinned;
use crate::meta::MetaState;
use crate::meta::audit_chain::{Head, Link};
use crate::records::Summaries;

#[test]
fn every_kind_stored_here_keeps_its_bytes() {
    pinned(-3i64, "05");
    pinned(2u32, "02");
    pinned("c".to_string(), "0163");
    pinned((1u64, 300u64), "01fb2c01");
    pinned(Some((1u64, 2u64)), "010102");
    pinned(vec![(1u64, 2u64)], "010102");
    pinned(Some(vec![7u8]), "010107");
    pinned(
        StoredRow {
            event_ts: 1,
            seq: WriteSeq { log_index: 2, pos: 3 },
            written_at: 4,
            values: vec![Value::Int64(5), Value::Null],
        },
        "0202030802030a00",
    );
    let entry = AuditEntry {
        at: 1,
        actor: "a".into(),
        from: "f".into(),
        node: 2,
        action: "Apply".into(),
        project: Some("p".into()),
        detail: "d".into(),
        outcome: "ok".into(),
    };
    pinned(entry.clone(), "020161016602054170706c790101700164026f6b");
    pinned(DriftReport::new(vec![FeatureDrift::failed("x".into(), "e".into())]), "0101780000010165000000");
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 7);
    pinned(log_id, "030107");
    pinned(Some(log_id), "01030107");
    pinned(Vote::new(3u64, 1u64), "030100");
    let members = Membership::new(vec![[1u64].into()], BTreeMap::from([(1u64, BasicNode::new("a"))]));
    pinned(StoredMembership::new(Some(log_id), members), "0103010701010101010161");
    pinned(Summaries { rows: 2, columns: Vec::new() }, "0200");
    pinned(
        Link { format: 1, prev: [9; 32], entry },
        "010909090909090909090909090909090909090909090909090909090909090909020161016602054170706c790101700164026f6b",
    );
    pinned(
        Head::default(),
        "0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );
    pinned(MetaState::default(), "00000000000000000000000000000000");
}
