//! The offline store's types: spine formats, progress reports, manifest files, datasets.

use quiver_core::offline::{DataFile, Dataset, IngestProgress, MaterializeProgress, SpineFormat};
use quiver_core::{Error, Result};

use crate::v1;

pub fn spine_format_to_proto(format: SpineFormat) -> v1::SpineFormat {
    match format {
        SpineFormat::Csv => v1::SpineFormat::Csv,
        SpineFormat::Parquet => v1::SpineFormat::Parquet,
    }
}

/// Refuses a request that names no format, or one this version does not know.
pub fn spine_format_from_proto(format: i32) -> Result<SpineFormat> {
    match v1::SpineFormat::try_from(format) {
        Ok(v1::SpineFormat::Csv) => Ok(SpineFormat::Csv),
        Ok(v1::SpineFormat::Parquet) => Ok(SpineFormat::Parquet),
        Ok(v1::SpineFormat::Unspecified) | Err(_) => {
            Err(Error::InvalidArgument("name the spine's format: csv or parquet".into()))
        }
    }
}

pub fn ingest_progress_from_proto(p: v1::IngestProgress) -> IngestProgress {
    IngestProgress {
        rows: p.rows,
        bytes: p.bytes,
        total_bytes: p.total_bytes,
        files_done: p.files_done,
        files_total: p.files_total,
        duplicates: p.duplicates,
        warnings: p.warnings,
        done: p.done,
        files_written: p.files_written,
        rows_checked: p.rows_checked,
    }
}

pub fn materialize_progress_from_proto(p: v1::MaterializeProgress) -> MaterializeProgress {
    MaterializeProgress {
        files_done: p.files_done,
        files_total: p.files_total,
        rows_read: p.rows_read,
        entities_written: p.entities_written,
        done: p.done,
    }
}

pub fn data_file_from_proto(f: v1::DataFileInfo) -> DataFile {
    DataFile {
        path: f.path,
        day: f.day,
        rows: f.rows,
        bytes: f.bytes,
        min_ts: f.min_ts_micros,
        max_ts: f.max_ts_micros,
    }
}

pub fn data_file_to_proto(f: &DataFile) -> v1::DataFileInfo {
    v1::DataFileInfo {
        path: f.path.clone(),
        day: f.day,
        rows: f.rows,
        bytes: f.bytes,
        min_ts_micros: f.min_ts,
        max_ts_micros: f.max_ts,
    }
}

pub fn dataset_to_proto(d: &Dataset) -> v1::Dataset {
    v1::Dataset {
        name: d.name.clone(),
        path: d.path.clone(),
        vector: d.vector.clone().unwrap_or_default(),
        features: d.features.clone(),
        feature_sets: d.feature_sets.clone(),
        spine: d.spine.clone(),
        rows: d.rows,
        bytes: d.bytes,
        spine_from_micros: d.spine_from,
        spine_to_micros: d.spine_to,
        created_at_micros: d.created_at,
    }
}

/// An empty vector name means the dataset was built from feature references.
pub fn dataset_from_proto(d: v1::Dataset) -> Dataset {
    Dataset {
        name: d.name,
        path: d.path,
        vector: (!d.vector.is_empty()).then_some(d.vector),
        features: d.features,
        feature_sets: d.feature_sets,
        spine: d.spine,
        rows: d.rows,
        bytes: d.bytes,
        spine_from: d.spine_from_micros,
        spine_to: d.spine_to_micros,
        created_at: d.created_at_micros,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spine_formats_round_trip_and_an_unnamed_or_unknown_one_is_refused() {
        for format in [SpineFormat::Csv, SpineFormat::Parquet] {
            assert_eq!(spine_format_from_proto(spine_format_to_proto(format) as i32).unwrap(), format);
        }
        for unknown in [v1::SpineFormat::Unspecified as i32, 7] {
            assert!(matches!(spine_format_from_proto(unknown), Err(Error::InvalidArgument(_))), "{unknown}");
        }
    }

    #[test]
    fn a_dataset_without_a_vector_says_so() {
        let from_refs = v1::Dataset { name: "train".into(), spine_from_micros: 5, ..Default::default() };
        let d = dataset_from_proto(from_refs);
        assert_eq!((d.vector, d.spine_from), (None, 5));
        let from_vector = v1::Dataset { vector: "v1".into(), ..Default::default() };
        assert_eq!(dataset_from_proto(from_vector).vector.as_deref(), Some("v1"));
    }
}
