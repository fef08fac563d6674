//! Feature statistics of Arrow data: one mergeable summary per column, computed once per
//! file (or saved dataset) and merged on read for any range.

use arrow_array::RecordBatch;
use quiver_core::ValueType;
use quiver_core::stats::FeatureSummary;

use crate::convert::array_value;
use crate::error::Result;

/// Summaries of the named columns over all `batches`; a column missing from a batch is an
/// error naming it (files always carry every feature of their version).
pub fn summarize(batches: &[RecordBatch], columns: &[(String, ValueType)]) -> Result<Vec<(String, FeatureSummary)>> {
    columns
        .iter()
        .map(|(name, ty)| {
            let mut summary = FeatureSummary::new(*ty);
            for batch in batches {
                let array = batch.column_by_name(name).ok_or_else(|| {
                    quiver_core::Error::InvalidArgument(format!("column '{name}' is missing from the data"))
                })?;
                for row in 0..array.len() {
                    summary.observe(&array_value(array.as_ref(), row, *ty))?;
                }
            }
            Ok((name.clone(), summary))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, StringArray};

    use super::*;

    #[test]
    fn each_column_gets_exact_counts_and_moments() {
        let batch = RecordBatch::try_from_iter([
            ("x", Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])) as _),
            ("c", Arc::new(StringArray::from(vec!["a", "b", "a"])) as _),
        ])
        .unwrap();
        let columns = [("x".to_string(), ValueType::Float64), ("c".to_string(), ValueType::String)];
        let summaries = summarize(&[batch.clone(), batch], &columns).unwrap();
        let x = &summaries[0].1;
        assert_eq!((x.count(), x.nulls(), x.mean()), (6, 2, Some(2.0)));
        assert_eq!(summaries[1].1.top_values()[0], ("a".to_string(), 4));
        let missing = summarize(&[], &[("y".into(), ValueType::Int64)]).unwrap();
        assert_eq!(missing[0].1.count(), 0, "no batches: an empty summary");
    }
}
