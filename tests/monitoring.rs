//! Feature statistics and drift through a real node: ingested files are summarized by the
//! statistics worker, summaries merge for any range of days and match exact computation,
//! and drift separates a shifted window from an unshifted one.

use std::time::{Duration, Instant};

use quiver_client::{Client, DriftStatus, DriftTarget, StatsWindow};
use quiver_tests::node_with_rides;

const DAY: i64 = 86_400_000_000;
/// 2026-11-01T00:00:00Z.
const START: i64 = 1_793_491_200_000_000;
const PER_DAY: i64 = 500;

/// A deterministic normal sample (Box–Muller over a 64-bit LCG).
fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos()).collect()
}

/// Four days of rows: conv_rate ~ N(0, 1) on days 0–1 and N(1, 1) on days 2–3; city
/// cycles through four names; every tenth acc_rate is null. Returns the rows' conv_rates.
fn write_input(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Vec<f64>>) {
    let mut csv = String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n");
    let cities = ["Lisbon", "Porto", "Faro", "Braga"];
    let mut by_day = Vec::new();
    for day in 0..4 {
        let shift = if day >= 2 { 1.0 } else { 0.0 };
        let rates: Vec<f64> = normals(day as u64 + 1, PER_DAY as usize).into_iter().map(|x| x + shift).collect();
        for (i, rate) in rates.iter().enumerate() {
            let ts = quiver_core::time::format_timestamp(START + day * DAY + i as i64 * 1_000_000);
            let acc = if i % 10 == 0 { String::new() } else { "0.5".into() };
            csv += &format!("{},{ts},{rate},{acc},{},{}\n", i, i % 40, cities[i % 4]);
        }
        by_day.push(rates);
    }
    let path = dir.join("drivers.csv");
    std::fs::write(&path, csv).unwrap();
    (path, by_day)
}

fn days(from: i64, to: i64) -> StatsWindow {
    StatsWindow::Offline { from: Some(START + from * DAY), to: Some(START + to * DAY) }
}

/// Waits until the statistics worker has summarized `rows` rows.
async fn summarized(client: &Client, rows: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = client.statistics("rides", "driver_stats", &StatsWindow::Offline { from: None, to: None }).await;
        if stats.as_ref().is_ok_and(|s| s.rows == rows) {
            return;
        }
        assert!(Instant::now() < deadline, "statistics did not arrive: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_match_exact_computation_and_drift_finds_the_shifted_days() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let (input, by_day) = write_input(dir.path());
    client.ingest("rides", "driver_stats", input.to_str().unwrap(), |_| {}).await.unwrap();
    summarized(&client, 4 * PER_DAY as u64).await;

    // Exact counts, moments and extremes; quantiles within the sketch's rank error.
    let all: Vec<f64> = by_day.concat();
    let stats =
        client.statistics("rides", "driver_stats", &StatsWindow::Offline { from: None, to: None }).await.unwrap();
    assert_eq!((stats.rows, stats.days), (2000, 4));
    let conv = stats.features.iter().find(|f| f.feature == "conv_rate").unwrap();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / all.len() as f64;
    assert_eq!((conv.count, conv.nulls), (2000, 0));
    assert!((conv.mean.unwrap() - mean).abs() < 1e-9 && (conv.stddev.unwrap() - var.sqrt()).abs() < 1e-9);
    assert_eq!(conv.min, all.iter().copied().reduce(f64::min));
    assert_eq!(conv.max, all.iter().copied().reduce(f64::max));
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let median = conv.quantiles.iter().find(|q| q.q == 0.5).unwrap().value;
    let rank = sorted.partition_point(|x| *x < median) as f64 / sorted.len() as f64;
    assert!((rank - 0.5).abs() < 0.01, "median {median} sits at rank {rank}");
    assert!((conv.distinct as f64 - 2000.0).abs() < 2000.0 * 0.05, "distinct {}", conv.distinct);
    let binned: u64 = conv.histogram.iter().map(|b| b.count).sum();
    assert!(binned.abs_diff(2000) < 20, "histogram holds {binned} of 2000 values");
    let acc = stats.features.iter().find(|f| f.feature == "acc_rate").unwrap();
    assert_eq!(acc.nulls, 200);
    let city = stats.features.iter().find(|f| f.feature == "city").unwrap();
    assert_eq!(city.top_values.iter().map(|t| t.count).collect::<Vec<_>>(), vec![500; 4]);

    // Ranges merge: two halves add up to the whole.
    let first = client.statistics("rides", "driver_stats", &days(0, 2)).await.unwrap();
    let second = client.statistics("rides", "driver_stats", &days(2, 4)).await.unwrap();
    assert_eq!((first.rows, second.rows, first.days), (1000, 1000, 2));
    let half_mean = |s: &quiver_client::Statistics| s.features[0].mean.unwrap();
    assert!((half_mean(&first) + half_mean(&second) - 2.0 * mean).abs() < 1e-9);

    // Drift: day 0 against day 1 (one distribution) is ok; days 0–1 against the shifted
    // days 2–3 is drift for conv_rate, while city (unchanged) stays ok.
    let target = DriftTarget::FeatureSet("driver_stats".into());
    let same = client.drift("rides", &target, &days(0, 1), &days(1, 2)).await.unwrap();
    let conv_same = same.features.iter().find(|f| f.feature == "driver_stats:conv_rate").unwrap();
    assert_eq!(conv_same.status, DriftStatus::Ok, "{conv_same:?}");
    let shifted = client.drift("rides", &target, &days(0, 2), &days(2, 4)).await.unwrap();
    let conv_shift = shifted.features.iter().find(|f| f.feature == "driver_stats:conv_rate").unwrap();
    assert_eq!(conv_shift.status, DriftStatus::Drift, "{conv_shift:?}");
    let metrics = conv_shift.metrics.unwrap();
    assert!(metrics.psi > 0.25 && metrics.ks.unwrap() > 0.3, "{conv_shift:?}");
    let city_shift = shifted.features.iter().find(|f| f.feature == "driver_stats:city").unwrap();
    assert_eq!(city_shift.status, DriftStatus::Ok);
    assert_eq!(shifted.status, DriftStatus::Drift);

    // A training dataset is a reference too: its statistics are recorded when it is saved.
    let mut spine = String::from("driver_id,event_timestamp\n");
    for i in 0..PER_DAY {
        spine += &format!("{i},{}\n", quiver_core::time::format_timestamp(START + DAY + i * 1_000_000 + 1));
    }
    let mut request = quiver_client::HistoricalRequest::new(
        "rides",
        quiver_client::FeatureSelection::Refs(vec!["driver_stats:*".into()]),
        quiver_client::Spine::Csv(spine.into_bytes()),
    );
    request.save_as = Some("train".into());
    client.historical(request).await.unwrap();
    let trained = StatsWindow::Dataset("train".into());
    let dataset_stats = client.statistics("rides", "driver_stats", &trained).await.unwrap();
    assert_eq!(dataset_stats.rows, PER_DAY as u64);
    let vs_training = client.drift("rides", &target, &trained, &days(2, 4)).await.unwrap();
    let conv_train = vs_training.features.iter().find(|f| f.feature == "driver_stats:conv_rate").unwrap();
    assert_eq!(conv_train.status, DriftStatus::Drift, "{conv_train:?}");

    // Bad requests name what is wrong.
    let err = client.statistics("rides", "nope", &days(0, 1)).await.unwrap_err();
    assert!(matches!(err.server_error(), Some(quiver_core::Error::UnknownFeatureSet(_))), "{err}");
    let err = client.drift("rides", &target, &StatsWindow::Dataset("missing".into()), &days(0, 1)).await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_served_online_are_summarized_for_drift_reports() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(&config, "[workers]\nserving_sample_rate = 1.0\nserving_flush_ms = 100\n").unwrap();
    let (_node, client) = node_with_rides(dir.path(), &["--config", config.to_str().unwrap()]).await;
    // Fresh rows online (the example TTL is a day), then one read per entity, every read sampled.
    let now = quiver_tests::now_micros();
    let rows = (0..50).map(|id| quiver_tests::driver_row(id, now - 1_000_000, id as f64 / 50.0, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    for id in 0..30 {
        quiver_tests::read_drivers(&client, [id]).await;
    }
    let serving = StatsWindow::Serving { from: None, to: None };
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = client.statistics("rides", "driver_stats", &serving).await.unwrap();
        if stats.rows >= 30 {
            break stats;
        }
        assert!(Instant::now() < deadline, "serving statistics did not arrive: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats.rows, 30, "one sampled read per entity read");
    let conv = stats.features.iter().find(|f| f.feature == "conv_rate").unwrap();
    assert_eq!(conv.count, 30);
    assert_eq!((conv.min, conv.max), (Some(0.0), Some(29.0 / 50.0)));
    // Drift reports take serving windows on either side: a window against itself is no drift.
    let report = client
        .drift("rides", &DriftTarget::FeatureSet("driver_stats".into()), &serving.clone(), &serving)
        .await
        .unwrap();
    let conv = report.features.iter().find(|f| f.feature == "driver_stats:conv_rate").unwrap();
    assert_eq!((conv.status, conv.metrics.map(|m| m.psi)), (DriftStatus::Ok, Some(0.0)), "{conv:?}");
}
