//! Files sorted by (entity-key hash, event time, sequence), as compaction writes them. The
//! footer names each row group's first and last key hash (`files::KEY_HASHES`), so a
//! retrieval joining one range of key hashes (a part of a split one, `split`) reads only the
//! row groups that hold it.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{RecordBatch, UInt32Array};
use parquet::file::metadata::KeyValue;
use quiver_core::registry::{Entity, FeatureSet};

use crate::Result;
use crate::convert::row_key_hash;
use crate::files::{DataFile, KEY_HASHES, data_file, write_with};
use crate::schema::{SEQ_COLUMN, columns};
use crate::store::OfflineStore;

/// `batch` (in file schema) ordered by (entity-key hash, event time, sequence), and the
/// key hash of each of its rows in that order.
pub fn sort_by_key_hash(batch: &RecordBatch, entity: &Entity, fs: &FeatureSet) -> Result<(RecordBatch, Vec<u64>)> {
    let keys = entity.join_keys.len();
    let missing = |what: &str| quiver_core::Error::Internal(format!("a file of {} lacks {what}", fs.versioned_name()));
    let ts = batch
        .columns()
        .get(keys)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| missing("its time column"))?;
    let seq = batch.column_by_name(SEQ_COLUMN).ok_or_else(|| missing(SEQ_COLUMN))?.as_primitive::<UInt64Type>();
    let key_columns: Vec<_> =
        columns(entity, fs).into_iter().take(keys).enumerate().map(|(c, (_, ty, _))| (batch.column(c), ty)).collect();
    let mut scratch = Vec::with_capacity(16);
    let mut order: Vec<(u64, i64, u64, u32)> = (0..batch.num_rows())
        .map(|row| (row_key_hash(&mut scratch, &key_columns, row), ts.value(row), seq.value(row), row as u32))
        .collect();
    order.sort_unstable();
    let indices = UInt32Array::from_iter_values(order.iter().map(|o| o.3));
    let hashes = order.into_iter().map(|o| o.0).collect();
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((RecordBatch::try_new(batch.schema(), columns)?, hashes))
}

/// Writes a batch `sort_by_key_hash` ordered, with its rows' `hashes`, in row groups of
/// `rows_per_group`; returns its manifest entry. Its time column is `ts_index`.
pub async fn write_sorted_file(
    store: &OfflineStore,
    path: &str,
    (batch, hashes): (&RecordBatch, &[u64]),
    ts_index: usize,
    rows_per_group: usize,
) -> Result<DataFile> {
    let footer = |groups: &[parquet::file::metadata::RowGroupMetaData]| {
        let mut first = 0usize;
        let mut bounds = Vec::with_capacity(groups.len());
        for group in groups {
            let last = (first + group.num_rows() as usize).checked_sub(1)?;
            bounds.push(format!("{:x}-{:x}", hashes.get(first)?, hashes.get(last)?));
            first = last + 1;
        }
        Some(KeyValue::new(KEY_HASHES.to_string(), bounds.join(",")))
    };
    let bytes = write_with(store, path, batch, rows_per_group, footer).await?;
    Ok(data_file(path, batch, ts_index, bytes))
}
