//! Feature values of matched rows: taken file by file, then interleaved into the answer's
//! columns in spine order.
//!
//! Pass 1 keeps them itself when it can (`Kept`): each file, read whole, gives the values of
//! the rows that were a spine slot's latest event when offered. The final match of a slot
//! was its latest when offered, so it is always among them; rows beaten since are dropped
//! from time to time (`compact`), which bounds what is kept by about twice the spine's
//! matches. Files are read newest first, so that few rows are beaten at all. When the kept
//! values outgrow their share of the budget, pass 1 stops keeping them and pass 2 reads
//! the matched rows' files again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use arrow_schema::DataType;
use quiver_core::Error as CoreError;
use quiver_core::asof::Latest;

use crate::Result;
use crate::spill::Tracker;

/// Where a match is: (file, row in the file).
pub(crate) type Place = (u32, u32);

/// Some rows of one file, sorted, and per feature their values in that order.
pub(crate) struct Taken {
    pub rows: Vec<u32>,
    pub values: Vec<ArrayRef>,
}

impl Taken {
    /// `rows` (sorted, numbered across `batches` in order) of the `names` columns.
    pub fn from_batches(batches: &[RecordBatch], rows: Vec<u32>, names: &[String], path: &str) -> Result<Taken> {
        let mut picked: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(batches.len()); names.len()];
        let mut first = 0u32;
        // Each batch gives its own rows: the file is never copied whole.
        for batch in batches {
            let end = first + batch.num_rows() as u32;
            let wanted = &rows[rows.partition_point(|&r| r < first)..rows.partition_point(|&r| r < end)];
            let indices = UInt32Array::from_iter_values(wanted.iter().map(|r| r - first));
            for (name, picked) in names.iter().zip(&mut picked) {
                picked.push(arrow_select::take::take(column(batch, name, path)?.as_ref(), &indices, None)?);
            }
            first = end;
        }
        let values = picked
            .iter()
            .map(|arrays| {
                let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                Ok(arrow_select::concat::concat(&arrays)?)
            })
            .collect::<Result<_>>()?;
        Ok(Taken { rows, values })
    }

    fn bytes(&self) -> u64 {
        (size_of_val(self.rows.as_slice()) + self.values.iter().map(|v| v.get_array_memory_size()).sum::<usize>())
            as u64
    }

    /// Only the rows of `keep` (sorted; those not held are ignored).
    fn retain(&mut self, keep: &[u32]) -> Result<()> {
        let mut positions = Vec::new();
        let mut k = 0;
        for (i, row) in self.rows.iter().enumerate() {
            k += keep[k..].partition_point(|r| r < row);
            if keep.get(k) == Some(row) {
                positions.push(i as u32);
            }
        }
        let indices = UInt32Array::from(positions);
        self.rows = indices.values().iter().map(|&i| self.rows[i as usize]).collect();
        self.values =
            self.values.iter().map(|v| arrow_select::take::take(v, &indices, None)).collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// The feature values pass 1 keeps, per file of the join (see the module's doc).
pub(crate) struct Kept {
    files: Vec<Option<Taken>>,
    rows: usize,
    bytes: u64,
    /// Rows beyond which the beaten ones are dropped: twice the slots, so that dropping
    /// them at least halves what is kept.
    compact_at: usize,
    /// Bytes beyond which, once compacted, nothing more is kept.
    limit: u64,
    /// Cleared when pass 1 gives up keeping; read by the reading tasks.
    keeping: Arc<AtomicBool>,
}

impl Kept {
    pub fn new(files: usize, slots: usize, limit: u64) -> Kept {
        Kept {
            files: (0..files).map(|_| None).collect(),
            rows: 0,
            bytes: 0,
            compact_at: (2 * slots).max(1),
            limit,
            keeping: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The flag the files' tasks read: still keeping values?
    pub fn keeping(&self) -> Arc<AtomicBool> {
        self.keeping.clone()
    }

    /// Adds a file's kept rows, then compacts (or gives up) when they grew too many.
    pub fn add(&mut self, file: usize, taken: Taken, latest: &Latest<Place>, tracker: &Tracker) -> Result<()> {
        if !self.keeping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = taken.bytes();
        tracker.hold(bytes);
        (self.rows, self.bytes) = (self.rows + taken.rows.len(), self.bytes + bytes);
        self.files[file] = Some(taken);
        if self.rows > self.compact_at || self.bytes > self.limit {
            self.compact(latest, tracker)?;
            // Most of what is kept still wins: the next compaction would come soon after.
            if self.bytes > self.limit / 2 {
                self.give_up(tracker);
            }
        }
        Ok(())
    }

    /// Drops the kept rows that are no slot's latest any more.
    fn compact(&mut self, latest: &Latest<Place>, tracker: &Tracker) -> Result<()> {
        let mut winners: Vec<Vec<u32>> = vec![Vec::new(); self.files.len()];
        for (file, row) in latest.kept() {
            if self.files[file as usize].is_some() {
                winners[file as usize].push(row);
            }
        }
        tracker.release(self.bytes);
        (self.rows, self.bytes) = (0, 0);
        for (taken, mut keep) in self.files.iter_mut().zip(winners) {
            if let Some(taken) = taken {
                keep.sort_unstable();
                taken.retain(&keep)?;
                (self.rows, self.bytes) = (self.rows + taken.rows.len(), self.bytes + taken.bytes());
            }
        }
        tracker.hold(self.bytes);
        Ok(())
    }

    fn give_up(&mut self, tracker: &Tracker) {
        self.keeping.store(false, Ordering::Relaxed);
        self.files.iter_mut().for_each(|f| *f = None);
        tracker.release(self.bytes);
        (self.rows, self.bytes) = (0, 0);
    }

    /// Every file's kept rows, unless pass 1 gave up keeping them; releases them from `tracker`.
    pub fn finish(self, tracker: &Tracker) -> Option<Vec<Option<Taken>>> {
        tracker.release(self.bytes);
        self.keeping.load(Ordering::Relaxed).then_some(self.files)
    }
}

/// Every file's taken values, and where each spine row's match is among them: the answer's
/// feature columns are built from it one at a time, so that the cores share them.
pub(crate) struct Gathered {
    held: Vec<Taken>,
    /// Per spine row, by position: (index in `held`, index in its rows), or past the end of
    /// `held` for no match (a null).
    picks: Vec<(usize, usize)>,
}

impl Gathered {
    /// Finds the match (`place`) of each spine row among `taken` (per file).
    pub fn new(places: impl Iterator<Item = Option<Place>>, taken: Vec<Option<Taken>>) -> Result<Gathered> {
        // The files that gave values, and where each file's are among them.
        let (mut held, mut at) = (Vec::new(), vec![None; taken.len()]);
        for (i, t) in taken.into_iter().enumerate() {
            if let Some(t) = t {
                at[i] = Some(held.len());
                held.push(t);
            }
        }
        let null_slot = (held.len(), 0);
        let picks = places
            .map(|place| {
                let Some((file, row)) = place else { return Ok(null_slot) };
                let missing =
                    || CoreError::Internal(format!("the values of matched row {row} of file {file} went missing"));
                let t = at.get(file as usize).copied().flatten().ok_or_else(missing)?;
                Ok((t, held[t].rows.binary_search(&row).map_err(|_| missing())?))
            })
            .collect::<Result<_>>()?;
        Ok(Gathered { held, picks })
    }

    /// Feature `f`'s answer column, of type `ty`.
    pub fn column(&self, f: usize, ty: &DataType) -> Result<ArrayRef> {
        let null = new_null_array(ty, 1);
        let mut arrays: Vec<&dyn Array> = self.held.iter().map(|t| t.values[f].as_ref()).collect();
        arrays.push(null.as_ref());
        Ok(arrow_select::interleave::interleave(&arrays, &self.picks)?)
    }
}

pub(crate) fn column<'b>(batch: &'b RecordBatch, name: &str, path: &str) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| CoreError::Internal(format!("file {path} has no column '{name}'")).into())
}

#[cfg(test)]
mod tests {
    use arrow_array::Float64Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use proptest::prelude::*;
    use quiver_core::asof::{EventRow, SpineRow, SpineSlots, asof_join};

    use super::*;

    /// Folds `files` of (key, ts, value) into the spine's slots in file order, keeping the
    /// winners' values with `kept`; answers each spine row's value.
    fn fold(spine: &[SpineRow<u32>], files: &[Vec<(u32, i64, f64)>], mut kept: Kept) -> Option<Vec<Option<f64>>> {
        let (slots, tracker) = (SpineSlots::new(spine), Tracker::default());
        let mut latest = Latest::new(&slots);
        let mut seq = 0;
        for (f, events) in files.iter().enumerate() {
            let mut won = Vec::new();
            for (row, (key, ts, _)) in events.iter().enumerate() {
                seq += 1;
                if let Some(slot) = slots.slot(*key, *ts)
                    && latest.offer(slot, *ts, seq, (f as u32, row as u32))
                {
                    won.push(row as u32);
                }
            }
            if won.is_empty() {
                continue;
            }
            let values = Float64Array::from_iter_values(events.iter().map(|e| e.2));
            let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).unwrap();
            let taken = Taken::from_batches(&[batch], won, &["v".to_string()], "f").unwrap();
            kept.add(f, taken, &latest, &tracker).unwrap();
        }
        let taken = kept.finish(&tracker);
        assert_eq!(tracker.held(), 0, "everything kept is released");
        let taken = taken?;
        let places = latest.matches(&slots, 0).into_iter().map(|m| m.map(|(_, place)| place));
        let column = Gathered::new(places, taken).unwrap().column(0, &DataType::Float64).unwrap();
        let values = column.as_primitive::<Float64Type>();
        Some((0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i))).collect())
    }

    fn kept(files: usize, compact_at: usize, limit: u64) -> Kept {
        let keeping = Arc::new(AtomicBool::new(true));
        Kept { files: (0..files).map(|_| None).collect(), rows: 0, bytes: 0, compact_at, limit, keeping }
    }

    proptest! {
        /// Compacted after every file or never, the kept values are the model's matches;
        /// with no room for them, nothing is answered (pass 2 reads them).
        #[test]
        fn kept_values_are_the_matches_compacted_or_not(
            spine in proptest::collection::vec((0u32..4, 0i64..20), 1..20),
            files in proptest::collection::vec(proptest::collection::vec((0u32..4, 0i64..20, 0.0f64..1.0), 0..15), 1..5),
        ) {
            let spine: Vec<SpineRow<u32>> = spine.into_iter().map(|(key, ts)| SpineRow { key, ts }).collect();
            let events: Vec<(u32, i64, f64)> = files.iter().flatten().copied().collect();
            let rows: Vec<EventRow<u32>> =
                events.iter().enumerate().map(|(i, e)| EventRow { key: e.0, ts: e.1, seq: i as u64 + 1 }).collect();
            let model: Vec<Option<f64>> =
                asof_join(&spine, &rows, 0).into_iter().map(|m| m.map(|i| events[i].2)).collect();
            prop_assert_eq!(fold(&spine, &files, kept(files.len(), usize::MAX, u64::MAX)), Some(model.clone()));
            prop_assert_eq!(fold(&spine, &files, kept(files.len(), 0, u64::MAX)), Some(model));
            let any_won = rows.iter().any(|e| spine.iter().any(|s| s.key == e.key && e.ts <= s.ts));
            let scant = fold(&spine, &files, kept(files.len(), usize::MAX, 1));
            prop_assert_eq!(scant.is_none(), any_won, "gives up once it keeps anything");
        }
    }
}
