//! Arrow data on the wire: a spine given as record batches is sent as one Parquet file (which
//! the node reads like any Parquet spine), and a training set comes back as an Arrow IPC stream.

use std::io::Cursor;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use parquet::arrow::ArrowWriter;
use quiver_core::offline::SpineFormat;

use crate::error::{Error, Result};
use crate::types::Spine;

/// The spine's bytes and their format, as a request carries them.
pub(crate) fn spine_bytes(spine: Spine) -> Result<(Vec<u8>, SpineFormat)> {
    match spine {
        Spine::Csv(bytes) => Ok((bytes, SpineFormat::Csv)),
        Spine::Parquet(bytes) => Ok((bytes, SpineFormat::Parquet)),
        Spine::Batches(batches) => Ok((to_parquet(&batches)?, SpineFormat::Parquet)),
    }
}

fn to_parquet(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches.first().ok_or_else(|| Error::Arrow("a spine needs at least one batch".into()))?.schema();
    let bad = |e: parquet::errors::ParquetError| Error::Arrow(format!("spine: {e}"));
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).map_err(bad)?;
    for batch in batches {
        writer.write(batch).map_err(bad)?;
    }
    writer.close().map_err(bad)?;
    Ok(out)
}

/// The one batch of a training-set answer; an empty stream is an empty answer.
pub(crate) fn batch_from_ipc(ipc: Vec<u8>) -> Result<RecordBatch> {
    let bad = |e: arrow_schema::ArrowError| Error::Arrow(format!("answer is not Arrow IPC: {e}"));
    let reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(bad)?;
    let schema = reader.schema();
    let mut batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema)),
        1 => Ok(batches.remove(0)),
        n => Err(Error::Arrow(format!("answer held {n} batches; expected one"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_ipc::writer::StreamWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batch(ids: &[i64]) -> RecordBatch {
        let labels: Vec<String> = ids.iter().map(|i| format!("label {i}")).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("driver_id", Arc::new(Int64Array::from(ids.to_vec()))),
            ("label", Arc::new(StringArray::from(labels))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
        batches.iter().for_each(|b| writer.write(b).unwrap());
        writer.finish().unwrap();
        drop(writer);
        out
    }

    #[test]
    fn batches_travel_as_one_parquet_file_with_every_row_in_order() {
        let (bytes, format) = spine_bytes(Spine::Batches(vec![batch(&[1, 2]), batch(&[3])])).unwrap();
        assert_eq!(format, SpineFormat::Parquet);
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let merged = arrow_select::concat::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(merged, batch(&[1, 2, 3]));
    }

    #[test]
    fn file_spines_pass_through_and_no_batches_is_refused() {
        assert_eq!(spine_bytes(Spine::Csv(b"a\n".to_vec())).unwrap(), (b"a\n".to_vec(), SpineFormat::Csv));
        assert!(matches!(spine_bytes(Spine::Batches(vec![])), Err(Error::Arrow(_))));
    }

    #[test]
    fn an_answer_is_one_batch_and_anything_else_is_reported() {
        assert_eq!(batch_from_ipc(ipc(&[batch(&[4, 5])])).unwrap(), batch(&[4, 5]));
        assert!(
            matches!(batch_from_ipc(ipc(&[batch(&[4]), batch(&[5])])), Err(Error::Arrow(m)) if m.contains("2 batches"))
        );
        assert!(matches!(batch_from_ipc(b"not arrow".to_vec()), Err(Error::Arrow(_))));
    }
}
