//! Backups: progress of one being made, records of those made.

use quiver_core::backup::{BackupProgress, BackupRecord};

use crate::v1;

pub fn backup_progress_to_proto(p: &BackupProgress) -> v1::BackupProgress {
    v1::BackupProgress {
        id: p.id.clone(),
        phase: p.phase.clone(),
        objects_done: p.objects_done,
        objects_total: p.objects_total,
        bytes: p.bytes,
        rows: p.rows,
        done: p.done,
    }
}

pub fn backup_progress_from_proto(p: v1::BackupProgress) -> BackupProgress {
    BackupProgress {
        id: p.id,
        phase: p.phase,
        objects_done: p.objects_done,
        objects_total: p.objects_total,
        bytes: p.bytes,
        rows: p.rows,
        done: p.done,
    }
}

pub fn backup_record_to_proto(r: &BackupRecord) -> v1::BackupRecord {
    v1::BackupRecord {
        id: r.id.clone(),
        location: r.location.clone(),
        finished_at_micros: r.finished_at,
        bytes: r.bytes,
        rows: r.rows,
        incremental: r.incremental,
        scheduled: r.scheduled,
    }
}

pub fn backup_record_from_proto(r: v1::BackupRecord) -> BackupRecord {
    BackupRecord {
        id: r.id,
        location: r.location,
        finished_at: r.finished_at_micros,
        bytes: r.bytes,
        rows: r.rows,
        incremental: r.incremental,
        scheduled: r.scheduled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_round_trip() {
        let p = BackupProgress {
            id: "b".into(),
            phase: "x".into(),
            objects_done: 1,
            objects_total: 2,
            bytes: 3,
            rows: 4,
            done: true,
        };
        assert_eq!(backup_progress_from_proto(backup_progress_to_proto(&p)), p);
        let r = BackupRecord {
            id: "b".into(),
            location: "/l".into(),
            finished_at: 5,
            bytes: 6,
            rows: 7,
            incremental: true,
            scheduled: true,
        };
        assert_eq!(backup_record_from_proto(backup_record_to_proto(&r)), r);
    }
}
