//! Dense ids of a spine's distinct entity keys: a join then compares integers, and an event
//! of a key the spine does not hold is dropped as soon as it is read.
//!
//! A single integer join key (the usual entity id) is looked up as the integer; other keys
//! by their encoding (`convert::encode_key_cell`). Pass 1 looks up every event of the
//! history, so the integer case skips encoding, byte compares and a streaming hash: ahash
//! (already arrow's) hashes an integer in a few instructions, and keys of a narrow range
//! (ids counted up from one, say) skip the hash map too (`Dense`).

use std::collections::HashMap;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use quiver_core::ValueType;

use crate::convert::encode_key_cell;

type Map<K> = HashMap<K, u32, ahash::RandomState>;

/// Ids 0, 1, … of the keys in the order they were first inserted.
pub(crate) enum KeyIds {
    Int { map: Map<i64>, dense: Option<Dense> },
    Encoded(Map<Vec<u8>>),
}

/// Integer keys within a narrow range, looked up by index (`KeyIds::densify`): a few bytes
/// per key that stay in the caches, where every probe of a hash map misses them once the
/// keys outnumber what the caches hold (DuckDB's "perfect hash join" does the same).
pub(crate) struct Dense {
    min: i64,
    ids: Vec<u32>,
}

/// An entry of `Dense` without a key.
const NO_ID: u32 = u32::MAX;
/// A dense table takes at most this many entries per key.
const DENSE_SLACK: u64 = 8;

/// One batch's join-key columns, as `KeyIds` reads them. They must be of the join keys'
/// types (files hold them so; a spine's are cast first).
pub(crate) enum KeyColumns<'a> {
    Int64(&'a [i64]),
    Int32(&'a [i32]),
    Encoded { columns: Vec<(&'a dyn Array, ValueType)>, scratch: Vec<u8> },
}

/// Whether keys of these types are looked up as one integer.
fn is_int(types: impl IntoIterator<Item = ValueType>) -> bool {
    let mut types = types.into_iter();
    matches!((types.next(), types.next()), (Some(ValueType::Int64 | ValueType::Int32), None))
}

impl<'a> KeyColumns<'a> {
    pub fn new(columns: Vec<(&'a dyn Array, ValueType)>) -> KeyColumns<'a> {
        match columns.as_slice() {
            [(array, ValueType::Int64)] => KeyColumns::Int64(array.as_primitive::<Int64Type>().values()),
            [(array, ValueType::Int32)] => KeyColumns::Int32(array.as_primitive::<Int32Type>().values()),
            _ => KeyColumns::Encoded { columns, scratch: Vec::new() },
        }
    }

    fn int(&self, row: usize) -> Option<i64> {
        match self {
            KeyColumns::Int64(values) => Some(values[row]),
            KeyColumns::Int32(values) => Some(i64::from(values[row])),
            KeyColumns::Encoded { .. } => None,
        }
    }

    fn encoded(&mut self, row: usize) -> &[u8] {
        let KeyColumns::Encoded { columns, scratch } = self else { return &[] };
        scratch.clear();
        for (array, ty) in columns.iter() {
            encode_key_cell(scratch, *array, row, *ty);
        }
        scratch
    }
}

impl KeyIds {
    /// No ids yet, for keys of `types`.
    pub fn new(types: impl IntoIterator<Item = ValueType>) -> KeyIds {
        match is_int(types) {
            true => KeyIds::Int { map: Map::default(), dense: None },
            false => KeyIds::Encoded(Map::default()),
        }
    }

    /// The id of `row`'s key, if it has one.
    pub fn id(&self, keys: &mut KeyColumns<'_>, row: usize) -> Option<u32> {
        match self {
            KeyIds::Int { dense: Some(dense), .. } => {
                // Keys below `min` wrap around to offsets past the table's end.
                let offset = usize::try_from(keys.int(row)?.wrapping_sub(dense.min) as u64).ok()?;
                dense.ids.get(offset).copied().filter(|&id| id != NO_ID)
            }
            KeyIds::Int { map, dense: None } => map.get(&keys.int(row)?).copied(),
            KeyIds::Encoded(map) => map.get(keys.encoded(row)).copied(),
        }
    }

    /// Makes lookups of integer keys index a table (`Dense`) when the keys' range is at
    /// most `DENSE_SLACK` times their number; until the next insert.
    pub fn densify(&mut self) {
        let KeyIds::Int { map, dense } = self else { return };
        let (Some(&min), Some(&max)) = (map.keys().min(), map.keys().max()) else { return };
        if max.abs_diff(min) >= DENSE_SLACK * map.len() as u64 {
            return;
        }
        let mut ids = vec![NO_ID; max.abs_diff(min) as usize + 1];
        for (key, &id) in map.iter() {
            ids[key.abs_diff(min) as usize] = id;
        }
        *dense = Some(Dense { min, ids });
    }

    /// The id of `row`'s key, the next one if it is new.
    pub fn insert(&mut self, keys: &mut KeyColumns<'_>, row: usize) -> u32 {
        let next = self.len() as u32;
        match self {
            KeyIds::Int { map, dense } => {
                *dense = None;
                *map.entry(keys.int(row).unwrap_or_default()).or_insert(next)
            }
            KeyIds::Encoded(map) => match map.get(keys.encoded(row)) {
                Some(&id) => id,
                None => *map.entry(keys.encoded(row).to_vec()).or_insert(next),
            },
        }
    }

    /// Numbers the ids again in the order of `hashes` (one per id); answers each old id's
    /// new one.
    pub fn sort_by(&mut self, hashes: &[u64]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..hashes.len() as u32).collect();
        order.sort_unstable_by_key(|id| hashes[*id as usize]);
        let mut rank = vec![0u32; hashes.len()];
        for (new, old) in order.into_iter().enumerate() {
            rank[old as usize] = new as u32;
        }
        let renumber = |id: &mut u32| *id = rank[*id as usize];
        match self {
            KeyIds::Int { map, dense } => {
                *dense = None;
                map.values_mut().for_each(renumber)
            }
            KeyIds::Encoded(map) => map.values_mut().for_each(renumber),
        }
        rank
    }

    pub fn len(&self) -> usize {
        match self {
            KeyIds::Int { map, .. } => map.len(),
            KeyIds::Encoded(map) => map.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray};
    use std::sync::Arc;

    /// Ids of `spine`'s keys, then the ids `events` find: the same whichever way keys are
    /// looked up.
    fn ids(spine: &[(ArrayRef, ValueType)], events: &[(ArrayRef, ValueType)]) -> (Vec<u32>, Vec<Option<u32>>) {
        fn columns(c: &[(ArrayRef, ValueType)]) -> Vec<(&dyn Array, ValueType)> {
            c.iter().map(|(a, t)| (a.as_ref(), *t)).collect()
        }
        let mut ids = KeyIds::new(spine.iter().map(|(_, t)| *t));
        let mut keys = KeyColumns::new(columns(spine));
        let given = (0..spine[0].0.len()).map(|row| ids.insert(&mut keys, row)).collect();
        let mut keys = KeyColumns::new(columns(events));
        let found: Vec<Option<u32>> = (0..events[0].0.len()).map(|row| ids.id(&mut keys, row)).collect();
        ids.densify();
        let dense: Vec<Option<u32>> = (0..events[0].0.len()).map(|row| ids.id(&mut keys, row)).collect();
        assert_eq!(found, dense, "a dense table finds what the map finds");
        (given, found)
    }

    #[test]
    fn a_narrow_range_of_integer_keys_is_looked_up_in_a_table_with_the_same_ids() {
        let int64 = |v: &[i64]| (Arc::new(Int64Array::from(v.to_vec())) as ArrayRef, ValueType::Int64);
        let spine = [int64(&[10, 12, 10, 17])];
        let around = [int64(&[9, 10, 11, 12, 17, 18, i64::MIN, i64::MAX, -10, 10 + 8 * 3])];
        let expected = vec![None, Some(0), None, Some(1), Some(2), None, None, None, None, None];
        assert_eq!(ids(&spine, &around), (vec![0, 1, 0, 2], expected));
        // Keys at both ends of the integers: the range is too wide for a table, and none wraps.
        let extremes = [int64(&[i64::MIN, i64::MAX, i64::MIN + 1])];
        let probes = [int64(&[i64::MIN, i64::MAX, i64::MIN + 1, 0, -1])];
        assert_eq!(ids(&extremes, &probes).1, vec![Some(0), Some(1), Some(2), None, None]);
        let mut table = KeyIds::new([ValueType::Int64]);
        let column = int64(&[10, 11, 12]);
        let mut keys = KeyColumns::new(vec![(column.0.as_ref(), ValueType::Int64)]);
        for row in 0..3 {
            table.insert(&mut keys, row);
        }
        table.densify();
        assert!(matches!(&table, KeyIds::Int { dense: Some(d), .. } if d.ids.len() == 3), "a table of three");
    }

    #[test]
    fn keys_get_dense_ids_by_first_sight_and_unknown_keys_none() {
        let int64 = |v: &[i64]| (Arc::new(Int64Array::from(v.to_vec())) as ArrayRef, ValueType::Int64);
        let int32 = |v: &[i32]| (Arc::new(Int32Array::from(v.to_vec())) as ArrayRef, ValueType::Int32);
        let text = |v: &[&str]| (Arc::new(StringArray::from(v.to_vec())) as ArrayRef, ValueType::String);
        let expected = (vec![0, 1, 0, 2], vec![Some(2), None, Some(0), Some(1)]);
        assert_eq!(ids(&[int64(&[7, -1, 7, 1 << 40])], &[int64(&[1 << 40, 8, 7, -1])]), expected);
        assert_eq!(ids(&[int32(&[7, -1, 7, 40])], &[int32(&[40, 8, 7, -1])]), expected);
        assert_eq!(ids(&[text(&["a", "ab", "a", ""])], &[text(&["", "b", "a", "ab"])]), expected);
        // A composite key: (1, "a") and (1, "ab") differ, as do (1, "a") and (2, "a").
        let spine = [int64(&[1, 1, 1, 2]), text(&["a", "ab", "a", "a"])];
        let events = [int64(&[2, 3, 1, 1]), text(&["a", "a", "a", "ab"])];
        assert_eq!(ids(&spine, &events), expected);
    }

    #[test]
    fn ids_sorted_by_hash_are_found_under_their_new_numbers() {
        let spine = Arc::new(Int64Array::from(vec![7, -1, 9])) as ArrayRef;
        let mut ids = KeyIds::new([ValueType::Int64]);
        let mut keys = KeyColumns::new(vec![(spine.as_ref(), ValueType::Int64)]);
        assert_eq!((0..3).map(|row| ids.insert(&mut keys, row)).collect::<Vec<_>>(), [0, 1, 2]);
        let rank = ids.sort_by(&[30, 10, 20]);
        assert_eq!(rank, [2, 0, 1]);
        assert_eq!((0..3).map(|row| ids.id(&mut keys, row)).collect::<Vec<_>>(), [Some(2), Some(0), Some(1)]);
    }
}
