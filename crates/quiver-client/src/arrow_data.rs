//! Arrow data on the wire: a spine given as record batches is sent as one Parquet file (which
//! the node reads like any Parquet spine), and a training set comes back as an Arrow IPC stream.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::SchemaRef;
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

/// A training set's Arrow IPC stream, decoded as its bytes arrive (in messages of any
/// size): the schema first, then batches in spine order.
#[derive(Default)]
pub(crate) struct AnswerDecoder(StreamDecoder);

fn not_ipc(e: arrow_schema::ArrowError) -> Error {
    Error::Arrow(format!("answer is not Arrow IPC: {e}"))
}

impl AnswerDecoder {
    /// The batches these bytes complete.
    pub(crate) fn push(&mut self, bytes: Vec<u8>) -> Result<Vec<RecordBatch>> {
        let mut buffer = Buffer::from(bytes);
        let mut batches = Vec::new();
        while !buffer.is_empty() {
            match self.0.decode(&mut buffer).map_err(not_ipc)? {
                Some(batch) => batches.push(batch),
                None if buffer.is_empty() => break,
                None => {}
            }
        }
        Ok(batches)
    }

    pub(crate) fn schema(&self) -> Option<SchemaRef> {
        self.0.schema()
    }

    /// Fails unless the stream ended after a whole message.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.0.finish().map_err(not_ipc)
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
    fn an_answer_decodes_batch_by_batch_from_pieces_of_any_size() {
        let bytes = ipc(&[batch(&[4, 5]), batch(&[6])]);
        for piece in [1, 7, 100, bytes.len()] {
            let mut decoder = AnswerDecoder::default();
            let mut batches = Vec::new();
            for part in bytes.chunks(piece) {
                batches.extend(decoder.push(part.to_vec()).unwrap());
            }
            decoder.finish().unwrap();
            assert_eq!(batches, vec![batch(&[4, 5]), batch(&[6])], "pieces of {piece} bytes");
            assert_eq!(decoder.schema(), Some(batch(&[1]).schema()));
        }
        let mut cut = AnswerDecoder::default();
        cut.push(bytes[..bytes.len() - 3].to_vec()).unwrap();
        assert!(cut.finish().is_err(), "a stream that ends mid-message is reported");
        let mut junk = AnswerDecoder::default();
        let pushed = junk.push(b"not arrow at all".to_vec());
        assert!(pushed.is_err() || junk.finish().is_err(), "junk is reported, at the latest at its end");
    }
}
