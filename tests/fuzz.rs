//! Fuzzing of every parser a client can reach, property-based (proptest) and bounded so CI
//! runs it in about a minute: YAML definitions (and applying them), JSON-lines and CSV rows
//! (and validating them), Parquet and CSV files to ingest, spines, the gRPC requests'
//! decoders and the conversions the node runs on them, and the HTTP routes of a running
//! node with authentication on. Inputs are valid examples with random edits (flipped,
//! inserted and deleted bytes, cuts) and random bytes; each must get an answer or an
//! error, never a panic, and the node must stay healthy. `QUIVER_FUZZ_CASES` sets the
//! cases per parser (default 2000); each test prints how many ran.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quiver_admin::input::{RowFormat, parse_rows};
use quiver_client::Definitions;
use quiver_core::ValueType;
use quiver_core::registry::{Entity, FeatureSet, Registry};
use quiver_offline::ingest::{SourceChunks, SourceData, SourceFormat};
use quiver_offline::spine::read_spine;
use quiver_proto::Message;
use quiver_proto::v1;
use quiver_tests::RIDES;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

fn cases() -> u32 {
    std::env::var("QUIVER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// Random edits of a valid input: (position, byte, kind) where kind flips, inserts,
/// deletes or cuts there.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), 0..4u8), 0..12)
}

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(at, byte, kind) in edits {
        let at = if out.is_empty() { 0 } else { at % out.len() };
        match kind {
            0 if !out.is_empty() => out[at] ^= byte.max(1),
            1 => out.insert(at, byte),
            2 if !out.is_empty() => drop(out.remove(at)),
            3 => out.truncate(at),
            _ => {}
        }
    }
    out
}

/// A mutated `seed`, or random bytes one time in eight.
fn input(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        7 => edits().prop_map(move |e| mutate(&seed, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Runs `check` on `cases()` inputs from `strategy`; answers how many ran.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) -> usize {
    let ran = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |value| {
            ran.fetch_add(1, Ordering::Relaxed);
            check(value);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let ran = ran.into_inner();
    println!("fuzz {name}: {ran} cases, no panic");
    ran
}

fn rides() -> (Entity, FeatureSet) {
    let mut registry = Registry::default();
    registry.apply(&Definitions::from_yaml(RIDES).unwrap(), 0).unwrap();
    let project = registry.project("rides").unwrap();
    (project.entity("driver").unwrap().clone(), project.feature_set("driver_stats", None).unwrap().clone())
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{EXAMPLES}/{name}")).unwrap()
}

#[test]
fn yaml_definitions_parse_and_apply_or_fail_cleanly() {
    let ran = fuzz("yaml definitions", input(RIDES.as_bytes().to_vec()), |bytes| {
        if let Ok(defs) = Definitions::from_yaml(&String::from_utf8_lossy(&bytes)) {
            let _ = Registry::default().apply(&defs, 0);
        }
    });
    assert_eq!(ran, cases() as usize);
}

#[test]
fn json_and_csv_rows_parse_and_validate_or_fail_cleanly() {
    let (entity, fs) = rides();
    let jsonl =
        b"{\"driver_id\": 1, \"event_timestamp\": \"2026-11-20T10:00:00Z\", \"conv_rate\": 0.5, \"city\": \"Faro\"}\n\
                  {\"driver_id\": 2, \"event_timestamp\": 1790000000000000, \"acc_rate\": null}\n"
            .to_vec();
    for (name, format, seed) in
        [("json rows", RowFormat::Jsonl, jsonl), ("csv rows", RowFormat::Csv, example("driver_stats.csv"))]
    {
        fuzz(name, input(seed), |bytes| {
            if let Ok(rows) = parse_rows(bytes.as_slice(), format, &entity, &fs) {
                let _ = quiver_core::row::validate_rows(&entity, &fs, rows);
            }
        });
    }
}

#[test]
fn parquet_and_csv_files_to_ingest_read_or_fail_cleanly() {
    let (entity, fs) = rides();
    for (name, format, file) in [
        ("parquet files", SourceFormat::Parquet, "driver_stats.parquet"),
        ("csv files", SourceFormat::Csv, "driver_stats.csv"),
    ] {
        fuzz(name, input(example(file)), |bytes| {
            if let Ok(mut chunks) = SourceChunks::open(SourceData::Bytes(Bytes::from(bytes)), format, &entity, &fs) {
                while let Ok(Some(_)) = chunks.next_chunk() {}
            }
        });
    }
}

#[test]
fn spines_read_or_fail_cleanly() {
    let keys = BTreeMap::from([("driver_id".to_string(), ValueType::Int64)]);
    for (name, format, file) in [
        ("csv spines", quiver_core::offline::SpineFormat::Csv, "driver_spine.csv"),
        ("parquet spines", quiver_core::offline::SpineFormat::Parquet, "driver_stats.parquet"),
    ] {
        fuzz(name, input(example(file)), |bytes| {
            let _ = read_spine(Bytes::from(bytes), format, "event_timestamp", &keys);
        });
    }
}

/// Decodes `bytes` as `M` and runs the node's conversion of it.
fn decode<M: Message + Default>(bytes: &[u8], convert: impl Fn(M)) {
    if let Ok(message) = M::decode(bytes) {
        convert(message);
    }
}

#[test]
fn grpc_requests_decode_and_convert_or_fail_cleanly() {
    let defs = Definitions::from_yaml(RIDES).unwrap();
    let apply = quiver_proto::definitions_to_proto(&defs).encode_to_vec();
    fuzz("ApplyRequest", input(apply), |b| {
        decode(&b, |m: v1::ApplyRequest| drop(quiver_proto::definitions_from_proto(m)))
    });
    let (entity, fs) = rides();
    let write = v1::WriteFeaturesRequest {
        project: "rides".into(),
        feature_set: "driver_stats".into(),
        rows: vec![v1::Row {
            fields: [("driver_id".to_string(), quiver_proto::value_to_proto(quiver_core::Value::Int64(1)))].into(),
        }],
        ..Default::default()
    };
    fuzz("WriteFeaturesRequest", input(write.encode_to_vec()), |b| {
        decode(&b, |m: v1::WriteFeaturesRequest| {
            let rows = m.rows.into_iter().map(|r| quiver_proto::fields_from_proto(r.fields)).collect();
            let _ = quiver_core::row::validate_rows(&entity, &fs, rows);
        })
    });
    let read = v1::GetOnlineFeaturesRequest {
        project: "rides".into(),
        features: Some(v1::get_online_features_request::Features::Refs(v1::FeatureRefs {
            refs: vec!["driver_stats:conv_rate".into()],
        })),
        ..Default::default()
    };
    fuzz("GetOnlineFeaturesRequest", input(read.encode_to_vec()), |b| {
        decode(&b, |m: v1::GetOnlineFeaturesRequest| drop(quiver_proto::online_selection_from_proto(m.features)))
    });
    let history =
        v1::HistoricalRequest { project: "rides".into(), spine: example("driver_spine.csv"), ..Default::default() };
    fuzz("HistoricalRequest", input(history.encode_to_vec()), |b| {
        decode(&b, |m: v1::HistoricalRequest| {
            let _ = quiver_proto::historical_selection_from_proto(m.features);
            let _ = quiver_proto::spine_format_from_proto(m.spine_format);
        })
    });
    fuzz("ShardOperationRequest", input(v1::ShardOperationRequest::default().encode_to_vec()), |b| {
        decode(&b, |m: v1::ShardOperationRequest| drop(quiver_proto::op_kind_from_proto(m)))
    });
    fuzz("GetStatisticsRequest", input(v1::GetStatisticsRequest::default().encode_to_vec()), |b| {
        decode(&b, |m: v1::GetStatisticsRequest| drop(m.window.as_ref().map(quiver_proto::stats_window_from_proto)))
    });
    let token = v1::CreateTokenRequest {
        name: "ci".into(),
        project: "rides".into(),
        role: "viewer".into(),
        ..Default::default()
    };
    fuzz("CreateTokenRequest", input(token.encode_to_vec()), |b| {
        decode(&b, |m: v1::CreateTokenRequest| {
            let _ = quiver_proto::token_scope_from_proto(&m);
            let _ = m.role.parse::<quiver_core::access::Role>();
        })
    });
    fuzz("ListAuditRequest", input(v1::ListAuditRequest::default().encode_to_vec()), |b| {
        decode(&b, |m: v1::ListAuditRequest| drop(quiver_proto::audit_query_from_proto(m)))
    });
}

/// A request target: a known route's prefix, then printable junk (percent signs, dots,
/// slashes, quotes) and maybe a query.
fn target() -> impl Strategy<Value = String> {
    let prefixes =
        ["/", "/ui", "/ui/", "/ui/feature-sets/rides/", "/ui/login?next=", "/ui/audit", "/metrics", "/health"];
    (prop::sample::select(prefixes.to_vec()), "[!-~]{0,40}").prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer_every_request_and_the_node_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let node = quiver_tests::LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let admin = std::fs::read_to_string(dir.path().join("node/admin.token")).unwrap();
    let root = quiver_client::Client::builder(node.endpoint()).token(admin.trim()).connect().await.unwrap();
    root.apply(&Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let addr = node.http_addr().to_string();
    let cookie = format!("quiver_token={}", admin.trim());
    let strategy = (target(), any::<bool>(), any::<bool>(), "[ -~]{0,80}");
    tokio::task::spawn_blocking(move || {
        fuzz("http routes", strategy, |(path, signed_in, post, body)| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(&addr).expect("the node still accepts connections");
            let method = if post { "POST" } else { "GET" };
            let auth = if signed_in { format!("Cookie: {cookie}\r\n") } else { String::new() };
            let form = if post { "Content-Type: application/x-www-form-urlencoded\r\n" } else { "" };
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{form}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            let status: u16 = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            assert!((200..500).contains(&status), "{method} {path:?} answered {status}: {response}");
        });
        assert!(quiver_tests::http_get(node.http_addr(), "/health").0.contains("200"), "the node is healthy after");
    })
    .await
    .unwrap();
}
