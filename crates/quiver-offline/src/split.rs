//! Splitting a retrieval into parts, one per node, and merging their answers.
//!
//! A spine row goes to the part whose range of key hashes holds the hash of its join key of
//! the first feature set's entity (`key::key_hash`, the hash compaction sorts files by; the
//! ranges cut the hash space evenly): every row of one entity is in one part, so each event
//! that set's join needs is kept by one part only, and in compacted files a part reads only
//! the row groups of its range (`sorted`). Parts carry only what a join reads of the
//! spine (every entity's join keys, typed, and the time as µs UTC); labels stay with the
//! node that merges. Each part joins its rows in spine order (`retrieval::point_in_time`),
//! and the merge takes every row's answer from its part, so the whole answer is the one a
//! single join would give, row for row.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow_schema::{Field, Schema};
use quiver_core::ValueType;
use quiver_core::registry::Entity;

use crate::Result;
use crate::convert::row_key_hash;
use crate::retrieval::{Source, answer_fields, key_columns};
use crate::schema::UTC;

/// A spine cut into parts.
#[derive(Debug)]
pub struct SpineParts {
    /// Per part: its rows' join keys and time column (µs UTC), in spine order.
    pub parts: Vec<RecordBatch>,
    /// For every spine row: its part, and its row in that part.
    pub places: Vec<(usize, usize)>,
}

/// The key hashes (inclusive) of part `part` of `count`: the hashes `h` with
/// `h · count / 2⁶⁴ = part`.
pub fn hash_range(part: usize, count: usize) -> (u64, u64) {
    let start = |p: usize| ((p as u128) << 64).div_ceil(count as u128);
    (start(part) as u64, (start(part + 1) - 1) as u64)
}

/// Whether a part of a spine split by `first`'s keys holds every spine key of `entity` in
/// its range of key hashes too: when their join keys are the same.
pub fn routed_alike(first: &Entity, entity: &Entity) -> bool {
    first.join_keys == entity.join_keys
}

/// Cuts `spine` into `count` parts by entity key (see the module's doc). `time_column`
/// names the time column in the parts; `spine_ts` is its value, µs UTC.
pub fn split_spine(
    spine: &RecordBatch,
    spine_ts: &TimestampMicrosecondArray,
    time_column: &str,
    sources: &[Source<'_>],
    count: usize,
) -> Result<SpineParts> {
    // Every join key once, by name (entities may share one), cast to its type.
    let mut keys: BTreeMap<String, ArrayRef> = BTreeMap::new();
    for source in sources {
        for (k, (column, _)) in source.entity.join_keys.iter().zip(key_columns(spine, source.entity)?) {
            keys.entry(k.name.clone()).or_insert(column);
        }
    }
    // The first entity's keys, as cast above: what a row's part is hashed from.
    let routing: Vec<(ArrayRef, ValueType)> = sources
        .first()
        .map_or(&[][..], |s| &s.entity.join_keys)
        .iter()
        .map(|k| (keys[&k.name].clone(), k.ty))
        .collect();
    let count = count.max(1);
    let (mut members, mut places) = (vec![Vec::new(); count], Vec::with_capacity(spine.num_rows()));
    let mut scratch = Vec::new();
    for row in 0..spine.num_rows() {
        let part = ((u128::from(row_key_hash(&mut scratch, &routing, row)) * count as u128) >> 64) as usize;
        places.push((part, members[part].len()));
        members[part].push(row as u32);
    }
    let times: ArrayRef = Arc::new(spine_ts.clone().with_timezone(UTC));
    let mut fields: Vec<Field> = keys.iter().map(|(name, c)| Field::new(name, c.data_type().clone(), false)).collect();
    fields.push(Field::new(time_column, times.data_type().clone(), false));
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<&ArrayRef> = keys.values().chain([&times]).collect();
    let parts = members
        .into_iter()
        .map(|rows| {
            let indices = UInt32Array::from(rows);
            let taken = columns
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), taken)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpineParts { parts, places })
}

/// The whole answer: the spine's own columns, then the answer columns of `sources`, every
/// row taken from the last columns of its part's answer (`answers`, by part) at its place.
pub fn merge_parts(
    spine: &RecordBatch,
    sources: &[Source<'_>],
    answers: &[RecordBatch],
    places: &[(usize, usize)],
) -> Result<RecordBatch> {
    let added = answer_fields(&spine.schema(), sources)?;
    let mut fields: Vec<Field> = spine.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = spine.columns().to_vec();
    for (i, field) in added.iter().enumerate() {
        let arrays = answers
            .iter()
            .map(|answer| {
                let at = (answer.num_columns() + i).checked_sub(added.len());
                at.map(|at| answer.column(at).as_ref()).ok_or_else(|| {
                    quiver_core::Error::Internal(format!("a part's answer lacks column '{}'", field.name())).into()
                })
            })
            .collect::<Result<Vec<&dyn Array>>>()?;
        columns.push(arrow_select::interleave::interleave(&arrays, places)?);
        fields.push(field.clone());
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ranges_cut_the_hash_space_without_gaps_or_overlaps() {
        for count in [1usize, 2, 3, 7] {
            let ranges: Vec<(u64, u64)> = (0..count).map(|p| hash_range(p, count)).collect();
            assert_eq!((ranges[0].0, ranges[count - 1].1), (0, u64::MAX));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0);
            }
            for (p, (lo, hi)) in ranges.iter().enumerate() {
                for h in [*lo, *hi, lo / 2 + hi / 2] {
                    assert_eq!(((u128::from(h) * count as u128) >> 64) as usize, p, "hash {h:x} of {count} parts");
                }
            }
        }
    }
}
