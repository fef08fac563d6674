//! Online semantics through the Rust client against a real node: last-writer-wins, TTL,
//! multi-set vectors, versioned feature sets, and every bad request refused with its
//! error and nothing changed.

use std::collections::BTreeMap;

use quiver_client::{Client, Consistency, Error, FeatureSelection, Freshness, OnlineRequest, Value};
use quiver_core::Error as E;
use quiver_core::row::MAX_ROWS_PER_WRITE;
use quiver_core::time::MICROS_PER_SEC;
use quiver_tests::{driver_key, driver_row, node_with_rides, now_micros, read_drivers};

/// (project, feature set, rows, the error expected).
type BadWrite = (&'static str, &'static str, Vec<quiver_client::InputRow>, fn(&E) -> bool);

fn server_error(result: Result<impl std::fmt::Debug, Error>) -> E {
    match result {
        Err(Error::Server(e)) => e,
        other => panic!("expected a Quiver error, got {other:?}"),
    }
}

async fn conv_rate(client: &Client, id: i64) -> (Freshness, Value) {
    let answer = read_drivers(client, [id]).await;
    let i = answer.features.iter().position(|f| f == "driver_stats:conv_rate").unwrap();
    (answer.rows[0][i].status, answer.rows[0][i].value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_writer_wins_by_event_time_then_write_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![driver_row(1, now, 0.9, 1)]).await.unwrap();
    client.write("rides", "driver_stats", vec![driver_row(1, now - 1000, 0.1, 1)]).await.unwrap();
    assert_eq!(conv_rate(&client, 1).await, (Freshness::Present, Value::Float64(0.9)), "older event ignored");
    client.write("rides", "driver_stats", vec![driver_row(1, now, 0.7, 1)]).await.unwrap();
    assert_eq!(conv_rate(&client, 1).await.1, Value::Float64(0.7), "equal event time: later write wins");
    // Within one batch too: the last of equal-time rows wins.
    let batch = vec![driver_row(2, now, 0.2, 1), driver_row(2, now, 0.3, 1), driver_row(2, now - 5, 0.4, 1)];
    client.write("rides", "driver_stats", batch).await.unwrap();
    assert_eq!(conv_rate(&client, 2).await.1, Value::Float64(0.3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_past_their_ttl_read_as_expired_and_unknown_entities_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let eight_days = 8 * 86_400 * MICROS_PER_SEC;
    client.write("rides", "driver_stats", vec![driver_row(1, now_micros() - eight_days, 0.5, 1)]).await.unwrap();
    assert_eq!(conv_rate(&client, 1).await, (Freshness::Expired, Value::Null));
    assert_eq!(conv_rate(&client, 99).await, (Freshness::NotFound, Value::Null));
    // A fresher row brings it back.
    client.write("rides", "driver_stats", vec![driver_row(1, now_micros(), 0.6, 1)]).await.unwrap();
    assert_eq!(conv_rate(&client, 1).await, (Freshness::Present, Value::Float64(0.6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_joins_feature_sets_and_stale_reads_answer_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let now = now_micros();
    client
        .write("rides", "driver_stats", (1..=20).map(|id| driver_row(id, now, id as f64, id)).collect())
        .await
        .unwrap();
    let ratings = vec![BTreeMap::from([
        ("driver_id".to_string(), Value::Int64(3)),
        ("rated_at".to_string(), Value::Timestamp(now)),
        ("rating".to_string(), Value::Float64(4.8)),
        ("num_ratings".to_string(), Value::Int32(12)),
    ])];
    client.write("rides", "driver_ratings", ratings).await.unwrap();
    for consistency in [Consistency::Linearizable, Consistency::Stale] {
        let answer = client
            .get_online(OnlineRequest {
                project: "rides".into(),
                features: FeatureSelection::Vector("driver_model_v2".into()),
                entities: vec![driver_key(3), driver_key(4)],
                consistency,
            })
            .await
            .unwrap();
        assert_eq!(
            answer.features,
            vec![
                "driver_stats:conv_rate",
                "driver_stats:acc_rate",
                "driver_stats:avg_daily_trips",
                "driver_ratings:rating",
                "driver_ratings:num_ratings"
            ]
        );
        let values: Vec<Value> = answer.rows[0].iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            values,
            vec![Value::Float64(3.0), Value::Float64(1.5), Value::Int64(3), Value::Float64(4.8), Value::Int64(12)]
        );
        assert_eq!(answer.rows[1][3].status, Freshness::NotFound, "driver 4 has no ratings");
        assert_eq!(answer.rows[1][0].value, Value::Float64(4.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_write_is_refused_with_its_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![driver_row(1, now, 0.5, 1)]).await.unwrap();
    let good = |id| driver_row(id, now + 1, 0.9, 9);
    let with = |field: &str, value: Option<Value>| {
        let mut row = good(1);
        match value {
            Some(v) => row.insert(field.to_string(), v),
            None => row.remove(field),
        };
        vec![good(2), row]
    };
    let cases: Vec<BadWrite> = vec![
        ("nope", "driver_stats", vec![good(1)], |e| matches!(e, E::UnknownProject(p) if p == "nope")),
        ("rides", "driver_statz", vec![good(1)], |e| matches!(e, E::UnknownFeatureSet(s) if s == "driver_statz")),
        ("rides", "driver_stats@9", vec![good(1)], |e| matches!(e, E::UnknownFeatureSet(_))),
        (
            "rides",
            "driver_stats",
            with("speed", Some(Value::Float64(1.0))),
            |e| matches!(e, E::InvalidRow { row: 2, field, reason } if field == "speed" && reason.contains("unknown feature")),
        ),
        (
            "rides",
            "driver_stats",
            with("conv_rate", Some(Value::String("high".into()))),
            |e| matches!(e, E::InvalidRow { row: 2, field, reason } if field == "conv_rate" && reason.contains("expected float64")),
        ),
        (
            "rides",
            "driver_stats",
            with("driver_id", None),
            |e| matches!(e, E::InvalidRow { row: 2, field, .. } if field == "driver_id"),
        ),
        (
            "rides",
            "driver_stats",
            with("event_timestamp", None),
            |e| matches!(e, E::InvalidRow { row: 2, field, .. } if field == "event_timestamp"),
        ),
        (
            "rides",
            "driver_stats",
            with("driver_id", Some(Value::String("1".into()))),
            |e| matches!(e, E::InvalidRow { row: 2, field, .. } if field == "driver_id"),
        ),
    ];
    for (project, set, rows, expected) in cases {
        let err = server_error(client.write(project, set, rows).await);
        assert!(expected(&err), "{project}/{set}: unexpected {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let oversized = (0..=MAX_ROWS_PER_WRITE as i64).map(|id| driver_row(id % 3 + 1, now + 1, 0.9, 9)).collect();
    assert!(matches!(server_error(client.write("rides", "driver_stats", oversized).await), E::TooLarge(_)));

    assert_eq!(conv_rate(&client, 1).await.1, Value::Float64(0.5), "driver 1 unchanged");
    assert_eq!(conv_rate(&client, 2).await.0, Freshness::NotFound, "driver 2 never written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_read_is_refused_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let read = |features: FeatureSelection, entities: Vec<BTreeMap<String, Value>>| {
        let client = client.clone();
        async move {
            client
                .get_online(OnlineRequest {
                    project: "rides".into(),
                    features,
                    entities,
                    consistency: Consistency::Linearizable,
                })
                .await
        }
    };
    let refs = |r: &[&str]| FeatureSelection::Refs(r.iter().map(|s| s.to_string()).collect());
    let e = server_error(read(FeatureSelection::Vector("nope".into()), vec![driver_key(1)]).await);
    assert!(matches!(e, E::UnknownVector(v) if v == "nope"));
    let e = server_error(read(refs(&["driver_stats:speed"]), vec![driver_key(1)]).await);
    // The feature apart from those its set has, for a caller to show or match on.
    assert!(
        matches!(&e, E::UnknownFeature { feature, known } if feature.ends_with("driver_stats:speed")
            && known.iter().any(|k| k == "conv_rate")),
        "{e:?}"
    );
    let e = server_error(read(refs(&["trips:count"]), vec![driver_key(1)]).await);
    assert!(matches!(e, E::UnknownFeatureSet(_)));
    let e = server_error(read(refs(&["conv_rate"]), vec![driver_key(1)]).await);
    assert!(matches!(e, E::InvalidArgument(_)));
    let e = server_error(read(refs(&["driver_stats:conv_rate"]), vec![driver_key(1), BTreeMap::new()]).await);
    assert!(matches!(&e, E::InvalidEntityKey { entity: 2, key, .. } if key == "driver_id"), "{e:?}");
    let wrong = BTreeMap::from([("driver_id".to_string(), Value::String("x".into()))]);
    let e = server_error(read(refs(&["driver_stats:conv_rate"]), vec![wrong]).await);
    assert!(matches!(e, E::InvalidEntityKey { entity: 1, .. }));
    let many = (0..10_001).map(driver_key).collect();
    assert!(matches!(server_error(read(refs(&["driver_stats:conv_rate"]), many).await), E::TooLarge(_)));
    let e = server_error(
        client
            .get_online(OnlineRequest {
                project: "other".into(),
                features: refs(&["driver_stats:conv_rate"]),
                entities: vec![driver_key(1)],
                consistency: Consistency::Stale,
            })
            .await,
    );
    assert!(matches!(e, E::UnknownProject(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_change_creates_a_version_and_the_old_one_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = node_with_rides(dir.path(), &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![driver_row(1, now, 0.5, 7)]).await.unwrap();
    let changed =
        quiver_tests::RIDES.replace("{name: avg_daily_trips, type: int64", "{name: avg_daily_trips, type: float64");
    let reply = client.apply(&quiver_client::Definitions::from_yaml(&changed).unwrap()).await.unwrap();
    assert!(reply.iter().any(|c| c.name == "driver_stats" && c.action == quiver_client::Action::NewVersion(2)));
    let mut v2_row = driver_row(1, now, 0.25, 0);
    v2_row.insert("avg_daily_trips".into(), Value::Float64(7.5));
    client.write("rides", "driver_stats", vec![v2_row]).await.unwrap();
    let answer = client
        .get_online(OnlineRequest {
            project: "rides".into(),
            features: FeatureSelection::Refs(vec![
                "driver_stats@1:avg_daily_trips".into(),
                "driver_stats:avg_daily_trips".into(),
            ]),
            entities: vec![driver_key(1)],
            consistency: Consistency::Linearizable,
        })
        .await
        .unwrap();
    assert_eq!(answer.features, vec!["driver_stats@1:avg_daily_trips", "driver_stats:avg_daily_trips"]);
    assert_eq!(answer.rows[0][0].value, Value::Int64(7));
    assert_eq!(answer.rows[0][1].value, Value::Float64(7.5));
}

/// `GetOnlineFeatures` requests answered so far, from the node's `/metrics`.
fn online_reads(node: &quiver_admin::local_node::LocalNode) -> u64 {
    let (_, metrics) = quiver_tests::http_get(node.http_addr(), "/metrics");
    let prefix = "quiver_requests_total{code=\"ok\",method=\"GetOnlineFeatures\"} ";
    metrics.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_across_shards_of_one_node_is_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides(dir.path(), &["--shards", "8"]).await;
    let now = now_micros();
    let rows: Vec<_> = (0..64).map(|id| driver_row(id, now, id as f64, 1)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let shards = client.shard_map().await.unwrap().shard_map.shards.len();
    assert_eq!(shards, 8);
    let before = online_reads(&node);
    let answer = read_drivers(&client, 0..64).await;
    assert_eq!(online_reads(&node) - before, 1, "64 entities over {shards} shards in one request");
    let i = answer.features.iter().position(|f| f == "driver_stats:conv_rate").unwrap();
    for (id, row) in answer.rows.iter().enumerate() {
        assert_eq!(row[i].value, Value::Float64(id as f64), "driver {id} in its place");
    }
}

/// `9999-12-31T23:59:59Z`: a row stamped so would win every later write by event time.
const END_OF_TIME: i64 = 253_402_300_799 * MICROS_PER_SEC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stamped_further_ahead_than_the_allowed_skew_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides(dir.path(), &[]).await;
    let now = now_micros();
    client.write("rides", "driver_stats", vec![driver_row(1, now, 0.5, 1)]).await.unwrap();
    let hour = 3600 * MICROS_PER_SEC;
    let batch = vec![driver_row(2, now + hour, 0.2, 1), driver_row(1, END_OF_TIME, 0.9, 1)];
    let err = server_error(client.write("rides", "driver_stats", batch).await);
    match &err {
        E::InvalidRow { row: 2, field, reason } if field == "event_timestamp" => {
            assert!(reason.contains("9999-12-31T23:59:59Z") && reason.contains("future"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(conv_rate(&client, 1).await.1, Value::Float64(0.5), "driver 1 unchanged");
    assert_eq!(conv_rate(&client, 2).await.0, Freshness::NotFound, "nothing of the request stored");

    // Within the default skew of one day, a row from a clock running ahead is taken.
    client.write("rides", "driver_stats", vec![driver_row(1, now + 12 * hour, 0.7, 1)]).await.unwrap();
    assert_eq!(conv_rate(&client, 1).await.1, Value::Float64(0.7));

    // quiverctl names the row and field too.
    let jsonl = format!(
        "{{\"driver_id\": 3, \"event_timestamp\": {now}, \"conv_rate\": 0.3}}\n\
         {{\"driver_id\": 3, \"event_timestamp\": \"9999-12-31T23:59:59Z\", \"conv_rate\": 0.4}}\n"
    );
    let out = quiver_tests::quiverctl(&node.endpoint(), &["push", "--feature-set", "driver_stats", "-"], Some(&jsonl));
    assert!(!out.success && out.stderr.contains("row 2, field 'event_timestamp'"), "{}", out.stderr);
    assert_eq!(conv_rate(&client, 3).await.0, Freshness::NotFound);
}
