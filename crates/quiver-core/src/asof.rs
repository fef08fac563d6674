//! The point-in-time ("as-of") join: for each training example, the feature value that was
//! known at the example's time and no later, so that training never sees the future.
//!
//! The rule matches the online store's: last writer wins by `(event time, ingestion order)`,
//! and a TTL keeps a value fresh while `event_ts > t - ttl`, the bound `row::is_expired` uses.
//! Both inputs are sorted once by key and time and swept together, so the cost is
//! O((n + m) log(n + m)) rather than one scan of the events per spine row.

/// One spine row: the entity's key (any ordered key: encoded bytes, or a dense id) and the
/// time the training example is "as of" (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpineRow<K> {
    pub key: K,
    pub ts: i64,
}

/// One feature event: entity key, event time (µs), and ingestion order (larger = ingested later; unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRow<K> {
    pub key: K,
    pub ts: i64,
    pub seq: u64,
}

/// For each spine row (in input order), the index into `events` of the matching event, or None.
///
/// The match for `(k, t)` is the event of key `k` with the greatest `(ts, seq)` such that
/// `ts <= t` and, when `ttl_micros > 0`, `ts > t - ttl_micros` (saturating). A `ttl_micros`
/// of 0 or less sets no lower bound. Inputs need not be sorted.
pub fn asof_join<K: Ord + Copy>(spine: &[SpineRow<K>], events: &[EventRow<K>], ttl_micros: i64) -> Vec<Option<usize>> {
    // Sorted copies rather than sorted indices: the sweep then reads memory in order.
    let mut spine_order: Vec<(K, i64, usize)> = spine.iter().enumerate().map(|(i, s)| (s.key, s.ts, i)).collect();
    spine_order.sort_unstable();
    let mut event_order: Vec<(K, i64, u64, usize)> =
        events.iter().enumerate().map(|(i, e)| (e.key, e.ts, e.seq, i)).collect();
    event_order.sort_unstable();
    sweep(spine.len(), spine_order.into_iter(), event_order.into_iter().map(|(k, ts, _, e)| (k, ts, e)), ttl_micros)
}

/// `asof_join` for dense integer keys (ids below `u32::MAX`, as retrieval numbers the
/// spine's keys), as a fold: see `SpineSlots`.
pub fn asof_join_dense(spine: &[SpineRow<u32>], events: &[EventRow<u32>], ttl_micros: i64) -> Vec<Option<usize>> {
    if u32::try_from(spine.len()).is_err() {
        return asof_join(spine, events, ttl_micros);
    }
    let slots = SpineSlots::new(spine);
    let mut latest = Latest::new(&slots);
    for (i, e) in events.iter().enumerate() {
        if let Some(slot) = slots.slot(e.key, e.ts) {
            latest.offer(slot, e.ts, e.seq, i);
        }
    }
    latest.matches(&slots, ttl_micros).into_iter().map(|m| m.map(|(_, i)| i)).collect()
}

/// The spine rows of a join on dense keys, sorted by (key, time): each is a "slot". An event
/// of key `k` at time `ts` can match exactly the spine rows of `k` from the first slot whose
/// time is `ts` or later (found by binary search) onwards. So a join need not hold its
/// events: each is offered to that one slot (`Latest`), which keeps the greatest
/// `(ts, seq)`, and a spine row's match is the greatest over its key's slots up to its own.
/// That costs O(spine) memory and O(log) per event, in any order of the events.
pub struct SpineSlots {
    /// Spine positions in (key, time) order.
    order: Vec<u32>,
    /// The time of each slot.
    times: Vec<i64>,
    /// Where each key's slots start; the last entry is where the last key's end.
    starts: Vec<u32>,
}

impl SpineSlots {
    /// Bytes per spine row of the slots and of their `Latest` (one payload word), and of
    /// the sort that builds them.
    pub const ROW_BYTES: u64 = (4 + 8 + 16 + size_of::<Option<(i64, u64, u64)>>()) as u64;

    /// The slots of `spine`, whose keys are dense ids and whose length fits in a `u32`.
    pub fn new(spine: &[SpineRow<u32>]) -> SpineSlots {
        let mut sorted: Vec<u128> = spine.iter().enumerate().map(|(i, s)| pack(s.key, s.ts, i)).collect();
        sorted.sort_unstable();
        let keys = spine.iter().map(|s| s.key as usize + 1).max().unwrap_or(0);
        let mut starts = vec![0u32; keys + 1];
        let (mut order, mut times) = (Vec::with_capacity(spine.len()), Vec::with_capacity(spine.len()));
        for word in sorted {
            let (key, ts, position) = unpack(word);
            starts[key as usize + 1] += 1;
            order.push(position as u32);
            times.push(ts);
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        SpineSlots { order, times, starts }
    }

    /// The slot an event of `key` at `ts` goes to: the first of the key's whose time is `ts`
    /// or later; none when the key has no spine row that late.
    pub fn slot(&self, key: u32, ts: i64) -> Option<u32> {
        let (start, end) = (*self.starts.get(key as usize)?, *self.starts.get(key as usize + 1)?);
        let times = &self.times[start as usize..end as usize];
        let at = start + times.partition_point(|&t| t < ts) as u32;
        (at < end).then_some(at)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Per slot of `SpineSlots`, the greatest `(ts, seq)` offered to it, with what the caller
/// keeps of that event (`T`: where it is, say).
pub struct Latest<T> {
    best: Vec<Option<(i64, u64, T)>>,
}

impl<T> Default for Latest<T> {
    fn default() -> Latest<T> {
        Latest { best: Vec::new() }
    }
}

impl<T: Copy> Latest<T> {
    pub fn new(slots: &SpineSlots) -> Latest<T> {
        Latest { best: vec![None; slots.len()] }
    }

    /// Keeps the event when it is the slot's latest so far; says whether it was.
    pub fn offer(&mut self, slot: u32, ts: i64, seq: u64, kept: T) -> bool {
        let best = &mut self.best[slot as usize];
        let newer = best.is_none_or(|(t, s, _)| (t, s) < (ts, seq));
        if newer {
            *best = Some((ts, seq, kept));
        }
        newer
    }

    /// What is kept of every slot's latest event so far.
    pub fn kept(&self) -> impl Iterator<Item = T> + '_ {
        self.best.iter().filter_map(|b| b.map(|(_, _, kept)| kept))
    }

    /// For each spine row, by position, the event time and `T` of its match, if any: the
    /// greatest event offered to its key's slots up to its own, when fresh under the TTL
    /// (every other candidate is no newer, so none of them can be).
    pub fn matches(&self, slots: &SpineSlots, ttl_micros: i64) -> Vec<Option<(i64, T)>> {
        let mut out = vec![None; slots.len()];
        for key in slots.starts.windows(2) {
            let mut running: Option<(i64, u64, T)> = None;
            for slot in key[0] as usize..key[1] as usize {
                if let Some((ts, seq, kept)) = self.best[slot]
                    && running.is_none_or(|(t, s, _)| (t, s) < (ts, seq))
                {
                    running = Some((ts, seq, kept));
                }
                out[slots.order[slot] as usize] = running
                    .filter(|&(ts, _, _)| is_fresh(ts, slots.times[slot], ttl_micros))
                    .map(|(ts, _, kept)| (ts, kept));
            }
        }
        out
    }
}

/// key (32 bits) | time with its sign bit flipped, so unsigned order is time order (64) | position (32).
fn pack(key: u32, ts: i64, position: usize) -> u128 {
    (u128::from(key) << 96) | (u128::from((ts as u64) ^ (1 << 63)) << 32) | position as u128
}

fn unpack(word: u128) -> (u32, i64, usize) {
    ((word >> 96) as u32, (((word >> 32) as u64) ^ (1 << 63)) as i64, (word & 0xffff_ffff) as usize)
}

/// The merge of spine rows and events, both in (key, time) order (events ties by ingestion
/// order): for each spine position, the event position that matches it.
fn sweep<K: Ord + Copy>(
    spine_len: usize,
    spine: impl Iterator<Item = (K, i64, usize)>,
    events: impl Iterator<Item = (K, i64, usize)>,
    ttl_micros: i64,
) -> Vec<Option<usize>> {
    let mut out = vec![None; spine_len];
    let mut events = events.peekable();
    // The last event passed so far. Events arrive in (key, ts, seq) order, so for the current
    // spine row it is the greatest (ts, seq) with ts <= t, provided its key is the row's key.
    let mut best: Option<(K, i64, usize)> = None;
    for (key, t, s) in spine {
        // Comparing (key, ts) as a pair also skips every event of a smaller key.
        while let Some(&(k, ts, e)) = events.peek() {
            if (k, ts) > (key, t) {
                break;
            }
            best = Some((k, ts, e));
            events.next();
        }
        // Only the best can pass the TTL: every other candidate is no newer.
        out[s] = best.filter(|&(k, ts, _)| k == key && is_fresh(ts, t, ttl_micros)).map(|(_, _, e)| e);
    }
    out
}

fn is_fresh(event_ts: i64, t: i64, ttl_micros: i64) -> bool {
    ttl_micros <= 0 || event_ts > t.saturating_sub(ttl_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The specification, one spine row at a time against every event.
    fn naive(spine: &[SpineRow<&[u8]>], events: &[EventRow<&[u8]>], ttl_micros: i64) -> Vec<Option<usize>> {
        let mut answers = Vec::new();
        for s in spine {
            let mut best: Option<usize> = None;
            for (i, e) in events.iter().enumerate() {
                if e.key != s.key || e.ts > s.ts {
                    continue;
                }
                if ttl_micros > 0 && e.ts <= s.ts.saturating_sub(ttl_micros) {
                    continue;
                }
                match best {
                    Some(b) if (events[b].ts, events[b].seq) > (e.ts, e.seq) => {}
                    _ => best = Some(i),
                }
            }
            answers.push(best);
        }
        answers
    }

    // "a" is a prefix of "ab" and "" sorts first, so byte order between keys gets exercised.
    // Spine rows may use the last key, which no event has.
    const KEYS: [&[u8]; 5] = [b"a", b"ab", b"b", b"", b"no-events"];
    const EVENT_KEYS: usize = 4;

    fn spine(rows: &[(usize, i64)]) -> Vec<SpineRow<&'static [u8]>> {
        rows.iter().map(|&(k, ts)| SpineRow { key: KEYS[k], ts }).collect()
    }

    fn events(rows: &[(usize, i64, u64)]) -> Vec<EventRow<&'static [u8]>> {
        rows.iter().map(|&(k, ts, seq)| EventRow { key: KEYS[k], ts, seq }).collect()
    }

    /// Events with unique ingestion orders that are unrelated to their input positions.
    fn arb_events(ts: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Vec<(usize, i64, u64)>> {
        proptest::collection::vec((0..EVENT_KEYS, ts), 0..16).prop_flat_map(|rows| {
            let seqs: Vec<u64> = (0..rows.len() as u64).collect();
            Just(seqs)
                .prop_shuffle()
                .prop_map(move |seqs| rows.iter().zip(seqs).map(|(&(k, ts), seq)| (k, ts, seq)).collect::<Vec<_>>())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Spine times start before any event time, so some rows precede all data.
        #[test]
        fn matches_the_naive_model(
            spine_rows in proptest::collection::vec((0..KEYS.len(), -10i64..20), 0..12),
            event_rows in arb_events(-5i64..20),
            ttl in prop::sample::select(vec![0i64, 1, 3, 10]),
        ) {
            let (s, e) = (spine(&spine_rows), events(&event_rows));
            prop_assert_eq!(asof_join(&s, &e, ttl), naive(&s, &e, ttl));
        }

        /// The dense-key join agrees with the model on the same rows (key i as id i).
        #[test]
        fn the_dense_join_matches_the_naive_model(
            spine_rows in proptest::collection::vec((0..KEYS.len(), extreme_ts()), 0..12),
            event_rows in arb_events(prop_oneof![extreme_ts(), -5i64..20]),
            ttl in prop::sample::select(vec![0i64, 1, 3, 10, i64::MAX]),
        ) {
            let (s, e) = (spine(&spine_rows), events(&event_rows));
            let s_ids: Vec<SpineRow<u32>> = spine_rows.iter().map(|&(k, ts)| SpineRow { key: k as u32, ts }).collect();
            let e_ids: Vec<EventRow<u32>> =
                event_rows.iter().map(|&(k, ts, seq)| EventRow { key: k as u32, ts, seq }).collect();
            prop_assert_eq!(asof_join_dense(&s_ids, &e_ids, ttl), naive(&s, &e, ttl));
        }

        #[test]
        fn matches_the_naive_model_at_extreme_times(
            spine_rows in proptest::collection::vec((0..KEYS.len(), extreme_ts()), 0..12),
            event_rows in arb_events(extreme_ts()),
            ttl in prop::sample::select(vec![0i64, 1, 3, i64::MAX - 1, i64::MAX]),
        ) {
            let (s, e) = (spine(&spine_rows), events(&event_rows));
            prop_assert_eq!(asof_join(&s, &e, ttl), naive(&s, &e, ttl));
        }
    }

    fn extreme_ts() -> impl Strategy<Value = i64> + Clone {
        prop::sample::select(vec![i64::MIN, i64::MIN + 1, i64::MIN + 2, -1, 0, 1, i64::MAX - 2, i64::MAX - 1, i64::MAX])
    }

    #[test]
    fn ties_go_to_the_event_ingested_last() {
        let e = events(&[(0, 5, 2), (0, 5, 9), (0, 5, 4)]);
        assert_eq!(asof_join(&spine(&[(0, 5), (0, 6)]), &e, 0), vec![Some(1), Some(1)]);
    }

    #[test]
    fn a_later_event_time_beats_a_later_ingestion() {
        let e = events(&[(0, 7, 1), (0, 3, 2)]);
        assert_eq!(asof_join(&spine(&[(0, 8)]), &e, 0), vec![Some(0)]);
    }

    #[test]
    fn an_event_exactly_at_the_spine_time_matches() {
        let e = events(&[(0, 4, 0), (0, 10, 1), (0, 11, 2)]);
        assert_eq!(asof_join(&spine(&[(0, 10)]), &e, 0), vec![Some(1)]);
    }

    #[test]
    fn the_ttl_bound_is_exclusive() {
        let s = spine(&[(0, 100)]);
        assert_eq!(asof_join(&s, &events(&[(0, 90, 0)]), 10), vec![None], "exactly ttl old is expired");
        assert_eq!(asof_join(&s, &events(&[(0, 91, 0)]), 10), vec![Some(0)], "one µs later is fresh");
    }

    #[test]
    fn an_expired_latest_event_does_not_fall_back_to_an_older_one() {
        let e = events(&[(0, 10, 0), (0, 50, 1)]);
        assert_eq!(asof_join(&spine(&[(0, 55), (0, 100)]), &e, 20), vec![Some(1), None]);
    }

    #[test]
    fn ttl_zero_reaches_back_forever() {
        let e = events(&[(0, i64::MIN, 0)]);
        assert_eq!(asof_join(&spine(&[(0, i64::MAX)]), &e, 0), vec![Some(0)]);
    }

    #[test]
    fn keys_match_exactly_not_by_prefix() {
        // KEYS[0] = "a" is a prefix of KEYS[1] = "ab".
        let e = events(&[(1, 1, 0)]);
        assert_eq!(asof_join(&spine(&[(0, 5), (1, 5)]), &e, 0), vec![None, Some(0)]);
    }

    #[test]
    fn spine_rows_keep_their_input_order() {
        let s = spine(&[(2, 9), (0, 3), (4, 9), (0, 1), (2, 9), (0, 8)]);
        let e = events(&[(0, 7, 3), (2, 2, 0), (0, 2, 1), (0, 0, 2)]);
        assert_eq!(asof_join(&s, &e, 0), vec![Some(1), Some(2), None, Some(3), Some(1), Some(0)]);
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(asof_join::<&[u8]>(&[], &[], 0), vec![]);
        assert_eq!(asof_join(&[], &events(&[(0, 1, 0)]), 5), vec![]);
        assert_eq!(asof_join(&spine(&[(0, 1), (1, 2)]), &[], 5), vec![None, None]);
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        // The bound saturates at i64::MIN, so an event at exactly i64::MIN is never fresh under a TTL,
        // as in `row::is_expired`.
        let s = spine(&[(0, i64::MIN), (0, i64::MAX), (0, 0)]);
        let e = events(&[(0, i64::MIN, 0), (0, i64::MAX, 1)]);
        assert_eq!(asof_join(&s, &e, i64::MAX), vec![None, Some(1), None]);
        assert_eq!(asof_join(&s, &e, 1), vec![None, Some(1), None]);
        assert_eq!(asof_join(&s, &e, 0), vec![Some(0), Some(1), Some(0)]);
    }
}
