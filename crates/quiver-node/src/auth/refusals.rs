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

/// A refused request: what it asked for, why it was refused, and whose token it carried
/// when the cluster issued that token (revoked or expired): its entries are then under the
/// token's name and project, so `audit --actor` and `audit --project` find them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Refused {
    pub what: String,
    pub why: String,
    pub token: Option<String>,
    pub project: Option<String>,
}

impl Refused {
    fn entry(&self, at: i64, source: IpAddr, detail: String) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.token.clone().unwrap_or_else(|| "unauthenticated".into()),
            from: source.to_string(),
            node: 0,
            action: self.what.clone(),
            project: self.project.clone(),
            detail,
            outcome: self.why.clone(),
        }
    }
}

/// One source's refusals in one minute (with one issued token, or with none).
#[derive(Debug, Clone, PartialEq)]
struct Tally {
    minute: i64,
    count: u64,
    /// The last refused request.
    last: Refused,
}

/// Where refusals come from: an address, and the issued token they carried, if any.
type Source = (IpAddr, Option<String>);

#[derive(Default)]
pub struct Refusals {
    tallies: Mutex<HashMap<Source, Tally>>,
    /// Minutes already ended, waiting for `drain`.
    ended: Mutex<Vec<(Source, Tally)>>,
    /// First refusals of a source in a minute, waiting for `drain`.
    first: Mutex<Vec<AuditEntry>>,
}

impl Refusals {
    /// Counts a refusal from `source` at `now` (µs); answers whether the source is past its
    /// allowance this minute.
    pub fn count(&self, source: Option<IpAddr>, refused: Refused, now: i64) -> bool {
        let minute = now.div_euclid(MINUTE_MICROS);
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let everyone = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut source = (source.unwrap_or(everyone), refused.token.clone());
        if !tallies.contains_key(&source) && tallies.len() >= SOURCES {
            source = (everyone, None);
        }
        let tally = tallies.entry(source.clone()).or_insert_with(|| Tally { minute, count: 0, last: refused.clone() });
        if tally.minute != minute {
            let ended = std::mem::replace(tally, Tally { minute, count: 0, last: refused.clone() });
            self.ended.lock().unwrap_or_else(|e| e.into_inner()).push((source.clone(), ended));
        }
        tally.count += 1;
        if tally.count == 1 {
            let detail = "refused; more from this source in this minute are counted in one entry".into();
            self.first.lock().unwrap_or_else(|e| e.into_inner()).push(refused.entry(now, source.0, detail));
        }
        tally.last = refused;
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
                ended.push((source.clone(), tally.clone()));
            }
            !done
        });
        entries.extend(
            ended.into_iter().filter(|(_, tally)| tally.count > 1).map(|((source, _), tally)| summary(source, tally)),
        );
        for entry in &mut entries {
            entry.node = node;
        }
        entries
    }
}

fn summary(source: IpAddr, tally: Tally) -> AuditEntry {
    let detail = format!("{} more requests without a valid token in this minute", tally.count - 1);
    tally.last.entry(tally.minute * MINUTE_MICROS, source, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(what: &str, why: &str) -> Refused {
        Refused { what: what.into(), why: why.into(), ..Default::default() }
    }

    #[test]
    fn a_flood_is_one_entry_per_source_and_minute_with_its_count() {
        let refusals = Refusals::default();
        let (a, b) = (Some("10.1.1.1".parse().unwrap()), Some("10.1.1.2".parse().unwrap()));
        let t0 = 5 * MINUTE_MICROS;
        let over: Vec<bool> = (0..250).map(|i| refusals.count(a, refused("Apply", "no token"), t0 + i)).collect();
        assert!(!over[..ALLOWANCE as usize].iter().any(|o| *o) && over[ALLOWANCE as usize..].iter().all(|o| *o));
        refusals.count(b, refused("Status", "unknown token"), t0);
        let first = refusals.drain(1, t0 + 10);
        assert_eq!(first.len(), 2, "each source's first refusal at once: {first:?}");
        assert!(first.iter().all(|e| e.node == 1 && e.detail.starts_with("refused")));
        assert!(refusals.drain(1, t0 + 20).is_empty(), "the rest wait for the minute's end");
        assert!(!refusals.count(a, refused("Apply", "no token"), t0 + MINUTE_MICROS), "a new minute, a new allowance");
        let entries = refusals.drain(1, t0 + MINUTE_MICROS + 1);
        assert_eq!(entries.len(), 2, "a's first of the new minute, a's count of the old: {entries:?}");
        let count = entries.iter().find(|e| e.at == t0).unwrap();
        assert_eq!(count.detail, "249 more requests without a valid token in this minute");
        assert!(refusals.drain(1, t0 + MINUTE_MICROS + 2).is_empty(), "drained once");
        assert!(refusals.drain(1, t0 + 3 * MINUTE_MICROS).is_empty(), "a minute of one refusal has no count");
    }

    #[test]
    fn a_refused_issued_token_is_audited_under_its_name_and_project_apart_from_others() {
        let refusals = Refusals::default();
        let a = Some("10.1.1.1".parse().unwrap());
        refusals.count(a, refused("Apply", "no token"), 0);
        let gone =
            Refused { token: Some("gone".into()), project: Some("rides".into()), ..refused("Status", "revoked") };
        refusals.count(a, gone.clone(), 1);
        refusals.count(a, gone, 2);
        let first = refusals.drain(1, 3);
        let theirs: Vec<_> = first.iter().filter(|e| e.actor == "gone").collect();
        assert_eq!(theirs.len(), 1, "its own first entry, though the source was refused before: {first:?}");
        assert_eq!((theirs[0].project.as_deref(), theirs[0].action.as_str()), (Some("rides"), "Status"));
        let counts = refusals.drain(1, MINUTE_MICROS);
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!((counts[0].actor.as_str(), counts[0].project.as_deref()), ("gone", Some("rides")));
    }

    #[test]
    fn sources_beyond_the_bound_share_one_tally() {
        let refusals = Refusals::default();
        for i in 1..=(SOURCES as u32 + 500) {
            refusals.count(Some(IpAddr::V4(i.into())), refused("Apply", "no token"), 0);
        }
        let firsts = refusals.drain(1, 0);
        assert_eq!(firsts.len(), SOURCES + 1, "the bound, and 0.0.0.0 for the rest");
        let counts = refusals.drain(1, MINUTE_MICROS);
        assert_eq!(counts.len(), 1, "only 0.0.0.0 had more than one: {:?}", counts.first());
        assert_eq!(counts[0].detail, "499 more requests without a valid token in this minute");
    }
}
