//! The offline store: training sets, saved datasets, manifest files.

use quiver_client::{DataFile, Dataset, RecordBatch};
use quiver_core::time::format_timestamp;

use super::format::table;

/// The first `limit` rows of a batch as a table, with a line saying how many there are.
/// The first `limit` rows of `batch`, the head of an answer of `total` rows.
pub fn batch_preview(batch: &RecordBatch, limit: usize, total: usize) -> anyhow::Result<String> {
    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema();
    let headers: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows: Vec<Vec<String>> =
        (0..batch.num_rows().min(limit)).map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect()).collect();
    let mut out = table(&headers, &rows);
    let shown = batch.num_rows().min(limit);
    if total > shown {
        out += &format!("... {} more rows\n", total - shown);
    }
    Ok(out)
}

pub fn dataset_listing(datasets: &[Dataset]) -> String {
    let rows: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.rows.to_string(),
                d.feature_sets.join(", "),
                d.spine.clone(),
                format_timestamp(d.created_at),
            ]
        })
        .collect();
    table(&["DATASET", "ROWS", "FEATURE SETS", "SPINE", "CREATED"], &rows)
}

pub fn describe_dataset(d: &Dataset) -> String {
    format!(
        "dataset       {}\npath          {}\nrows          {}\nbytes         {}\nvector        {}\nfeature sets  {}\nfeatures      {}\nspine         {}\nspine times   {} .. {}\ncreated       {}\n",
        d.name,
        d.path,
        d.rows,
        d.bytes,
        d.vector.as_deref().unwrap_or("-"),
        d.feature_sets.join(", "),
        d.features.join(", "),
        d.spine,
        format_timestamp(d.spine_from),
        format_timestamp(d.spine_to),
        format_timestamp(d.created_at),
    )
}

/// The manifest of a feature set: one line per committed file, then the totals.
pub fn files_table(files: &[DataFile]) -> String {
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            vec![
                f.path.clone(),
                f.rows.to_string(),
                f.bytes.to_string(),
                format_timestamp(f.min_ts),
                format_timestamp(f.max_ts),
            ]
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.rows).sum();
    let listing = table(&["PATH", "ROWS", "BYTES", "FIRST EVENT", "LAST EVENT"], &rows);
    format!("{listing}{} files, {total} rows\n", files.len())
}
