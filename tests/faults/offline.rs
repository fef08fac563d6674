//! After the run, the offline side: every acknowledged write reached the offline store
//! exactly once, a write of unknown outcome at most once, and no row came from nowhere.
//! Kills, partitions, splits and merges move shard leaders in the middle of exports, which
//! is where an export can lose or double rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use quiver_client::{Client, Value};
use quiver_core::key::{encode_entity_key, key_hash};
use quiver_tests::driver_row;

use crate::checker::{Kind, Op};

/// Keys above the clients' tried for a shard whose range holds none of theirs.
const SPARE_KEYS: std::ops::Range<i64> = 1_000_000..1_065_536;

/// How long the exports may take to catch up once the faults are healed.
const CATCH_UP: Duration = Duration::from_secs(120);

/// The check's outcome: rows read, and what is wrong, one line each.
pub struct Report {
    pub rows: usize,
    pub problems: Vec<String>,
}

/// A row as the check knows it: (key, event time, value).
type Row = (i64, i64, u64);

/// Waits until every shard has exported what it holds, then compares the committed files'
/// rows of keys below `keys` with the writes in `history`. `before` is an event time earlier
/// than any the clients wrote.
pub async fn check(client: &Client, store: &Path, keys: i64, before: i64, history: &[Op]) -> Result<Report> {
    exported_everything(client, keys, before).await?;
    let mut found = offline_rows(client, store, keys).await?;
    found.retain(|(_, ts, _), _| *ts != before);
    Ok(Report { rows: found.values().sum(), problems: problems(&found, history) })
}

/// What is wrong with the rows `found` offline (each with its count) for the writes of
/// `history`: an acknowledged write not there exactly once, another write there more than
/// once, a row no write had.
fn problems(found: &BTreeMap<Row, usize>, history: &[Op]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut written = BTreeSet::new();
    for op in history {
        let Kind::Write { ts, value } = op.kind else { continue };
        let row = (op.key, ts, value);
        written.insert(row);
        match (op.ret.is_some(), found.get(&row).copied().unwrap_or(0)) {
            (true, 1) | (false, 0 | 1) => {}
            (true, 0) => problems.push(format!("acknowledged write {row:?} (key, ts, value) is not offline")),
            (_, n) => problems.push(format!("write {row:?} (key, ts, value) is offline {n} times")),
        }
    }
    for row in found.keys().filter(|row| !written.contains(row)) {
        problems.push(format!("offline row {row:?} (key, ts, value) was never written"));
    }
    problems
}

/// Writes a row at event time `before` (older than any the clients wrote, so it changes no
/// online answer) to each shard, and waits until each has exported through it: export goes
/// in log order, so everything the shard held before is offline too. A shard's row goes to
/// one of the clients' keys when its range holds one, else to a key above them (which the
/// check leaves out); a shard whose range holds none of the keys tried (a sliver a split cut)
/// is only given a few export rounds.
async fn exported_everything(client: &Client, keys: i64, before: i64) -> Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    let hash = |key: i64| key_hash(&encode_entity_key(&[Value::Int64(key)]));
    let tried: Vec<(i64, u64)> = (0..keys).chain(SPARE_KEYS).map(|key| (key, hash(key))).collect();
    loop {
        let map = client.shard_map().await?;
        let (mut rows, mut slivers) = (Vec::new(), Vec::new());
        for shard in &map.shard_map.shards {
            match tried.iter().find(|(_, h)| (shard.start..=shard.end).contains(h)) {
                Some((key, _)) => rows.push(driver_row(*key, before, 0.5, 0)),
                None => slivers.push(shard.id),
            }
        }
        match client.write("rides", "driver_stats", rows).await {
            Ok(outcome) => {
                client.wait_for_export(&outcome, CATCH_UP).await.context("waiting for the exports to catch up")?;
                if !slivers.is_empty() {
                    println!("shards {slivers:?} hold none of the keys tried: given a few export rounds");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => return Err(e).context("writing a row to every shard"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// How many times each (key, event time, value) of keys below `keys` is in the committed
/// files.
async fn offline_rows(client: &Client, store: &Path, keys: i64) -> Result<BTreeMap<Row, usize>> {
    let mut found = BTreeMap::new();
    for file in client.files("rides", "driver_stats").await? {
        let path = store.join(&file.path);
        let reader = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)?.build()?;
        for batch in batches {
            let batch = batch?;
            let column =
                |name: &str| batch.column_by_name(name).with_context(|| format!("{} has no {name}", file.path));
            let ids = column("driver_id")?.as_primitive::<Int64Type>();
            let times = column("event_timestamp")?.as_primitive::<TimestampMicrosecondType>();
            let rates = column("conv_rate")?.as_primitive::<Float64Type>();
            for i in (0..batch.num_rows()).filter(|i| ids.value(*i) < keys) {
                *found.entry((ids.value(i), times.value(i), rates.value(i) as u64)).or_default() += 1;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: i64, value: u64, acknowledged: bool) -> Op {
        Op { client: 0, key, call: 0, ret: acknowledged.then_some(1), kind: Kind::Write { ts: 7, value } }
    }

    #[test]
    fn an_acknowledged_write_must_be_offline_once_and_an_unknown_one_at_most_once() {
        let history = [write(1, 10, true), write(1, 11, false), write(2, 12, false), write(2, 13, true)];
        let found = BTreeMap::from([((1, 7, 10), 1), ((2, 7, 12), 1), ((2, 7, 13), 1)]);
        assert!(problems(&found, &history).is_empty(), "{:?}", problems(&found, &history));

        let lost = BTreeMap::from([((1, 7, 10), 1)]);
        let found_problems = problems(&lost, &history);
        assert_eq!(found_problems.len(), 1, "{found_problems:?}");
        assert!(found_problems[0].contains("(2, 7, 13)") && found_problems[0].contains("not offline"));

        let doubled = BTreeMap::from([((1, 7, 10), 1), ((1, 7, 11), 2), ((2, 7, 13), 1)]);
        let found_problems = problems(&doubled, &history);
        assert!(found_problems.len() == 1 && found_problems[0].contains("2 times"), "{found_problems:?}");

        let stray = BTreeMap::from([((1, 7, 10), 1), ((2, 7, 13), 1), ((3, 7, 99), 1)]);
        let found_problems = problems(&stray, &history);
        assert!(found_problems.len() == 1 && found_problems[0].contains("never written"), "{found_problems:?}");
    }
}
