//! The offline store's types: spine formats.

use quiver_core::offline::SpineFormat;
use quiver_core::{Error, Result};

use crate::v1;

/// The `spine_format` field of a historical request.
pub fn spine_format_to_proto(format: SpineFormat) -> i32 {
    let format = match format {
        SpineFormat::Csv => v1::SpineFormat::Csv,
        SpineFormat::Parquet => v1::SpineFormat::Parquet,
    };
    format as i32
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spine_formats_round_trip_and_an_unnamed_or_unknown_one_is_refused() {
        for format in [SpineFormat::Csv, SpineFormat::Parquet] {
            assert_eq!(spine_format_from_proto(spine_format_to_proto(format)).unwrap(), format);
        }
        for unknown in [v1::SpineFormat::Unspecified as i32, 7] {
            assert!(matches!(spine_format_from_proto(unknown), Err(Error::InvalidArgument(_))), "{unknown}");
        }
    }
}
