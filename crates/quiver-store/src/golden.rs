//! Golden bytes of stored records, for the tests of each crate that defines a kind: a change
//! to any kind's bytes needs a new format and a migration (`codec::Record`).

use std::fmt::Debug;

use crate::codec::{MARK, Record, encode, load, store_at};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sample` is stored bare as `bare` (hex), in its envelope as `MARK`, its format, then the
/// same bytes; both read back as `sample` (compared by their bytes: not every kind has `==`).
#[track_caller]
pub fn pinned<T: Record + Debug>(sample: T, bare: &str) {
    let stored = store_at(&sample, 1).unwrap();
    assert_eq!(hex(&stored), bare, "the bare form of {sample:?}");
    let enveloped = store_at(&sample, 2).unwrap();
    assert_eq!(enveloped, [&MARK[..], &[T::FORMAT], &stored].concat());
    for form in [stored.as_slice(), &enveloped] {
        assert_eq!(encode(&load::<T>(form).unwrap()).unwrap(), stored, "{sample:?} read back");
    }
}
