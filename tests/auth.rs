//! Authentication and roles on real `quiver-node` processes started with `--auth`: every
//! role against every kind of request, the distinct refusals of missing, unknown, expired
//! and revoked tokens, a revocation reaching every node of a cluster, personal features
//! readable only with the grant, per-token limits, the audit log through a kill -9 of the
//! metadata leader, and a node that will not listen beyond loopback open.

use std::time::{Duration, Instant};

use quiver_client::{
    Client, Error, FeatureSelection, HistoricalRequest, NewToken, OnlineRequest, OpKind, Role, Scope, Spine,
    StatsWindow,
};
use quiver_core::Error as CoreError;
use quiver_tests::{LocalNode, RIDES, admin_token, driver_key, driver_row, issue_token as token, now_micros};

async fn client(node: &LocalNode, token: &str) -> Client {
    Client::builder(node.endpoint()).token(token).connect().await.expect("client connects")
}

fn definitions(text: &str) -> quiver_client::Definitions {
    quiver_client::Definitions::from_yaml(text).expect("definitions parse")
}

fn rates(features: &quiver_client::OnlineFeatures) -> Vec<String> {
    features.rows.iter().map(|r| format!("{r:?}")).collect()
}

/// Once every node of `nodes` knows token `secret`: a node learns a new token when it applies
/// the metadata entry that created it, a heartbeat or so after the leader did.
async fn known_everywhere(nodes: &[LocalNode], secret: &str) {
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(Error::Server(CoreError::Unauthenticated(e))) = client(node, secret).await.projects().await {
            assert!(Instant::now() < deadline, "{} does not know the token: {e}", node.endpoint());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn denied(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::Server(CoreError::PermissionDenied(_))))
}

/// What one kind of request needs; each runs against project `rides`.
#[derive(Debug, Clone, Copy)]
enum Request {
    Read,
    Write,
    History,
    Stats,
    Apply,
    IssueToken,
    ShardOperation,
    CancelOperation,
    Status,
    FinalizeUpgrade,
}

async fn send(client: &Client, request: Request, n: usize) -> Result<(), Error> {
    let features = || FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]);
    match request {
        Request::Read => {
            let read = OnlineRequest {
                project: "rides".into(),
                features: features(),
                entities: vec![driver_key(1)],
                consistency: quiver_client::Consistency::Linearizable,
            };
            client.get_online(read).await.map(drop)
        }
        Request::Write => {
            client.write("rides", "driver_stats", vec![driver_row(1, now_micros(), 0.9, 9)]).await.map(drop)
        }
        Request::History => {
            let spine = Spine::Csv(format!("driver_id,event_timestamp\n1,{}\n", now_micros()).into_bytes());
            client.historical(HistoricalRequest::new("rides", features(), spine)).await.map(drop)
        }
        Request::Stats => {
            let window = StatsWindow::Offline { from: None, to: None };
            // driver_stats has a personal feature (city): its statistics need the PII grant.
            client.statistics("rides", "driver_ratings", &window).await.map(drop)
        }
        Request::Apply => client.apply(&definitions(RIDES)).await.map(drop),
        Request::IssueToken => {
            let new = NewToken {
                name: format!("made-{n}"),
                scope: Scope::Project("rides".into()),
                role: Role::Viewer,
                pii: false,
                ttl: None,
            };
            client.create_token(&new).await.map(drop)
        }
        Request::ShardOperation => client.start_shard_operation(OpKind::Rebalance).await.map(drop),
        // Past authorization, the caller learns there is no such operation.
        Request::CancelOperation => match client.cancel_shard_operation(u64::MAX).await {
            Err(Error::Server(CoreError::InvalidArgument(why))) if why.contains("no shard operation") => Ok(()),
            other => other.map(drop),
        },
        Request::Status => client.status().await.map(drop),
        Request::FinalizeUpgrade => client.finalize_upgrade().await.map(drop),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_grants_on_its_own_project_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    root.apply(&definitions(RIDES)).await.unwrap();
    root.apply(&definitions(&RIDES.replace("project: rides", "project: other"))).await.unwrap();
    root.write("rides", "driver_stats", vec![driver_row(1, now_micros() - 1_000_000, 0.25, 1)]).await.unwrap();

    use Request::*;
    let requests =
        [Read, Write, History, Stats, Apply, IssueToken, ShardOperation, CancelOperation, Status, FinalizeUpgrade];
    // Per token, which of `requests` it may make (1) or is refused (0).
    let table: [(&str, &str, Role, [u8; 10]); 4] = [
        ("viewer", "rides", Role::Viewer, [1, 0, 1, 1, 0, 0, 0, 0, 0, 0]),
        ("writer", "rides", Role::Writer, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]),
        ("owner", "rides", Role::Admin, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]),
        ("stranger", "other", Role::Admin, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let mut n = 0;
    for (name, project, role, allowed) in table {
        let caller = client(&node, &token(&root, name, project, role, false).await).await;
        for (request, allowed) in requests.iter().zip(allowed) {
            n += 1;
            let before = rates(&quiver_tests::read_drivers(&root, [1]).await);
            let result = send(&caller, *request, n).await;
            if allowed == 1 {
                assert!(result.is_ok(), "{name} {request:?}: {result:?}");
            } else {
                assert!(denied(&result), "{name} {request:?} should be refused PermissionDenied: {result:?}");
                let text = result.unwrap_err().to_string();
                assert!(text.contains(&format!("token '{name}'")), "the refusal names the token: {text}");
                assert_eq!(
                    rates(&quiver_tests::read_drivers(&root, [1]).await),
                    before,
                    "a refused request changes nothing"
                );
            }
        }
    }
    for request in requests {
        n += 1;
        send(&root, request, n).await.unwrap_or_else(|e| panic!("the cluster admin may {request:?}: {e}"));
    }
    // A project's admin sees its project's tokens only; the cluster admin sees all.
    let rides_admin = client(&node, &token(&root, "lister", "rides", Role::Admin, false).await).await;
    let names: Vec<String> = rides_admin.list_tokens(None).await.unwrap().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"viewer".to_string()) && !names.contains(&"stranger".to_string()), "{names:?}");
    assert!(!names.contains(&"admin".to_string()), "{names:?}");
    assert!(root.list_tokens(None).await.unwrap().iter().any(|t| t.name == "stranger"));
    let projects = client(&node, &token(&root, "other-viewer", "other", Role::Viewer, false).await).await;
    assert_eq!(projects.projects().await.unwrap(), vec!["other".to_string()], "only the projects it may see");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_expired_and_revoked_tokens_are_each_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    let unauthenticated = |result: Result<quiver_client::ClusterStatus, Error>, says: &str| match result {
        Err(Error::Server(CoreError::Unauthenticated(text))) => assert!(text.contains(says), "{text}"),
        other => panic!("expected Unauthenticated saying {says:?}: {other:?}"),
    };
    let anonymous = Client::connect(node.endpoint()).await.unwrap();
    unauthenticated(anonymous.status().await, "no token");
    unauthenticated(client(&node, "qvt_0123").await.status().await, "not one this cluster issued");

    let short = NewToken {
        name: "short".into(),
        scope: Scope::Cluster,
        role: Role::Admin,
        pii: false,
        ttl: Some(Duration::from_secs(1)),
    };
    let (secret, info) = root.create_token(&short).await.unwrap();
    assert!(info.expires_at.is_some());
    let short_lived = client(&node, &secret).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while short_lived.status().await.is_ok() {
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unauthenticated(short_lived.status().await, "expired");

    let revoked = client(&node, &token(&root, "gone", "rides", Role::Viewer, false).await).await;
    revoked.shard_map().await.unwrap();
    root.revoke_token("gone").await.unwrap();
    unauthenticated(revoked.status().await, "revoked");
    // The refusal is in the audit log under the token and its project.
    let theirs =
        quiver_client::AuditQuery { project: Some("rides".into()), actor: Some("gone".into()), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = root.audit(&theirs).await.unwrap();
        if entries.iter().any(|e| e.action == "Status" && e.outcome.contains("revoked")) {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal of the revoked token under project rides: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = NewToken {
        name: "gone".into(),
        scope: Scope::Project("rides".into()),
        role: Role::Viewer,
        pii: false,
        ttl: None,
    };
    let reused = root.create_token(&again).await.unwrap_err().to_string();
    assert!(reused.contains("never reused"), "{reused}");
    // The bootstrap token works across a restart, and a restart writes no other.
    let mut node = node;
    node.restart().await.unwrap();
    root.status().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_by_every_node_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = LocalNode::start_cluster(dir.path(), 3, &["--auth"], &[], Duration::from_secs(60)).await.unwrap();
    let root = client(&nodes[0], &admin_token(&dir.path().join("node1"))).await;
    assert!(!dir.path().join("node2/admin.token").exists(), "only the first member writes one");
    let secret = token(&root, "ci", "rides", Role::Viewer, false).await;
    let mut clients = Vec::new();
    for node in &nodes {
        let c = client(node, &secret).await;
        // A node that has not applied the new token yet says so: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = c.shard_map().await {
            assert!(Instant::now() < deadline, "node never accepted the new token: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clients.push(c);
    }
    root.revoke_token("ci").await.unwrap();
    for (i, c) in clients.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.shard_map().await {
                Err(Error::Server(CoreError::Unauthenticated(text))) => {
                    assert!(text.contains("revoked"), "{text}");
                    break;
                }
                other => assert!(Instant::now() < deadline, "node {} still serves a revoked token: {other:?}", i + 1),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const CLINIC: &str = "
project: clinic
entities:
  - name: patient
    join_keys: [{ name: patient_id, type: int64 }]
feature_sets:
  - name: vitals
    entity: patient
    timestamp: event_timestamp
    features:
      - { name: age, type: int64, tags: [pii] }
      - { name: visits, type: int64 }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_features_are_read_only_with_the_grant_and_never_as_silent_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    root.apply(&definitions(CLINIC)).await.unwrap();
    let row = |id: i64| {
        std::collections::BTreeMap::from([
            ("patient_id".to_string(), quiver_client::Value::Int64(id)),
            ("event_timestamp".to_string(), quiver_client::Value::Timestamp(now_micros() - 1_000_000)),
            ("age".to_string(), quiver_client::Value::Int64(40 + id)),
            ("visits".to_string(), quiver_client::Value::Int64(id)),
        ])
    };
    root.write("clinic", "vitals", (1..=3).map(row).collect()).await.unwrap();
    let plain = client(&node, &token(&root, "analyst", "clinic", Role::Admin, false).await).await;
    let granted = client(&node, &token(&root, "doctor", "clinic", Role::Viewer, true).await).await;

    let read = |refs: &[&str]| OnlineRequest {
        project: "clinic".into(),
        features: FeatureSelection::Refs(refs.iter().map(|r| r.to_string()).collect()),
        entities: vec![std::collections::BTreeMap::from([("patient_id".to_string(), quiver_client::Value::Int64(1))])],
        consistency: quiver_client::Consistency::Linearizable,
    };
    let pii_denied = |result: Result<(), Error>| match result {
        Err(Error::Server(CoreError::PermissionDenied(text))) => {
            assert!(text.contains("vitals:age") && text.contains("analyst"), "names the feature and the token: {text}")
        }
        other => panic!("expected PermissionDenied naming vitals:age: {other:?}"),
    };
    plain.get_online(read(&["vitals:visits"])).await.expect("a feature that is not personal");
    pii_denied(plain.get_online(read(&["vitals:age"])).await.map(drop));
    pii_denied(plain.get_online(read(&["vitals:*"])).await.map(drop));
    let got = granted.get_online(read(&["vitals:age"])).await.unwrap();
    assert_eq!(got.rows[0][0].value, quiver_client::Value::Int64(41));

    let spine = || Spine::Csv(format!("patient_id,event_timestamp\n1,{}\n", now_micros()).into_bytes());
    let history = |refs: &[&str]| {
        HistoricalRequest::new("clinic", FeatureSelection::Refs(refs.iter().map(|r| r.to_string()).collect()), spine())
    };
    pii_denied(plain.historical(history(&["vitals:age", "vitals:visits"])).await.map(drop));
    assert_eq!(granted.historical(history(&["vitals:age"])).await.unwrap().num_rows(), 1);

    let window = StatsWindow::Offline { from: None, to: None };
    pii_denied(plain.statistics("clinic", "vitals", &window).await.map(drop));
    granted.statistics("clinic", "vitals", &window).await.expect("statistics with the grant");
    // Only a token that holds the grant may give it.
    let give = NewToken {
        name: "leak".into(),
        scope: Scope::Project("clinic".into()),
        role: Role::Viewer,
        pii: true,
        ttl: None,
    };
    assert!(denied(&plain.create_token(&give).await.map(drop)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_or_size_is_refused_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.toml");
    std::fs::write(&config, "[limits]\nrequests_per_sec = 1\nburst = 2\nmax_request_bytes = 2000\n").unwrap();
    let node =
        LocalNode::start(&dir.path().join("node"), &["--auth", "--config", config.to_str().unwrap()]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    // The root's own bucket: a burst of two, then one a second.
    let mut results = Vec::new();
    for _ in 0..6 {
        results.push(root.status().await);
    }
    let limited = results.iter().filter(|r| matches!(r, Err(Error::Server(CoreError::RateLimited { .. })))).count();
    assert!(limited >= 1, "six requests at once from a token allowed two and one a second: {results:?}");
    assert!(results[0].is_ok(), "{:?}", results[0]);

    let other_dir = tempfile::tempdir().unwrap();
    let other_config = other_dir.path().join("limits.toml");
    std::fs::write(&other_config, "[limits]\nmax_request_bytes = 2000\n").unwrap();
    let node =
        LocalNode::start(&other_dir.path().join("node"), &["--auth", "--config", other_config.to_str().unwrap()])
            .await
            .unwrap();
    let root = client(&node, &admin_token(&other_dir.path().join("node"))).await;
    root.apply(&definitions(RIDES)).await.unwrap();
    let many: Vec<_> = (0..200).map(|id| driver_row(id, now_micros() - 1_000_000, 0.5, id)).collect();
    match root.write("rides", "driver_stats", many).await {
        Err(Error::Server(CoreError::TooLarge(text))) => assert!(text.contains("2000"), "{text}"),
        other => panic!("a write over max_request_bytes: {other:?}"),
    }
    root.write("rides", "driver_stats", vec![driver_row(1, now_micros() - 1_000_000, 0.5, 1)]).await.unwrap();
}

#[test]
fn a_node_will_not_listen_beyond_loopback_open_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let bin = quiver_tests::binary("quiver-node").unwrap();
    let out = std::process::Command::new(bin)
        .args(["--data-dir", dir.path().to_str().unwrap(), "--listen", "0.0.0.0:0", "--http", "127.0.0.1:0"])
        .env_remove("QUIVER_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("0.0.0.0") && err.contains("--insecure"), "{err}");
    assert!(!dir.path().join("online").exists(), "refused before touching the data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_each_kind_of_event_and_survives_losing_the_metadata_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = LocalNode::start_cluster(dir.path(), 3, &["--auth"], &[], Duration::from_secs(60)).await.unwrap();
    let secret = admin_token(&dir.path().join("node1"));
    let root = client(&nodes[0], &secret).await;
    root.apply(&definitions(CLINIC)).await.unwrap();
    let (v, d) =
        (token(&root, "v", "clinic", Role::Viewer, false).await, token(&root, "d", "clinic", Role::Viewer, true).await);
    for secret in [&v, &d] {
        known_everywhere(&nodes, secret).await;
    }
    let (viewer, doctor) = (client(&nodes[1], &v).await, client(&nodes[2], &d).await);
    let row = std::collections::BTreeMap::from([
        ("patient_id".to_string(), quiver_client::Value::Int64(1)),
        ("event_timestamp".to_string(), quiver_client::Value::Timestamp(now_micros() - 1_000_000)),
        ("age".to_string(), quiver_client::Value::Int64(40)),
    ]);
    assert!(denied(&viewer.write("clinic", "vitals", vec![row.clone()]).await.map(drop)));
    root.write("clinic", "vitals", vec![row]).await.unwrap();
    let read = OnlineRequest {
        project: "clinic".into(),
        features: FeatureSelection::Refs(vec!["vitals:age".into()]),
        entities: vec![std::collections::BTreeMap::from([("patient_id".to_string(), quiver_client::Value::Int64(1))])],
        consistency: quiver_client::Consistency::Linearizable,
    };
    doctor.get_online(read).await.unwrap();
    root.revoke_token("v").await.unwrap();
    assert!(Client::connect(nodes[1].endpoint()).await.unwrap().status().await.is_err());

    // Each kind of event, with who, what, where from and how it ended.
    let expected: [(&str, &str, &str); 6] = [
        ("admin", "Apply", "ok"),
        ("admin", "CreateToken", "token 'd': viewer on project 'clinic', with the PII grant"),
        ("v", "WriteFeatures", "Q3002"),
        ("d", "GetOnlineFeatures", "read personal features vitals:age"),
        ("admin", "RevokeToken", "token 'v': viewer on project 'clinic'"),
        ("unauthenticated", "Status", "Q3001"),
    ];
    let everything = quiver_client::AuditQuery::default();
    let has = |entries: &[quiver_client::AuditEntry], (actor, action, says): (&str, &str, &str)| {
        entries.iter().any(|e| {
            e.actor == actor
                && e.action == action
                && (e.outcome.contains(says) || e.detail.contains(says))
                && !e.from.is_empty()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = root.audit(&everything).await.unwrap();
        if expected.iter().all(|e| has(&entries, *e)) {
            break;
        }
        assert!(Instant::now() < deadline, "missing audit entries in {entries:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kill -9 the metadata leader: every entry is still there, read through a survivor.
    let status = root.status().await.unwrap();
    let meta = status.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader).expect("a meta leader");
    nodes[meta as usize - 1].kill_9().unwrap();
    let survivor = nodes.iter().position(|n| n.pid().is_some()).unwrap();
    let after = client(&nodes[survivor], &secret).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        match after.audit(&everything).await {
            Ok(entries) => break entries,
            Err(e) => assert!(Instant::now() < deadline, "no audit log after the failover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for e in expected {
        assert!(has(&entries, e), "{e:?} lost with the metadata leader: {entries:#?}");
    }
    // A project's admin reads its project's entries only; a viewer none.
    let clinic_admin = client(&nodes[survivor], &token(&after, "ca", "clinic", Role::Admin, false).await).await;
    let own = quiver_client::AuditQuery { project: Some("clinic".into()), ..Default::default() };
    assert!(clinic_admin.audit(&own).await.unwrap().iter().all(|e| e.project.as_deref() == Some("clinic")));
    assert!(denied(&clinic_admin.audit(&everything).await.map(drop)));
    // And from the command line, as JSON.
    let out = quiver_tests::quiverctl(
        &nodes[survivor].endpoint(),
        &["--token", &secret, "audit", "--actor", "d", "--format", "json"],
        None,
    );
    assert!(out.success && out.stdout.contains("read personal features vitals:age"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_holder_of_the_pii_grant_removes_a_pii_tag_or_gives_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    root.apply(&definitions(RIDES)).await.unwrap();
    let untagged = RIDES.replace("{name: city, type: string, tags: [pii]}", "{name: city, type: string}");
    assert_ne!(untagged, RIDES, "the example tags city pii");

    // A project admin without the grant may apply, but not strip the tag.
    let owner = client(&node, &token(&root, "owner", "rides", Role::Admin, false).await).await;
    owner.apply(&definitions(RIDES)).await.expect("re-applying unchanged definitions");
    let stripped = owner.apply(&definitions(&untagged)).await.map(drop);
    assert!(denied(&stripped), "{stripped:?}");
    let text = stripped.unwrap_err().to_string();
    assert!(text.contains("driver_stats:city") && text.contains("token 'owner'"), "{text}");
    let viewer = client(&node, &token(&root, "viewer", "rides", Role::Viewer, false).await).await;
    let read = OnlineRequest {
        project: "rides".into(),
        features: FeatureSelection::Refs(vec!["driver_stats:city".into()]),
        entities: vec![driver_key(1)],
        consistency: quiver_client::Consistency::Linearizable,
    };
    assert!(denied(&viewer.get_online(read.clone()).await.map(drop)), "city is still personal");

    // With the grant it may, and the audit entry says what was personal before and after.
    let granted = client(&node, &token(&root, "steward", "rides", Role::Admin, true).await).await;
    granted.apply(&definitions(&untagged)).await.expect("the grant's holder removes the tag");
    viewer.get_online(read).await.expect("no longer personal");
    let query = quiver_client::AuditQuery { actor: Some("steward".into()), ..Default::default() };
    let entries = root.audit(&query).await.unwrap();
    assert!(
        entries.iter().any(|e| e.action == "Apply"
            && e.detail.contains("personal features before: [driver_stats:city]")
            && e.detail.contains("after: []")),
        "{entries:#?}"
    );

    // A cluster admin without the grant gives it to nobody, not even a new cluster admin.
    let plain_root = NewToken { name: "ops".into(), scope: Scope::Cluster, role: Role::Admin, pii: false, ttl: None };
    let ops = client(&node, &root.create_token(&plain_root).await.unwrap().0).await;
    for (name, scope) in [("pii-root", Scope::Cluster), ("pii-owner", Scope::Project("rides".into()))] {
        let new = NewToken { name: name.into(), scope, role: Role::Admin, pii: true, ttl: None };
        let given = ops.create_token(&new).await.map(drop);
        assert!(denied(&given), "{given:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_a_personal_feature_needs_the_pii_grant() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    root.apply(&definitions(RIDES)).await.unwrap();
    let window = StatsWindow::Offline { from: None, to: None };
    let target = quiver_client::DriftTarget::FeatureSet("driver_stats".into());
    let viewer = client(&node, &token(&root, "viewer", "rides", Role::Viewer, false).await).await;
    let refused = viewer.drift("rides", &target, &window, &window).await.map(drop);
    assert!(denied(&refused) && refused.unwrap_err().to_string().contains("driver_stats:city"));
    let granted = client(&node, &token(&root, "analyst", "rides", Role::Viewer, true).await).await;
    let answered = granted.drift("rides", &target, &window, &window).await.map(drop);
    assert!(!denied(&answered), "the grant's holder is not refused: {answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_on_record_per_token_feature_set_and_minute_and_a_saved_dataset_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&dir.path().join("node"), &["--auth"]).await.unwrap();
    let root = client(&node, &admin_token(&dir.path().join("node"))).await;
    root.apply(&definitions(RIDES)).await.unwrap();
    let writer = client(&node, &token(&root, "pipeline", "rides", Role::Writer, false).await).await;
    for i in 0..30 {
        writer.write("rides", "driver_stats", vec![driver_row(i, now_micros(), 0.5, 1)]).await.unwrap();
    }
    let mut request = HistoricalRequest::new(
        "rides",
        FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
        Spine::Csv(format!("driver_id,event_timestamp\n1,{}\n", now_micros()).into_bytes()),
    );
    request.save_as = Some("train_v1".into());
    root.historical(request).await.unwrap();

    let entries = root.audit(&quiver_client::AuditQuery::default()).await.unwrap();
    let saved: Vec<_> = entries.iter().filter(|e| e.detail.contains("saving dataset train_v1")).collect();
    assert_eq!(saved.len(), 1, "{entries:#?}");
    // The writes' entry comes once their minute has ended: one, with the rows of all 30.
    let query = quiver_client::AuditQuery { actor: Some("pipeline".into()), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let writes: Vec<_> =
            root.audit(&query).await.unwrap().into_iter().filter(|e| e.action == "WriteFeatures").collect();
        let rows: u64 =
            writes.iter().filter_map(|e| e.detail.strip_prefix("wrote ")?.split(' ').next()?.parse::<u64>().ok()).sum();
        assert!(writes.len() <= 2, "one entry per minute, not per row: {writes:#?}");
        if rows == 30 {
            assert!(writes.iter().all(|e| e.detail.contains("driver_stats") && e.project.as_deref() == Some("rides")));
            break;
        }
        assert!(Instant::now() < deadline, "the writes never went on record: {writes:#?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
