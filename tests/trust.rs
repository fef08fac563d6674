//! Trust, probed the way a hostile user would: the RPCs between nodes called by a client
//! that is not Quiver's own (Python's grpcio, stubs generated from `proto/` by
//! grpcio-tools, `tests/probe/probe.py`) in every configuration a node accepts, refused on
//! their headers with nothing read or changed; and unauthenticated floods that cost the node
//! neither memory nor audit log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use quiver_client::{AuditQuery, Client, Role};
use quiver_tests::{LocalNode, admin_token, binary, issue_token};

/// Every RPC between nodes the probe calls.
const MEMBER_RPCS: [&str; 10] = [
    "AppendEntries",
    "Vote",
    "InstallSnapshot",
    "Propose",
    "Campaign",
    "ReadCut",
    "ReadRows",
    "Join",
    "MetaReadIndex",
    "JoinPart",
];

/// Runs the probe against `endpoint` (`host:port`) with more `args`; answers each call's code.
fn probe(endpoint: &str, args: &[&str]) -> BTreeMap<String, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/probe/probe.py"))
        .args(["--proto", &format!("{root}/../proto"), "--endpoint", endpoint])
        .args(args)
        .output()
        .expect("python3 runs (with grpcio-tools: .ci/run installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "probe failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("probe printed {stdout}: {e}"))
}

fn host(node: &LocalNode) -> String {
    node.endpoint().trim_start_matches("http://").to_string()
}

/// Every RPC between nodes was refused as a non-member's: never decoded, never answered.
fn all_refused(codes: &BTreeMap<String, String>, how: &str) {
    assert_eq!(codes.len(), MEMBER_RPCS.len(), "{how}: {codes:?}");
    for (rpc, code) in codes {
        assert!(code == "UNAUTHENTICATED" || code == "PERMISSION_DENIED", "{how}: {rpc} answered {code}");
    }
}

fn ctl(args: &[&str]) -> String {
    let out = std::process::Command::new(binary("quiverctl").unwrap()).args(args).output().expect("quiverctl runs");
    assert!(out.status.success(), "quiverctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn viewer(root: &Client) -> String {
    issue_token(root, "viewer", "rides", Role::Viewer, false).await
}

/// What a successful attack would have changed: members, tokens, the audit log's size.
async fn state(root: &Client) -> (usize, usize, usize) {
    let status = root.status().await.unwrap();
    let tokens = root.list_tokens(None).await.unwrap();
    let audit = root.audit(&AuditQuery::default()).await.unwrap();
    (status.nodes.len(), tokens.len(), audit.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_only_the_cluster_secret_admits_a_caller_to_the_rpcs_between_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = LocalNode::start(&data, &["--auth"]).await.unwrap();
    let root = Client::builder(node.endpoint()).token(admin_token(&data)).connect().await.unwrap();
    let viewer = viewer(&root).await;
    let admin = admin_token(&data);
    let before = state(&root).await;

    all_refused(&probe(&host(&node), &[]), "no token");
    all_refused(&probe(&host(&node), &["--token", &viewer]), "a viewer's token");
    all_refused(&probe(&host(&node), &["--token", &admin]), "a cluster admin's token");
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "qvs_".to_string() + &"0".repeat(64)).unwrap();
    let guessed = probe(&host(&node), &["--secret", wrong.to_str().unwrap()]);
    all_refused(&guessed, "a made-up secret");
    assert_eq!(guessed["Join"], "PERMISSION_DENIED");

    // The node's own secret passes admission: the garbage body then reaches the decoder.
    let secret = data.join("cluster.secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the secret is the node user's alone");
    let member = probe(&host(&node), &["--secret", secret.to_str().unwrap(), "--only", "AppendEntries"]);
    assert_eq!(member["AppendEntries"], "INVALID_ARGUMENT", "{member:?}");

    // Cancelling a shard operation is a cluster admin's: no token, a viewer's token or the
    // member secret alone are refused; the admin gets past them to "no such operation".
    let cancel = |extra: &[&str]| {
        let args = [&["--cancel", "99", "--only", "CancelShardOperation"][..], extra].concat();
        probe(&host(&node), &args)["CancelShardOperation"].clone()
    };
    assert_eq!(cancel(&[]), "UNAUTHENTICATED");
    assert_eq!(cancel(&["--token", &viewer]), "PERMISSION_DENIED");
    assert_eq!(cancel(&["--secret", secret.to_str().unwrap()]), "UNAUTHENTICATED");
    assert_eq!(cancel(&["--token", &admin]), "INVALID_ARGUMENT");
    // So is finalizing an upgrade; the admin's finalizes (a new cluster is at its version).
    let finalize = |extra: &[&str]| {
        let args = [&["--finalize", "--only", "FinalizeUpgrade"][..], extra].concat();
        probe(&host(&node), &args)["FinalizeUpgrade"].clone()
    };
    assert_eq!(finalize(&[]), "UNAUTHENTICATED");
    assert_eq!(finalize(&["--token", &viewer]), "PERMISSION_DENIED");
    assert_eq!(finalize(&["--secret", secret.to_str().unwrap()]), "UNAUTHENTICATED");
    assert_eq!(finalize(&["--token", &admin]), "OK");

    let after = state(&root).await;
    assert_eq!((after.0, after.1), (before.0, before.1), "no member added, no token minted");
    assert!(after.2 >= before.2, "nothing erased from the audit log: {before:?} → {after:?}");
}

/// The cluster id `data`'s node keeps in its identity file, once it has learned it.
async fn cluster_of(data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let identity = std::fs::read_to_string(data.join("identity.toml")).unwrap_or_default();
        if let Some(line) = identity.lines().find_map(|l| l.strip_prefix("cluster = ")) {
            return line.trim_matches('"').to_string();
        }
        assert!(Instant::now() < deadline, "no cluster id in {}: {identity}", data.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused_though_it_holds_the_secret() {
    // Two clusters given one secret file by mistake (or restored from two backups).
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("shared.secret");
    let shared = ["--cluster-secret", secret.to_str().unwrap()];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let node_a = LocalNode::start(&a, &shared).await.unwrap();
    let _node_b = LocalNode::start(&b, &shared).await.unwrap();
    let (ours, theirs) = (cluster_of(&a).await, cluster_of(&b).await);
    assert_ne!(ours, theirs, "each cluster made an id of its own");

    let secret = secret.to_str().unwrap();
    let as_member = |cluster: &str| {
        let mut args = vec!["--secret", secret, "--only", "AppendEntries"];
        if !cluster.is_empty() {
            args.extend(["--cluster", cluster]);
        }
        probe(&host(&node_a), &args)["AppendEntries"].clone()
    };
    // A member of the other cluster is refused before its body is read; one of this cluster,
    // or one that has not learned its cluster yet (a joiner), gets to the decoder.
    assert_eq!(as_member(&theirs), "PERMISSION_DENIED");
    assert_eq!(as_member(&ours), "INVALID_ARGUMENT");
    assert_eq!(as_member(""), "INVALID_ARGUMENT");

    // The id stays with the data dir: a restart keeps it, and a data dir whose metadata is
    // another cluster's does not start under this identity.
    drop(node_a);
    let identity = std::fs::read_to_string(a.join("identity.toml")).unwrap();
    std::fs::write(a.join("identity.toml"), identity.replace(&ours, &theirs)).unwrap();
    let refused =
        LocalNode::start(&a, &shared).await.err().expect("a node whose data is another cluster's").to_string();
    assert!(refused.contains("holds another cluster's data"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_node_still_admits_only_members_to_the_rpcs_between_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--insecure"]).await.unwrap();
    let root = node.client().await.unwrap();
    let before = root.status().await.unwrap().nodes.len();
    all_refused(&probe(&host(&node), &[]), "--insecure, no token");
    assert_eq!(root.status().await.unwrap().nodes.len(), before, "no member added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_a_client_certificate_from_the_cluster_ca_is_never_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let c = certs.to_str().unwrap();
    ctl(&["cert", "create-ca", "--out", c]);
    ctl(&["cert", "create-node", "nodes", "--ca-dir", c, "--out", c]);
    let made = ctl(&["cert", "create-client", "intruder", "--ca-dir", c, "--out", c]);
    assert!(made.contains("client certificate"), "{made}");
    let file = |name: &str| certs.join(name).display().to_string();
    let (cert, key, ca) = (file("nodes.pem"), file("nodes.key"), file("ca.pem"));
    let data = dir.path().join("node");
    let args = ["--auth", "--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca];
    let node = LocalNode::start(&data, &args).await.unwrap();
    assert!(!data.join("cluster.secret").exists(), "members prove themselves by certificate under TLS");
    let endpoint = node.endpoint().replace("http://", "https://");
    let root =
        Client::builder(&endpoint).ca(std::fs::read(&ca).unwrap()).token(admin_token(&data)).connect().await.unwrap();
    let viewer = viewer(&root).await;
    let before = state(&root).await;
    // The node's certificate names 127.0.0.1 and localhost; grpcio checks the name.
    let target = host(&node).replace("127.0.0.1", "localhost");
    let (client_cert, client_key) = (file("intruder.pem"), file("intruder.key"));
    let intruder = ["--ca", &ca, "--cert", &client_cert, "--key", &client_key];
    all_refused(&probe(&target, &["--ca", &ca]), "TLS without a client certificate");
    all_refused(&probe(&target, &intruder), "a client certificate signed by the cluster's CA");
    all_refused(&probe(&target, &[&intruder[..], &["--token", &viewer]].concat()), "a client certificate and a token");

    // The member certificate passes admission: the garbage body then reaches the decoder.
    let member = probe(&target, &["--ca", &ca, "--cert", &cert, "--key", &key, "--only", "AppendEntries"]);
    assert_eq!(member["AppendEntries"], "INVALID_ARGUMENT", "{member:?}");
    let after = state(&root).await;
    assert_eq!((after.0, after.1), (before.0, before.1), "no member added, no token minted");
}

/// The peak resident memory of process `pid` so far, in bytes (`VmHWM`).
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB");
    kib.trim().parse::<u64>().unwrap() << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_floods_cost_neither_memory_nor_audit_log() {
    use quiver_proto::v1::feature_service_client::FeatureServiceClient;
    use quiver_proto::v1::{StatusRequest, WriteFeaturesRequest, admin_service_client::AdminServiceClient};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = LocalNode::start(&data, &["--auth"]).await.unwrap();
    let pid = node.pid().unwrap();
    let before = peak_memory(pid);

    // 1 GiB of bodies without a token, five at once, each within the service's message
    // limit: refused on the headers, never read.
    let channel = tonic::transport::Endpoint::from_shared(node.endpoint()).unwrap().connect().await.unwrap();
    let body = "x".repeat(200 << 20);
    let sends = (0..5).map(|_| {
        let mut client = FeatureServiceClient::new(channel.clone()).max_encoding_message_size(usize::MAX);
        let request = WriteFeaturesRequest { project: body.clone(), ..Default::default() };
        async move { client.write_features(request).await.map(drop) }
    });
    for result in futures::future::join_all(sends).await {
        let code = result.unwrap_err().code();
        assert!(
            matches!(code, tonic::Code::Unauthenticated | tonic::Code::Cancelled | tonic::Code::Unknown),
            "{code:?}"
        );
    }
    drop(body);
    let grown = peak_memory(pid).saturating_sub(before);
    println!("node peak memory grew {} MiB under 1 GiB of unauthenticated bodies", grown >> 20);
    assert!(grown < 128 << 20, "the node buffered bodies it refused: its peak grew {} MiB", grown >> 20);

    // 10,000 made-up tokens: the audit log keeps a first entry and a count per source and minute.
    let mut admin = AdminServiceClient::new(channel);
    for i in 0..10_000 {
        let mut request = tonic::Request::new(StatusRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer qvt_made_up_{i}").parse().unwrap());
        let code = admin.status(request).await.unwrap_err().code();
        assert!(matches!(code, tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted), "{code:?}");
    }
    let root = Client::builder(node.endpoint()).token(admin_token(&data)).connect().await.unwrap();
    let query = AuditQuery { actor: Some("unauthenticated".into()), ..AuditQuery::default() };
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let entries = root.audit(&query).await.unwrap();
        let counted: u64 = entries
            .iter()
            .map(|e| match e.detail.split_once(" more requests without a valid token") {
                Some((n, _)) => n.parse::<u64>().unwrap(),
                None => 1,
            })
            .sum();
        // The five bodies and the tokens, all from one source over at most three minutes.
        assert!(entries.len() <= 6, "one first entry and one count per minute: {entries:#?}");
        if counted == 10_005 {
            break;
        }
        assert!(Instant::now() < deadline, "counted {counted} of 10,005 refusals in {entries:#?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_an_ingest_reads_only_listed_places_and_is_on_record() {
    use quiver_tests::RIDES;
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/driver_stats.parquet");
    std::fs::copy(&example, landing.join("driver_stats.parquet")).unwrap();
    let data = dir.path().join("node");
    let node = LocalNode::start(&data, &["--auth", "--ingest-allow", landing.to_str().unwrap()]).await.unwrap();
    let root = Client::builder(node.endpoint()).token(admin_token(&data)).connect().await.unwrap();
    root.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let loader = issue_token(&root, "loader", "rides", Role::Writer, false).await;
    let writer = Client::builder(node.endpoint()).token(loader).connect().await.unwrap();

    let listed = landing.join("driver_stats.parquet");
    writer.ingest("rides", "driver_stats", listed.to_str().unwrap(), |_| {}).await.expect("a listed place is read");
    // Outside the list, in the node's own data, or not there at all: one refusal, one message.
    let outside = [
        example.display().to_string(),
        data.join("offline").display().to_string(),
        "/etc/shadow".to_string(),
        "/no/such/file.parquet".to_string(),
    ];
    let mut messages = Vec::new();
    for path in &outside {
        let err = writer.ingest("rides", "driver_stats", path, |_| {}).await.unwrap_err().to_string();
        assert!(err.contains("[ingest] allow"), "{path}: {err}");
        messages.push(err.replace(path.as_str(), "PATH"));
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "the refusal says nothing of what exists: {messages:#?}");
    let query = AuditQuery { actor: Some("loader".into()), ..AuditQuery::default() };
    let entries = root.audit(&query).await.unwrap();
    let ingests: Vec<_> = entries.iter().filter(|e| e.action == "Ingest").collect();
    assert_eq!(ingests.len(), 1 + outside.len(), "every ingest is on record: {entries:#?}");
    assert!(ingests.iter().any(|e| e.detail.contains(listed.to_str().unwrap()) && e.outcome == "ok"), "{ingests:#?}");
}

/// Copies a stopped node's data dir (sled files and all).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `change` on the meta group's state tree of the data dir `dir`, as an intruder with
/// the files would.
fn tamper(dir: &Path, change: impl FnOnce(&dyn quiver_store::storage::KvTree, &mut quiver_store::storage::WriteBatch)) {
    use quiver_store::keyspace::{TreePart, tree_name};
    use quiver_store::storage::{KvEngine, SledEngine, WriteBatch};
    let engine = SledEngine::open(&dir.join("online")).unwrap();
    let tree = engine.tree(&tree_name(0, TreePart::State)).unwrap();
    let mut batch = WriteBatch::default();
    change(tree.as_ref(), &mut batch);
    tree.write(batch).unwrap();
    engine.flush().unwrap();
}

fn verify(dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(binary("quiverctl").unwrap())
        .args(["audit", "verify", "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_an_edited_a_removed_and_a_swapped_entry() {
    use quiver_store::keyspace::audit_link;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = LocalNode::start(&data, &["--auth"]).await.unwrap();
    let root = Client::builder(node.endpoint()).token(admin_token(&data)).connect().await.unwrap();
    for i in 0..6 {
        issue_token(&root, &format!("t{i}"), "rides", Role::Viewer, false).await;
    }
    // The retention is the cluster's: a cluster admin sets it, a day at least.
    root.set_audit_retention(Duration::from_secs(90 * 86_400)).await.unwrap();
    assert!(root.set_audit_retention(Duration::from_secs(3600)).await.is_err(), "under a day is refused");
    let viewer = Client::builder(node.endpoint()).token(viewer(&root).await).connect().await.unwrap();
    assert!(viewer.set_audit_retention(Duration::from_secs(400 * 86_400)).await.is_err());
    assert!(node.terminate().unwrap(), "a clean stop");

    let (ok, said) = verify(&data);
    assert!(ok && said.contains("unbroken"), "{said}");
    let entries = |said: &str| said.split("verified: ").nth(1).and_then(|s| s.split(' ').next()).map(str::to_string);
    assert!(entries(&said).is_some_and(|n| n.parse::<u64>().unwrap() >= 8), "{said}");

    let edited = dir.path().join("edited");
    copy_dir(&data, &edited);
    tamper(&edited, |tree, batch| {
        let mut stored = tree.get(&audit_link(3)).unwrap().unwrap();
        let at = stored.windows(5).position(|w| w == b"admin").expect("entry 3 names its actor");
        stored[at..at + 5].copy_from_slice(b"ghost");
        batch.put(audit_link(3), stored);
    });
    let removed = dir.path().join("removed");
    copy_dir(&data, &removed);
    tamper(&removed, |_, batch| batch.delete(audit_link(4)));
    let swapped = dir.path().join("swapped");
    copy_dir(&data, &swapped);
    tamper(&swapped, |tree, batch| {
        let (a, b) = (tree.get(&audit_link(1)).unwrap().unwrap(), tree.get(&audit_link(5)).unwrap().unwrap());
        batch.put(audit_link(1), b);
        batch.put(audit_link(5), a);
    });
    for (copy, at) in [(&edited, "entry 4"), (&removed, "entry 4"), (&swapped, "entry 1")] {
        let (ok, said) = verify(copy);
        assert!(!ok && said.contains(&format!("breaks at {at}")), "{}: {said}", copy.display());
    }
}

/// A network namespace of the test's own, joined to this one by a veth pair: the host's end
/// `10.213.N.1`, the namespace's `10.213.N.2` (peers' address of the node inside) and
/// `10.213.N.3` (its clients' address). Removed, with everything in it, when dropped.
struct Namespace {
    name: String,
    net: String,
}

fn sh(args: &[&str]) -> bool {
    std::process::Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success())
}

impl Namespace {
    /// `None` where namespaces cannot be made (not root, or no `ip`).
    fn create() -> Option<Namespace> {
        let id = std::process::id() % 200 + 20;
        let ns = Namespace { name: format!("qv-trust-{id}"), net: format!("10.213.{id}") };
        let (host, inner) = (format!("qvh{id}"), format!("qvn{id}"));
        let ok = sh(&["ip", "netns", "add", &ns.name])
            && sh(&["ip", "link", "add", &host, "type", "veth", "peer", "name", &inner])
            && sh(&["ip", "link", "set", &inner, "netns", &ns.name])
            && sh(&["ip", "addr", "add", &format!("{}.1/24", ns.net), "dev", &host])
            && sh(&["ip", "link", "set", &host, "up"])
            && ns.exec(&["ip", "addr", "add", &format!("{}.2/24", ns.net), "dev", &inner])
            && ns.exec(&["ip", "addr", "add", &format!("{}.3/24", ns.net), "dev", &inner])
            && ns.exec(&["ip", "link", "set", &inner, "up"])
            && ns.exec(&["ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    fn exec(&self, args: &[&str]) -> bool {
        sh(&[&["ip", "netns", "exec", self.name.as_str()], args].concat())
    }

    /// Cuts the node inside off from its peers at `peer_ports` on the host's end, both ways,
    /// while its clients' address still answers.
    fn partition(&self, peer_ports: &[u16]) {
        let ports = peer_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let (peer_addr, host) = (format!("{}.2", self.net), format!("{}.1", self.net));
        assert!(self.exec(&["iptables", "-A", "INPUT", "-d", &peer_addr, "-j", "DROP"]));
        let out = ["iptables", "-A", "OUTPUT", "-d", &host, "-p", "tcp", "-m", "multiport", "--dports", &ports];
        assert!(self.exec(&[&out[..], &["-j", "DROP"]].concat()));
    }

    fn heal(&self) {
        assert!(self.exec(&["iptables", "-F"]));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // The veth pair and the rules go with the namespace.
        sh(&["ip", "netns", "del", &self.name]);
    }
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_metadata_leader_stops_trusting_tokens_within_the_bound() {
    let Some(ns) = Namespace::create() else {
        assert!(std::env::var_os("CI").is_none(), "network namespaces are needed: run as root with iproute2");
        eprintln!("SKIPPED: cannot make a network namespace here (root and iproute2 needed)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let free: Vec<u16> = quiver_admin::local_node::free_addrs(6).unwrap().iter().map(|a| port(a)).collect();
    let (p1, p2, p3) = (free[0], free[1], free[2]);
    let host = format!("{}.1", ns.net);
    let (n1, n2) = (format!("{host}:{p1}"), format!("{host}:{p2}"));
    let (n3_peers, n3_clients) = (format!("{}.2:{p3}", ns.net), format!("{}.3:{p3}", ns.net));
    let initial = format!("{n1},{n2},{n3_peers}");
    let secret = dir.path().join("cluster.secret");
    let store = dir.path().join("offline");
    let (secret, store) = (secret.to_str().unwrap(), store.to_str().unwrap());
    let common =
        ["--auth", "--insecure", "--initial-cluster", &initial, "--cluster-secret", secret, "--offline-store", store];
    let mut nodes = Vec::new();
    for (i, addr) in [&n1, &n2].into_iter().enumerate() {
        let http = format!("{host}:{}", free[3 + i]);
        nodes.push(LocalNode::spawn_at(&dir.path().join(format!("node{}", i + 1)), addr, &http, &common, &[]).unwrap());
    }
    let inside = ["ip", "netns", "exec", ns.name.as_str()];
    let n3_listen = format!("0.0.0.0:{p3}");
    let n3_http = format!("{}.3:{}", ns.net, free[5]);
    let n3_args = [&common[..], &["--advertise", &n3_peers, "--advertise-client", &n3_clients]].concat();
    nodes
        .push(LocalNode::spawn_under(&inside, &dir.path().join("node3"), &n3_listen, &n3_http, &n3_args, &[]).unwrap());
    for node in &mut nodes {
        node.wait_ready(Duration::from_secs(60)).await.unwrap();
    }
    let root =
        Client::builder(format!("http://{n1}")).token(admin_token(&dir.path().join("node1"))).connect().await.unwrap();
    let v = viewer(&root).await;
    let through = |endpoint: String, token: String| async move {
        Client::builder(endpoint).token(token).connect().await.unwrap()
    };
    let at_n3 = through(format!("http://{n3_clients}"), v).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = at_n3.shard_map().await {
        assert!(Instant::now() < deadline, "node 3 never accepted the new token: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Node 3 is cut off from its peers, not from its clients; the majority revokes the token.
    ns.partition(&[p1, p2]);
    root.revoke_token("viewer").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let refusal = loop {
        match at_n3.shard_map().await {
            Err(e) => break e.to_string(),
            Ok(_) => assert!(Instant::now() < deadline, "node 3 still trusts a revoked token"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(refusal.contains("cannot tell whether a token was revoked"), "{refusal}");

    // Healed, node 3 catches up and knows the token for revoked; the root token works there.
    ns.heal();
    let root_at_n3 = through(format!("http://{n3_clients}"), admin_token(&dir.path().join("node1"))).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = root_at_n3.shard_map().await {
        assert!(Instant::now() < deadline, "node 3 never caught up after the partition healed: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let revoked = at_n3.shard_map().await.unwrap_err().to_string();
    assert!(revoked.contains("revoked"), "{revoked}");
    drop(nodes);
}
