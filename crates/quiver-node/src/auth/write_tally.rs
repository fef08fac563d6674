//! Writes on record without an entry per row: per token, project, feature set and minute, the
//! requests and rows written, put on record as one audit entry once the minute has ended
//! (`drain`). A stream of single-row pushes costs the log one entry a minute per feature set.

use std::collections::HashMap;
use std::sync::Mutex;

use quiver_core::audit::AuditEntry;

const MINUTE_MICROS: i64 = 60_000_000;

/// Who wrote to which feature set: token name, project, feature set.
type Writer = (String, String, String);

#[derive(Debug, Clone)]
struct Tally {
    minute: i64,
    requests: u64,
    rows: u64,
    /// Where the last request came from.
    from: String,
}

#[derive(Default)]
pub struct WriteTally {
    open: Mutex<HashMap<Writer, Tally>>,
    ended: Mutex<Vec<(Writer, Tally)>>,
}

impl WriteTally {
    /// Counts a write of `rows` rows by `actor` to `set` of `project`, from `from`, at `now` (µs).
    pub fn count(&self, actor: &str, project: &str, set: &str, rows: u64, from: String, now: i64) {
        let minute = now.div_euclid(MINUTE_MICROS);
        let writer = (actor.to_string(), project.to_string(), set.to_string());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || Tally { minute, requests: 0, rows: 0, from: from.clone() };
        let tally = open.entry(writer.clone()).or_insert_with(fresh);
        if tally.minute != minute {
            let ended = std::mem::replace(tally, fresh());
            self.ended.lock().unwrap_or_else(|e| e.into_inner()).push((writer, ended));
        }
        tally.requests += 1;
        tally.rows += rows;
        tally.from = from;
    }

    /// The audit entries of every minute ended before `now` (µs), one per writer and feature
    /// set, written by node `node`; forgets them.
    pub fn drain(&self, node: u64, now: i64) -> Vec<AuditEntry> {
        let minute = now.div_euclid(MINUTE_MICROS);
        let mut ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|e| e.into_inner()));
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|writer, tally| {
            let done = tally.minute < minute;
            if done {
                ended.push((writer.clone(), tally.clone()));
            }
            !done
        });
        let entry = |((actor, project, set), tally): (Writer, Tally)| AuditEntry {
            at: tally.minute * MINUTE_MICROS,
            actor,
            from: tally.from,
            node,
            action: "WriteFeatures".into(),
            project: Some(project),
            detail: format!("wrote {} rows to {set} in {} requests in this minute", tally.rows, tally.requests),
            outcome: "ok".into(),
        };
        ended.into_iter().map(entry).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_add_up_per_writer_feature_set_and_minute() {
        let tally = WriteTally::default();
        let t0 = 7 * MINUTE_MICROS;
        for i in 0..1_000 {
            tally.count("pipeline", "rides", "driver_stats", 1, "10.0.0.1:5".into(), t0 + i);
        }
        tally.count("pipeline", "rides", "trips", 500, "10.0.0.1:5".into(), t0);
        tally.count("pipeline", "rides", "driver_stats", 3, "10.0.0.1:5".into(), t0 + MINUTE_MICROS);
        let mut entries = tally.drain(2, t0 + MINUTE_MICROS + 1);
        entries.sort_by(|a, b| a.detail.cmp(&b.detail));
        let details: Vec<&str> = entries.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "wrote 1000 rows to driver_stats in 1000 requests in this minute",
                "wrote 500 rows to trips in 1 requests in this minute"
            ]
        );
        assert!(entries.iter().all(|e| e.at == t0 && e.node == 2 && e.actor == "pipeline"));
        let later = tally.drain(2, t0 + 2 * MINUTE_MICROS);
        assert_eq!(later.len(), 1, "the next minute's write: {later:?}");
    }
}
