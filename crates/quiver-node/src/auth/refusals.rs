//! Requests refused for want of a valid token, counted per source address and minute. The
//! audit log gets the first refusal of each source and minute as it happens, and, when the
//! minute has ended, one entry with the count of the others (`drain`), so it stays bounded
//! (two entries per source and minute) whatever a caller sends; a source past `ALLOWANCE`
//! refusals in a minute is told to back off (`RESOURCE_EXHAUSTED`) until the minute ends. A
//! valid token is always let through first, so an attacker sharing an address cannot lock out
//! its other users.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use quiver_core::audit::AuditEntry;

/// Refusals one source gets in a minute before it is told to back off.
pub const ALLOWANCE: u64 = 100;
/// Sources tallied at once; refusals from more sources count under `0.0.0.0`.
const SOURCES: usize = 4_096;
const MINUTE_MICROS: i64 = 60_000_000;

/// One source's refusals in one minute.
#[derive(Debug, Clone, PartialEq)]
struct Tally {
    minute: i64,
    count: u64,
    /// What the last refused request asked for, and why it was refused.
    last: (String, String),
}

#[derive(Default)]
pub struct Refusals {
    tallies: Mutex<HashMap<IpAddr, Tally>>,
    /// Minutes already ended, waiting for `drain`.
    ended: Mutex<Vec<(IpAddr, Tally)>>,
    /// First refusals of a source in a minute, waiting for `drain`.
    first: Mutex<Vec<AuditEntry>>,
}

impl Refusals {
    /// Counts a refusal of `what` (an RPC or a page) from `source` at `now` (µs), for `why`;
    /// answers whether the source is past its allowance this minute.
    pub fn count(&self, source: Option<IpAddr>, what: &str, why: &str, now: i64) -> bool {
        let minute = now.div_euclid(MINUTE_MICROS);
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let everyone = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut source = source.unwrap_or(everyone);
        if !tallies.contains_key(&source) && tallies.len() >= SOURCES {
            source = everyone;
        }
        let last = (what.to_string(), why.to_string());
        let tally = tallies.entry(source).or_insert_with(|| Tally { minute, count: 0, last: last.clone() });
        if tally.minute != minute {
            let ended = std::mem::replace(tally, Tally { minute, count: 0, last: last.clone() });
            self.ended.lock().unwrap_or_else(|e| e.into_inner()).push((source, ended));
        }
        tally.count += 1;
        tally.last = last;
        if tally.count == 1 {
            let first = AuditEntry {
                at: now,
                actor: "unauthenticated".into(),
                from: source.to_string(),
                node: 0,
                action: what.to_string(),
                project: None,
                detail: "refused; more from this source in this minute are counted in one entry".into(),
                outcome: why.to_string(),
            };
            self.first.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        }
        tally.count > ALLOWANCE
    }

    /// The audit entries waiting, written by node `node`: first refusals, and the count of
    /// the others in every minute ended before `now` (µs), one per source; forgets them.
    pub fn drain(&self, node: u64, now: i64) -> Vec<AuditEntry> {
        let minute = now.div_euclid(MINUTE_MICROS);
        let mut entries = std::mem::take(&mut *self.first.lock().unwrap_or_else(|e| e.into_inner()));
        let mut ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        tallies.retain(|source, tally| {
            let done = tally.minute < minute;
            if done {
                ended.push((*source, tally.clone()));
            }
            !done
        });
        entries.extend(
            ended.into_iter().filter(|(_, tally)| tally.count > 1).map(|(source, tally)| summary(source, tally)),
        );
        for entry in &mut entries {
            entry.node = node;
        }
        entries
    }
}

fn summary(source: IpAddr, tally: Tally) -> AuditEntry {
    let (what, why) = tally.last;
    AuditEntry {
        at: tally.minute * MINUTE_MICROS,
        actor: "unauthenticated".into(),
        from: source.to_string(),
        node: 0,
        action: what,
        project: None,
        detail: format!("{} more requests without a valid token in this minute", tally.count - 1),
        outcome: why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_entry_per_source_and_minute_with_its_count() {
        let refusals = Refusals::default();
        let (a, b) = (Some("10.1.1.1".parse().unwrap()), Some("10.1.1.2".parse().unwrap()));
        let t0 = 5 * MINUTE_MICROS;
        let over: Vec<bool> = (0..250).map(|i| refusals.count(a, "Apply", "no token", t0 + i)).collect();
        assert!(!over[..ALLOWANCE as usize].iter().any(|o| *o) && over[ALLOWANCE as usize..].iter().all(|o| *o));
        refusals.count(b, "Status", "unknown token", t0);
        let first = refusals.drain(1, t0 + 10);
        assert_eq!(first.len(), 2, "each source's first refusal at once: {first:?}");
        assert!(first.iter().all(|e| e.node == 1 && e.detail.starts_with("refused")));
        assert!(refusals.drain(1, t0 + 20).is_empty(), "the rest wait for the minute's end");
        assert!(!refusals.count(a, "Apply", "no token", t0 + MINUTE_MICROS), "a new minute, a new allowance");
        let entries = refusals.drain(1, t0 + MINUTE_MICROS + 1);
        assert_eq!(entries.len(), 2, "a's first of the new minute, a's count of the old: {entries:?}");
        let count = entries.iter().find(|e| e.at == t0).unwrap();
        assert_eq!(count.detail, "249 more requests without a valid token in this minute");
        assert!(refusals.drain(1, t0 + MINUTE_MICROS + 2).is_empty(), "drained once");
        assert!(refusals.drain(1, t0 + 3 * MINUTE_MICROS).is_empty(), "a minute of one refusal has no count");
    }

    #[test]
    fn sources_beyond_the_bound_share_one_tally() {
        let refusals = Refusals::default();
        for i in 1..=(SOURCES as u32 + 500) {
            refusals.count(Some(IpAddr::V4(i.into())), "Apply", "no token", 0);
        }
        let firsts = refusals.drain(1, 0);
        assert_eq!(firsts.len(), SOURCES + 1, "the bound, and 0.0.0.0 for the rest");
        let counts = refusals.drain(1, MINUTE_MICROS);
        assert_eq!(counts.len(), 1, "only 0.0.0.0 had more than one: {:?}", counts.first());
        assert_eq!(counts[0].detail, "499 more requests without a valid token in this minute");
    }
}
