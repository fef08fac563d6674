//! Reading what users give `quiverctl`: row files (JSON lines or CSV,
//! typed by the feature set's schema) and `--entity name=value` arguments.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use anyhow::Result;
use quiver_core::key::parse_key_text;
use quiver_core::registry::{Entity, FeatureSet};
use quiver_core::row::{Columns, InputRow};
use quiver_core::spec::JoinKey;
use quiver_core::{Error, Value, ValueType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowFormat {
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one row per line.
    Csv,
}

impl RowFormat {
    /// From the file name (`.csv` → CSV, anything else → JSON lines), unless given.
    pub fn for_path(path: &str, explicit: Option<RowFormat>) -> RowFormat {
        explicit.unwrap_or(if path.ends_with(".csv") { RowFormat::Csv } else { RowFormat::Jsonl })
    }
}

/// Parses every row of `reader`, converting values to the schema's types. Rows are
/// numbered from 1; the first bad one fails the whole input.
pub fn parse_rows(
    reader: impl Read,
    format: RowFormat,
    entity: &Entity,
    fs: &FeatureSet,
) -> Result<Vec<InputRow>, Error> {
    let columns = Columns::of(entity, fs);
    match format {
        RowFormat::Jsonl => parse_jsonl(reader, &columns),
        RowFormat::Csv => parse_csv(reader, &columns),
    }
}

fn parse_jsonl(reader: impl Read, columns: &Columns) -> Result<Vec<InputRow>, Error> {
    let mut rows = Vec::new();
    for line in BufReader::new(reader).lines() {
        let n = rows.len() + 1;
        let line = line.map_err(|e| Error::InvalidArgument(format!("reading row {n}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| Error::row(n, "", format!("not a JSON object: {e}")))?;
        rows.push(columns.from_json(n, object)?);
    }
    Ok(rows)
}

fn parse_csv(reader: impl Read, types: &Columns) -> Result<Vec<InputRow>, Error> {
    let mut csv = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    let headers = csv.headers().map_err(|e| Error::InvalidArgument(format!("CSV header: {e}")))?.clone();
    let columns: Vec<(String, ValueType)> =
        headers.iter().map(|h| Ok((h.to_string(), types.ty(1, h)?))).collect::<Result<_, Error>>()?;
    let mut rows = Vec::new();
    for record in csv.records() {
        let n = rows.len() + 1;
        let record = record.map_err(|e| Error::row(n, "", format!("malformed CSV: {e}")))?;
        let row = columns
            .iter()
            .zip(record.iter())
            .map(|((name, ty), text)| {
                Ok((name.clone(), Value::parse_text(text, *ty).map_err(|e| Error::row(n, name, e))?))
            })
            .collect::<Result<InputRow, Error>>()?;
        rows.push(row);
    }
    Ok(rows)
}

/// Parses `--entity driver_id=1001,region=eu` arguments with the types of `join_keys`.
pub fn parse_entities(args: &[String], join_keys: &[JoinKey]) -> Result<Vec<BTreeMap<String, Value>>, Error> {
    args.iter()
        .enumerate()
        .map(|(i, text)| {
            parse_key_text(text)?
                .into_iter()
                .map(|(name, value)| {
                    let bad = |reason: String| Error::InvalidEntityKey { entity: i + 1, key: name.clone(), reason };
                    let key = join_keys.iter().find(|k| k.name == name).ok_or_else(|| {
                        let known: Vec<_> = join_keys.iter().map(|k| k.name.as_str()).collect();
                        bad(format!("not a join key of the requested features (they use: {})", known.join(", ")))
                    })?;
                    Ok((name.clone(), Value::parse_text(&value, key.ty).map_err(bad)?))
                })
                .collect()
        })
        .collect()
}

/// A time given as RFC 3339, a date (`2026-11-28`, midnight UTC) or integer microseconds.
pub fn parse_time(text: &str) -> Result<i64> {
    quiver_core::time::parse_time_or_date(text).map_err(|e| anyhow::anyhow!(e))
}

/// A statistics window: `FROM..TO` (offline rows by event time; either side may be left
/// out), `dataset:NAME`, or `serving[:FROM..TO]` (values served online).
pub fn parse_window(spec: &str) -> Result<quiver_client::StatsWindow> {
    quiver_client::StatsWindow::parse(spec).map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_core::spec::Definitions;

    #[test]
    fn windows_parse_ranges_datasets_and_serving() {
        use quiver_client::StatsWindow;
        let day = 86_400_000_000;
        let nov1 = parse_time("2026-11-01").unwrap();
        assert_eq!(parse_time("2026-11-02T00:00:00Z").unwrap(), nov1 + day);
        assert_eq!(
            parse_window("2026-11-01..2026-11-02").unwrap(),
            StatsWindow::Offline { from: Some(nov1), to: Some(nov1 + day) }
        );
        assert_eq!(parse_window("..").unwrap(), StatsWindow::Offline { from: None, to: None });
        assert_eq!(parse_window("dataset:train").unwrap(), StatsWindow::Dataset("train".into()));
        assert_eq!(parse_window("serving").unwrap(), StatsWindow::Serving { from: None, to: None });
        assert_eq!(parse_window("serving:2026-11-01..").unwrap(), StatsWindow::Serving { from: Some(nov1), to: None });
        assert!(parse_window("yesterday").unwrap_err().to_string().contains("FROM..TO"));
        assert!(parse_window("2026-13-01..").is_err());
    }
    use quiver_core::registry::Registry;

    fn schema() -> (Entity, FeatureSet) {
        let defs = Definitions::from_yaml(include_str!("../../../examples/rides.yaml")).unwrap();
        let mut reg = Registry::default();
        reg.apply(&defs, 0).unwrap();
        let p = reg.project("rides").unwrap();
        (p.entity("driver").unwrap().clone(), p.feature_set("driver_stats", None).unwrap().clone())
    }

    #[test]
    fn the_example_csv_parses_with_typed_values() {
        let (e, fs) = schema();
        let rows =
            parse_rows(include_str!("../../../examples/driver_stats.csv").as_bytes(), RowFormat::Csv, &e, &fs).unwrap();
        assert_eq!(rows.len(), 30);
        assert_eq!(rows[0]["driver_id"], Value::Int64(1001));
        assert!(matches!(rows[0]["event_timestamp"], Value::Timestamp(_)));
        assert!(matches!(rows[0]["conv_rate"], Value::Float64(_)));
    }

    #[test]
    fn bad_inputs_name_row_and_field() {
        let (e, fs) = schema();
        let jsonl =
            "{\"driver_id\":1,\"event_timestamp\":5}\n{\"driver_id\":1,\"event_timestamp\":5,\"conv_rate\":\"high\"}\n";
        let err = parse_rows(jsonl.as_bytes(), RowFormat::Jsonl, &e, &fs).unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("conv_rate") && err.contains("float64"), "{err}");
        let csv = "driver_id,event_timestamp,conv_rate\n1,2026-01-01T00:00:00Z,0.5\n2,2026-01-01T00:00:00Z\n";
        let err = parse_rows(csv.as_bytes(), RowFormat::Csv, &e, &fs).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
        let csv = "driver_id,event_timestamp,speed\n1,5,0.5\n";
        let err = parse_rows(csv.as_bytes(), RowFormat::Csv, &e, &fs).unwrap_err().to_string();
        assert!(err.contains("speed") && err.contains("unknown feature"), "{err}");
    }

    #[test]
    fn entity_arguments_take_their_join_key_types() {
        let (e, _) = schema();
        let parsed = parse_entities(&["driver_id=1001".into()], &e.join_keys).unwrap();
        assert_eq!(parsed[0]["driver_id"], Value::Int64(1001));
        let err = parse_entities(&["driver_id=x".into()], &e.join_keys).unwrap_err().to_string();
        assert!(err.contains("entity 1") && err.contains("int64"), "{err}");
        assert!(parse_entities(&["rider_id=1".into()], &e.join_keys).is_err());
    }
}
