//! Helpers for end-to-end tests: real `quiver-node` processes on loopback ports, the
//! example definitions, and `quiverctl` runs. Build the binaries first (`cargo build
//! --workspace --bins`, which builds the node with its fail points).

pub mod recipe;
pub mod s3;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub use quiver_admin::local_node::{LocalNode, binary};
use quiver_client::{Client, Consistency, FeatureSelection, InputRow, OnlineFeatures, OnlineRequest, Value};

pub const RIDES: &str = include_str!("../../examples/rides.yaml");

/// Starts a node on `dir` and applies the example `rides` definitions.
pub async fn node_with_rides(dir: &Path, extra: &[&str]) -> (LocalNode, Client) {
    node_with_rides_env(dir, extra, &[]).await
}

/// `node_with_rides` with extra environment variables for the node.
pub async fn node_with_rides_env(dir: &Path, extra: &[&str], env: &[(String, String)]) -> (LocalNode, Client) {
    let node = LocalNode::start_with_env(&dir.join("node"), extra, env).await.expect("node starts");
    let client = node.client().await.expect("client connects");
    let defs = quiver_client::Definitions::from_yaml(RIDES).expect("example definitions parse");
    client.apply(&defs).await.expect("definitions apply");
    (node, client)
}

/// The cluster admin's token the first member of a cluster with `--auth` wrote into `data_dir`.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token")).expect("the first member wrote admin.token").trim().into()
}

/// A new token of `root`'s making: `role` on `project`, with the PII grant when `pii`.
pub async fn issue_token(root: &Client, name: &str, project: &str, role: quiver_client::Role, pii: bool) -> String {
    let scope = quiver_client::Scope::Project(project.into());
    let new = quiver_client::NewToken { name: name.into(), scope, role, pii, ttl: None };
    root.create_token(&new).await.expect("token created").0
}

pub use quiver_core::time::now_micros;

/// A `driver_stats` row.
pub fn driver_row(id: i64, ts: i64, conv_rate: f64, trips: i64) -> InputRow {
    BTreeMap::from([
        ("driver_id".to_string(), Value::Int64(id)),
        ("event_timestamp".to_string(), Value::Timestamp(ts)),
        ("conv_rate".to_string(), Value::Float64(conv_rate)),
        ("acc_rate".to_string(), Value::Float64(conv_rate / 2.0)),
        ("avg_daily_trips".to_string(), Value::Int64(trips)),
        ("city".to_string(), Value::String(format!("city-{id}"))),
    ])
}

pub fn driver_key(id: i64) -> BTreeMap<String, Value> {
    BTreeMap::from([("driver_id".to_string(), Value::Int64(id))])
}

/// Every `driver_stats` feature of the given drivers, linearizably.
pub async fn read_drivers(client: &Client, ids: impl IntoIterator<Item = i64>) -> OnlineFeatures {
    client
        .get_online(OnlineRequest {
            project: "rides".into(),
            features: FeatureSelection::Refs(vec!["driver_stats:*".into()]),
            entities: ids.into_iter().map(driver_key).collect(),
            consistency: Consistency::Linearizable,
        })
        .await
        .expect("read succeeds")
}

/// `driver_stats` feature `feature` of drivers `ids` as of `at` (µs), from a training set, in
/// the order of `ids`.
pub async fn driver_history(client: &Client, feature: &str, ids: &[i64], at: i64) -> arrow_array::ArrayRef {
    let at = quiver_core::time::format_timestamp(at);
    let spine: String = ids.iter().map(|id| format!("{id},{at}\n")).collect();
    let request = quiver_client::HistoricalRequest::new(
        "rides",
        FeatureSelection::Refs(vec![format!("driver_stats:{feature}")]),
        quiver_client::Spine::Csv(format!("driver_id,event_timestamp\n{spine}").into_bytes()),
    );
    client.historical(request).await.expect("training set").column(2).clone()
}

pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `quiverctl --endpoint ENDPOINT ARGS…`, feeding `stdin` if given.
pub fn quiverctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> CliOutput {
    let mut child = Command::new(binary("quiverctl").expect("quiverctl is built"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env_remove("QUIVER_PROJECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quiverctl starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("stdin accepts input");
    drop(input);
    let out = child.wait_with_output().expect("quiverctl finishes");
    CliOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A plain HTTP/1.0 GET over loopback; returns the status line and body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("the node's HTTP port answers");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// A metric's value for one group, from the `/metrics` text (0 when absent).
pub fn group_gauge(metrics: &str, name: &str, group: u64) -> u64 {
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A `POST` of `body` with `headers` (`name: value`) over a plain TCP connection, as any HTTP
/// client sends it: the status code and the body.
pub fn http_post(addr: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("the node's HTTP port answers");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string())
}

/// Waits until a node has died at a crash point (`QUIVER_FAILPOINT` with
/// `QUIVER_FAILPOINT_ONCE=marker`), and returns its index in `nodes`.
pub async fn crashed(nodes: &mut [LocalNode], marker: &Path, timeout: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if marker.exists() {
            for (i, node) in nodes.iter_mut().enumerate() {
                if node.wait_for_exit(std::time::Duration::ZERO).await.is_ok() {
                    return i;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "the crash point was never reached");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
