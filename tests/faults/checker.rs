//! Linearizability of one online feature per key, checked as the register Quiver promises:
//! last writer wins by event time, and of two writes at the same event time the one applied
//! later wins. Wing & Gong's search with Lowe's memoisation, as Porcupine runs it: keys are
//! independent registers (P-compositionality), so each key's history is checked alone.

use std::collections::{BTreeMap, HashSet};

/// What a client saw of one operation, times in µs since the run began.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub client: u32,
    pub key: i64,
    pub call: u64,
    /// `None`: the outcome is unknown (a write that timed out or failed may have applied).
    pub ret: Option<u64>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A row at event time `ts` carrying `value` (unique per write in a run).
    Write { ts: i64, value: u64 },
    /// The row a linearizable read returned: `None` when the key had none.
    Read { seen: State },
}

/// The register: the winning row's (event time, value).
pub type State = Option<(i64, u64)>;

/// The model's step: a write wins unless the stored row is newer; a read must see the state.
fn step(state: State, kind: &Kind) -> Option<State> {
    match kind {
        Kind::Write { ts, value } => Some(match state {
            Some((old, _)) if old > *ts => state,
            _ => Some((*ts, *value)),
        }),
        Kind::Read { seen } => (*seen == state).then_some(state),
    }
}

/// A key whose history has no linearization, with where the search got stuck.
#[derive(Debug)]
pub struct Violation {
    pub key: i64,
    /// The most operations any order could linearize, and the first one it could not.
    pub linearized: usize,
    pub stuck_at: Option<Op>,
}

/// Outcome of checking a whole history.
#[derive(Debug, Default)]
pub struct Report {
    pub keys: usize,
    pub ops: usize,
    pub violations: Vec<Violation>,
    /// Keys whose search ran out of its step budget: neither passed nor failed.
    pub undecided: Vec<i64>,
}

/// Steps one key's search may take before it is called undecided.
const STEP_BUDGET: u64 = 20_000_000;

pub fn check(history: &[Op]) -> Report {
    let mut by_key: BTreeMap<i64, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    let mut report = Report { keys: by_key.len(), ops: history.len(), ..Report::default() };
    for (key, ops) in by_key {
        match check_key(settle_unknown(ops)) {
            Outcome::Linearizable => {}
            Outcome::Undecided => report.undecided.push(key),
            Outcome::Violation { linearized, stuck_at } => {
                report.violations.push(Violation { key, linearized, stuck_at })
            }
        }
    }
    report
}

/// Writes of unknown outcome, made finite. One no read saw is dropped: whether it applied
/// changes no answer (a write that did was overwritten before anyone read it, and a later
/// no-op against it is a no-op against its successor too). One a read saw applied before
/// that read returned, so the earliest such return is its own.
fn settle_unknown(ops: Vec<Op>) -> Vec<Op> {
    let mut seen_by: BTreeMap<u64, u64> = BTreeMap::new();
    for op in &ops {
        if let (Kind::Read { seen: Some((_, value)) }, Some(ret)) = (&op.kind, op.ret) {
            let earliest = seen_by.entry(*value).or_insert(ret);
            *earliest = (*earliest).min(ret);
        }
    }
    ops.into_iter()
        .filter_map(|mut op| match (&op.kind, op.ret) {
            (_, Some(_)) => Some(op),
            (Kind::Write { value, .. }, None) => {
                let ret = *seen_by.get(value)?;
                op.ret = Some(ret.max(op.call));
                Some(op)
            }
            (Kind::Read { .. }, None) => None,
        })
        .collect()
}

enum Outcome {
    Linearizable,
    Undecided,
    Violation { linearized: usize, stuck_at: Option<Op> },
}

/// One call or return in time order; a doubly linked list the search lifts operations out of.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

fn check_key(ops: Vec<Op>) -> Outcome {
    // Calls before returns at the same instant: such operations count as concurrent.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, false, i));
        order.push((op.ret.expect("settled"), true, i));
    }
    order.sort_unstable();
    let mut events: Vec<Event> = Vec::with_capacity(order.len() + 1);
    // Index 0 is a head sentinel; event k of `order` is k + 1.
    let first = if order.is_empty() { NIL } else { 1 };
    events.push(Event { op: NIL, is_call: false, partner: NIL, prev: NIL, next: first });
    let mut call_at = vec![0; ops.len()];
    let mut return_at = vec![0; ops.len()];
    for (k, &(_, is_return, op)) in order.iter().enumerate() {
        let at = k + 1;
        if is_return {
            return_at[op] = at
        } else {
            call_at[op] = at
        }
        let next = if at == order.len() { NIL } else { at + 1 };
        events.push(Event { op, is_call: !is_return, partner: NIL, prev: at - 1, next });
    }
    for op in 0..ops.len() {
        events[call_at[op]].partner = return_at[op];
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // Each frame: the call event lifted, and the state before it.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let (mut state, mut at) = (None, events[0].next);
    let (mut best, mut stuck_at) = (0, None);
    let mut steps = 0u64;
    while events[0].next != NIL {
        steps += 1;
        if steps > STEP_BUDGET {
            return Outcome::Undecided;
        }
        let event = events[at];
        if event.is_call {
            let op = event.op;
            let next_state = step(state, &ops[op].kind);
            linearized[op / 64] |= 1 << (op % 64);
            if let Some(next_state) = next_state
                && seen.insert((linearized.clone(), next_state))
            {
                stack.push((at, state));
                state = next_state;
                lift(&mut events, at);
                at = events[0].next;
                continue;
            }
            linearized[op / 64] &= !(1 << (op % 64));
            at = event.next;
            continue;
        }
        // A return of an operation not yet linearized: undo the last choice and try the next.
        if stack.len() >= best {
            best = stack.len();
            stuck_at = Some(ops[event.op].clone());
        }
        let Some((call, before)) = stack.pop() else {
            return Outcome::Violation { linearized: best, stuck_at };
        };
        let op = events[call].op;
        linearized[op / 64] &= !(1 << (op % 64));
        state = before;
        unlift(&mut events, call);
        at = events[call].next;
    }
    Outcome::Linearizable
}

/// Takes a call and its return out of the list.
fn lift(events: &mut [Event], call: usize) {
    for at in [call, events[call].partner] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = next;
        if next != NIL {
            events[next].prev = prev;
        }
    }
}

/// Puts back what `lift` took out, in reverse.
fn unlift(events: &mut [Event], call: usize) {
    for at in [events[call].partner, call] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = at;
        if next != NIL {
            events[next].prev = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(key: i64, call: u64, ret: Option<u64>, ts: i64, value: u64) -> Op {
        Op { client: 0, key, call, ret, kind: Kind::Write { ts, value } }
    }

    fn read(key: i64, call: u64, ret: u64, seen: State) -> Op {
        Op { client: 0, key, call, ret: Some(ret), kind: Kind::Read { seen } }
    }

    /// Every order of the operations that respects real time, tried one by one; a write of
    /// unknown outcome may take effect any time after its call, or never.
    fn naive(ops: &[Op]) -> bool {
        fn go(ops: &[Op], done: &mut Vec<bool>, state: State) -> bool {
            if (0..ops.len()).all(|i| done[i] || ops[i].ret.is_none()) {
                return true;
            }
            for i in 0..ops.len() {
                // `i` may go next if no pending operation returned before `i` was called.
                let ready = !done[i]
                    && (0..ops.len()).all(|j| done[j] || j == i || ops[j].ret.is_none_or(|r| r >= ops[i].call));
                if let Some(next) = ready.then(|| step(state, &ops[i].kind)).flatten() {
                    done[i] = true;
                    if go(ops, done, next) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    #[test]
    fn an_equal_event_time_applied_later_wins_and_an_older_one_never_does() {
        let history = [
            write(1, 0, Some(10), 5, 1),
            write(1, 20, Some(30), 5, 2),
            read(1, 40, 50, Some((5, 2))),
            write(1, 60, Some(70), 4, 3),
            read(1, 80, 90, Some((5, 2))),
        ];
        assert!(check(&history).violations.is_empty());
        // A tie that the earlier write won is a lost write.
        let mut lost = history.to_vec();
        lost[2] = read(1, 40, 50, Some((5, 1)));
        let report = check(&lost);
        assert_eq!(report.violations.len(), 1);
        assert_eq!(report.violations[0].key, 1);
        // An older row that replaced a newer one.
        let mut older = history.to_vec();
        older[4] = read(1, 80, 90, Some((4, 3)));
        assert_eq!(check(&older).violations.len(), 1);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation_and_keys_are_apart() {
        let history = [write(1, 0, Some(10), 5, 1), read(2, 0, 10, None), read(1, 20, 30, None), read(2, 20, 30, None)];
        let report = check(&history);
        assert_eq!(report.keys, 2);
        assert_eq!(report.violations.iter().map(|v| v.key).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn a_write_of_unknown_outcome_may_have_applied_or_not() {
        let applied = [write(1, 0, None, 5, 1), read(1, 20, 30, Some((5, 1))), read(1, 40, 50, Some((5, 1)))];
        assert!(check(&applied).violations.is_empty());
        let not_applied = [write(1, 0, None, 5, 1), read(1, 20, 30, None)];
        assert!(check(&not_applied).violations.is_empty());
        // Nothing left to check once it is set aside.
        assert!(check(&not_applied[..1]).violations.is_empty());
        // Seen, it cannot be unseen by a later read.
        let flicker = [write(1, 0, None, 5, 1), read(1, 20, 30, Some((5, 1))), read(1, 40, 50, None)];
        assert_eq!(check(&flicker).violations.len(), 1);
    }

    #[derive(Debug, Clone)]
    struct Draft {
        call: u64,
        len: u64,
        write: bool,
        ts: i64,
        pick: usize,
        unknown: bool,
    }

    fn drafts() -> impl Strategy<Value = Vec<Draft>> {
        let draft = (0u64..40, 1u64..15, any::<bool>(), 0i64..3, 0usize..8, proptest::bool::weighted(0.15))
            .prop_map(|(call, len, write, ts, pick, unknown)| Draft { call, len, write, ts, pick, unknown });
        proptest::collection::vec(draft, 1..8)
    }

    /// Histories of one key with reads that see any written value (or none): the search
    /// and the brute force agree on every one.
    fn history(drafts: &[Draft]) -> Vec<Op> {
        let values: Vec<(i64, u64)> =
            drafts.iter().enumerate().filter(|(_, d)| d.write).map(|(i, d)| (d.ts, i as u64 + 1)).collect();
        drafts
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let ret = Some(d.call + d.len);
                if d.write {
                    write(7, d.call, if d.unknown { None } else { ret }, d.ts, i as u64 + 1)
                } else {
                    let seen = (d.pick < values.len()).then(|| values[d.pick]);
                    read(7, d.call, d.call + d.len, seen)
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_search_agrees_with_trying_every_order(drafts in drafts()) {
            let ops = history(&drafts);
            prop_assert_eq!(check(&ops).violations.is_empty(), naive(&ops), "{:?}", ops);
        }
    }
}
