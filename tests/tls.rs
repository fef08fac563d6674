//! TLS on real `quiver-node` processes, with certificates made by `quiverctl cert`: clients
//! that trust the cluster's CA are served, others are refused cleanly, and three nodes talk
//! mutual TLS to each other.

use std::path::Path;
use std::time::Duration;

use quiver_tests::{LocalNode, RIDES, binary, driver_row, now_micros};

fn ctl(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("quiverctl").unwrap())
        .args(args)
        .env_remove("QUIVER_CA")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("quiverctl runs")
}

fn ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert!(out.status.success(), "quiverctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and one certificate for nodes on 127.0.0.1, under `dir`; answers the node flags.
fn certificates(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    ok(&["cert", "create-ca", "--out", dir]);
    ok(&["cert", "create-node", "nodes", "--ca-dir", dir, "--out", dir]);
    ["--tls-cert", "nodes.pem", "--tls-key", "nodes.key", "--tls-ca", "ca.pem"]
        .iter()
        .map(|s| if s.starts_with("--") { s.to_string() } else { format!("{dir}/{s}") })
        .collect()
}

fn https(node: &LocalNode) -> String {
    node.endpoint().replace("http://", "https://")
}

/// A node under `dir` with TLS from `certificates`: the node, the CA's path, its endpoint.
async fn tls_node(dir: &Path) -> (LocalNode, String, String) {
    let flags = certificates(dir);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = LocalNode::start(&dir.join("node"), &args).await.unwrap();
    let endpoint = https(&node);
    (node, dir.join("ca.pem").display().to_string(), endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_node_serves_clients_that_trust_its_ca_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ca, endpoint) = tls_node(dir.path()).await;
    let defs = dir.path().join("rides.yaml");
    std::fs::write(&defs, RIDES).unwrap();
    let trusting = |args: &[&str]| {
        ok(&[&["--endpoint", endpoint.as_str(), "--ca", ca.as_str(), "--project", "rides"], args].concat())
    };
    trusting(&["apply", "-f", defs.to_str().unwrap()]);
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(&rows, format!("{{\"driver_id\": 7, \"event_timestamp\": {}, \"conv_rate\": 0.5}}\n", now_micros()))
        .unwrap();
    trusting(&["push", "--feature-set", "driver_stats", rows.to_str().unwrap()]);
    let got = trusting(&["get", "--features", "driver_stats:conv_rate", "--entity", "driver_id=7"]);
    assert!(got.contains("0.5"), "{got}");

    // A client without the CA, or trusting another one, is refused; plaintext is not TLS.
    let other = dir.path().join("other");
    ok(&["cert", "create-ca", "--out", other.to_str().unwrap()]);
    let other_ca = other.join("ca.pem").display().to_string();
    let untrusted = ctl(&["--endpoint", &endpoint, "--ca", &other_ca, "status"]);
    assert!(!untrusted.status.success(), "a client that trusts another CA is refused");
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("certificate"), "the certificate is named");
    let without = ctl(&["--endpoint", &endpoint, "status"]);
    let asked = String::from_utf8_lossy(&without.stderr);
    assert!(asked.contains("needs the cluster's CA") && asked.contains("--ca"), "the CA is asked for: {asked}");
    assert!(!asked.contains("ClientBuilder"), "in the CLI's words: {asked}");
    let plaintext = ctl(&["--endpoint", &node.endpoint(), "--ca", &ca, "status"]);
    assert!(!plaintext.status.success(), "plaintext to the TLS port fails");
    // And says why, with or without the CA given.
    for out in [&plaintext, &ctl(&["--endpoint", &node.endpoint(), "status"])] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("speaks TLS") && stderr.contains("https://"), "{stderr}");
    }
    for out in [&untrusted, &without, &plaintext] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error:") && !stderr.contains("panicked"), "a clean error: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_talk_mutual_tls_and_serve_a_client_that_trusts_their_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = certificates(dir.path());
    // Training sets of any size are split over the nodes, which share one offline store.
    let shared = dir.path().join("offline").display().to_string();
    flags.extend(["--offline-store".to_string(), shared, "--split-min-rows".into(), "1".into()]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nodes = LocalNode::start_cluster(dir.path(), 3, &args, &[], Duration::from_secs(60)).await.unwrap();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let client = quiver_client::Client::builder(https(&nodes[1])).ca(ca).connect().await.unwrap();
    client.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let at = now_micros();
    let rows = (0..50).map(|id| driver_row(id, at, id as f64, id)).collect();
    client.write("rides", "driver_stats", rows).await.unwrap();
    let read = quiver_tests::read_drivers(&client, 0..50).await;
    assert!(read.rows.iter().all(|row| row[0].status == quiver_client::Freshness::Present), "every row is read back");
    let csv = (0..50)
        .fold(String::from("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,city\n"), |c, id| {
            c + &format!("{id},{at},{},0.5,{id},c\n", id as f64 / 100.0)
        });
    let source = dir.path().join("drivers.csv");
    std::fs::write(&source, csv).unwrap();
    client.ingest("rides", "driver_stats", source.to_str().unwrap(), |_| {}).await.unwrap();
    let spine = (0..60).fold(String::from("driver_id,event_timestamp\n"), |s, id| s + &format!("{id},{}\n", at + 1));
    let request = quiver_client::HistoricalRequest::new(
        "rides",
        quiver_client::FeatureSelection::Refs(vec!["driver_stats:avg_daily_trips".into()]),
        quiver_client::Spine::Csv(spine.into_bytes()),
    );
    let mut stream = client.historical_stream(request, |_| {}).await.unwrap();
    assert_eq!(stream.nodes(), 3, "the nodes joined their parts over mutual TLS");
    let mut trips = Vec::new();
    while let Some(batch) = futures::StreamExt::next(&mut stream).await {
        let batch = batch.unwrap();
        let column = batch.column_by_name("driver_stats:avg_daily_trips").unwrap();
        trips.extend(arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(column).iter());
    }
    assert_eq!(trips, (0..60).map(|id| (id < 50).then_some(id)).collect::<Vec<_>>());

    // Something that trusts the CA but holds no member certificate may not speak Raft or
    // join, whatever it sends: the RPCs between nodes are for members.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(dir.path().join("ca.pem")).unwrap()));
    let channel = tonic::transport::Endpoint::from_shared(https(&nodes[0]))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raft = quiver_proto::v1::raft_service_client::RaftServiceClient::new(channel.clone());
    let message = quiver_proto::v1::RaftMessage { group_id: 0, payload: vec![1, 2, 3], error: vec![] };
    for status in [
        raft.vote(message.clone()).await.unwrap_err(),
        raft.propose(message.clone()).await.unwrap_err(),
        raft.append_entries(message).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("members"), "{status:?}");
    }
    let mut offline = quiver_proto::v1::offline_service_client::OfflineServiceClient::new(channel.clone());
    let part = quiver_proto::v1::JoinPartRequest { plan: vec![1, 2, 3], spine: vec![] };
    let refused = offline.join_part(part).await.expect_err("a part is refused to a non-member");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let mut admin = quiver_proto::v1::admin_service_client::AdminServiceClient::new(channel);
    let join = admin.join(quiver_proto::v1::JoinRequest { address: "10.9.9.9:7070".into() }).await.unwrap_err();
    assert_eq!(join.code(), tonic::Code::PermissionDenied, "{join:?}");
    let status = client.status().await.unwrap();
    assert_eq!(status.nodes.len(), 3, "no node was added: {:?}", status.nodes);
}

/// The certificate a TLS port at `addr` serves (PEM), as Python's ssl module reads it.
fn served_certificate(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!("import ssl; print(ssl.get_server_certificate(('{host}', {port})))");
    let out = std::process::Command::new("python3").args(["-c", &script]).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The base64 body of a PEM certificate, for comparing two encodings of one certificate.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_status_says_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ca, endpoint) = tls_node(dir.path()).await;
    let status = ok(&["--endpoint", &endpoint, "--ca", &ca, "status"]);
    assert!(status.contains("TLS certificate of node 1: valid until"), "{status}");
    let old = std::fs::read_to_string(dir.path().join("nodes.pem")).unwrap();
    let addr = node.endpoint().trim_start_matches("http://").to_string();
    assert_eq!(pem_body(&served_certificate(&addr)), pem_body(&old));

    // Renewed: a new key and certificate from the same CA, moved over the old files.
    let renewed = dir.path().join("renewed");
    let d = dir.path().to_str().unwrap();
    ok(&["cert", "create-node", "nodes", "--ca-dir", d, "--out", renewed.to_str().unwrap()]);
    for file in ["nodes.key", "nodes.pem"] {
        std::fs::rename(renewed.join(file), dir.path().join(file)).unwrap();
    }
    let new = std::fs::read_to_string(dir.path().join("nodes.pem")).unwrap();
    assert_ne!(pem_body(&new), pem_body(&old));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pem_body(&served_certificate(&addr)) != pem_body(&new) {
        assert!(std::time::Instant::now() < deadline, "the node still serves the old certificate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Clients go on being served, over the new certificate.
    ok(&["--endpoint", &endpoint, "--ca", &ca, "status"]);
}

/// The README's security recipe, run as written on loopback: certificates, a node with TLS
/// and authentication, then tokens and the audit log through `quiverctl` with the
/// environment it sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_security_recipe_runs_as_written() {
    use quiver_tests::recipe::{Recipe, readme_block, run_to_end};
    let dir = tempfile::tempdir().unwrap();
    let [listen, http] = <[String; 2]>::try_from(quiver_admin::local_node::free_addrs(2).unwrap()).unwrap();
    let replace = [
        ("10.0.0.1:7070", listen.as_str()),
        ("10.0.0.1:7080", http.as_str()),
        ("--host 10.0.0.1", "--host 127.0.0.1"),
        ("/var/lib/quiver", "data"),
    ];
    let script = readme_block("### Security: TLS, tokens", &replace);
    let (start, rest) =
        script.split_at(script.find("\nexport QUIVER_ENDPOINT").expect("the recipe exports the endpoint"));
    let _node = Recipe::run(dir.path(), start);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ca = std::fs::read(dir.path().join("certs/ca.pem")).ok();
        if let Some(ca) = ca
            && quiver_admin::local_node::healthy(&http, Some(&ca)).await
        {
            break;
        }
        let log = std::fs::read_to_string(dir.path().join("recipe.log")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "the recipe's node never served:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = run_to_end(dir.path(), rest);
    assert!(out.contains("pipeline") && out.contains("clinician"), "the tokens are listed:\n{out}");
    assert!(out.contains("\"CreateToken\""), "the audit log, as JSON, holds the tokens' creation:\n{out}");
}
