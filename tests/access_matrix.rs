//! Every read path against every kind of token, generated rather than written case by case:
//! the four roles (viewer, writer, a project's admin, a cluster admin), each with and without
//! the PII grant, against online reads (plain and personal features, a vector), a training set
//! and a saved one, statistics, drift, exports (the offline files), the dataset listing,
//! backups, the cluster's status, the dashboard and the JSON API (`POST /v1/features`). The
//! expected answer comes from a model of the rules (the role a path needs, and whether it
//! returns personal values), so a path that lets the wrong token through, or refuses the
//! right one, fails here.

use std::path::Path;
use std::time::Duration;

use quiver_client::{
    Client, DriftTarget, Error, FeatureSelection, HistoricalRequest, NewToken, OnlineRequest, Role, Scope, Spine,
    StatsWindow,
};
use quiver_core::Error as CoreError;
use quiver_tests::{LocalNode, RIDES, admin_token, driver_key, now_micros};

/// What a token is: its rank (viewer < writer < admin < cluster admin) and the PII grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Viewer,
    Writer,
    Admin,
    ClusterAdmin,
}

#[derive(Debug, Clone, Copy)]
enum ReadPath {
    OnlinePlain,
    OnlinePersonal,
    Vector,
    TrainingSet,
    SavedTrainingSet,
    Statistics,
    Drift,
    Files,
    Datasets,
    Backup,
    Status,
    DashboardFeatureSet,
    DashboardCluster,
    HttpPlain,
    HttpPersonal,
}

const PATHS: [ReadPath; 15] = [
    ReadPath::OnlinePlain,
    ReadPath::OnlinePersonal,
    ReadPath::Vector,
    ReadPath::TrainingSet,
    ReadPath::SavedTrainingSet,
    ReadPath::Statistics,
    ReadPath::Drift,
    ReadPath::Files,
    ReadPath::Datasets,
    ReadPath::Backup,
    ReadPath::Status,
    ReadPath::DashboardFeatureSet,
    ReadPath::DashboardCluster,
    ReadPath::HttpPlain,
    ReadPath::HttpPersonal,
];

/// The model: the rank a path needs, and whether it returns personal values (then the PII
/// grant is needed too).
fn needs(path: ReadPath) -> (Rank, bool) {
    match path {
        ReadPath::OnlinePlain | ReadPath::Vector | ReadPath::Files | ReadPath::Datasets | ReadPath::HttpPlain => {
            (Rank::Viewer, false)
        }
        ReadPath::OnlinePersonal
        | ReadPath::TrainingSet
        | ReadPath::Statistics
        | ReadPath::Drift
        | ReadPath::HttpPersonal => (Rank::Viewer, true),
        ReadPath::DashboardFeatureSet => (Rank::Viewer, true),
        ReadPath::SavedTrainingSet => (Rank::Admin, true),
        ReadPath::Backup | ReadPath::Status | ReadPath::DashboardCluster => (Rank::ClusterAdmin, false),
    }
}

fn refs(refs: &[&str]) -> FeatureSelection {
    FeatureSelection::Refs(refs.iter().map(|r| r.to_string()).collect())
}

fn online(features: FeatureSelection) -> OnlineRequest {
    OnlineRequest {
        project: "rides".into(),
        features,
        entities: vec![driver_key(1001)],
        consistency: quiver_client::Consistency::Linearizable,
    }
}

/// `GET path` on the HTTP port with a bearer token: the status line and the body.
fn http_get(addr: &str, path: &str, token: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the node's HTTP port answers");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// Runs `path` as the token `secret` (`client` carries it): `Ok(true)` answered in full,
/// `Ok(false)` refused for want of a role or the grant; any other failure panics.
async fn run(path: ReadPath, client: &Client, secret: &str, http: &str, n: usize, backups: &Path) -> bool {
    let spine = || Spine::Csv(format!("driver_id,event_timestamp\n1001,{}\n", now_micros()).into_bytes());
    let all = StatsWindow::Offline { from: None, to: None };
    let result: Result<(), Error> = match path {
        ReadPath::OnlinePlain => client.get_online(online(refs(&["driver_stats:conv_rate"]))).await.map(drop),
        ReadPath::OnlinePersonal => client.get_online(online(refs(&["driver_stats:city"]))).await.map(drop),
        ReadPath::Vector => {
            client.get_online(online(FeatureSelection::Vector("driver_model_v1".into()))).await.map(drop)
        }
        ReadPath::TrainingSet => {
            client.historical(HistoricalRequest::new("rides", refs(&["driver_stats:*"]), spine())).await.map(drop)
        }
        ReadPath::SavedTrainingSet => {
            let mut request = HistoricalRequest::new("rides", refs(&["driver_stats:*"]), spine());
            request.save_as = Some(format!("train_{n}"));
            client.historical(request).await.map(drop)
        }
        ReadPath::Statistics => client.statistics("rides", "driver_stats", &all).await.map(drop),
        ReadPath::Drift => {
            let target = DriftTarget::FeatureSet("driver_stats".into());
            client.drift("rides", &target, &all, &all).await.map(drop)
        }
        ReadPath::Files => client.files("rides", "driver_stats").await.map(drop),
        ReadPath::Datasets => client.datasets("rides").await.map(drop),
        ReadPath::Backup => {
            let to = backups.join(format!("b{n}")).display().to_string();
            client.create_backup(&to, &Default::default(), |_| {}).await.map(drop)
        }
        ReadPath::Status => client.status().await.map(drop),
        ReadPath::DashboardFeatureSet => {
            let (status, body) = http_get(http, "/ui/feature-sets/rides/driver_stats", secret);
            assert!(status.contains("200"), "{status}");
            // A token without the grant sees the page, with the personal features left out.
            return !body.contains("not shown: driver_stats:city");
        }
        ReadPath::DashboardCluster => {
            let (status, _) = http_get(http, "/ui/cluster", secret);
            assert!(status.contains("200") || status.contains("403"), "{status}");
            return status.contains("200");
        }
        ReadPath::HttpPlain | ReadPath::HttpPersonal => {
            let feature = if matches!(path, ReadPath::HttpPlain) { "conv_rate" } else { "city" };
            let body = format!(
                r#"{{"project": "rides", "features": ["driver_stats:{feature}"], "entities": [{{"driver_id": 1001}}]}}"#
            );
            let auth = format!("authorization: Bearer {secret}");
            let (status, answer) = quiver_tests::http_post(http, "/v1/features", &[&auth], &body);
            assert!(status == 200 || status == 403, "{status} {answer}");
            return status == 200;
        }
    };
    match result {
        Ok(()) => true,
        Err(Error::Server(CoreError::PermissionDenied(_))) => false,
        Err(other) => panic!("{path:?}: neither answered nor refused for want of a role: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_path_answers_exactly_the_tokens_the_rules_allow() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let data = dir.path().join("node");
    let args = ["--auth", "--ingest-allow", examples.to_str().unwrap()];
    let node = LocalNode::start(&data, &args).await.unwrap();
    let root = Client::builder(node.endpoint()).token(admin_token(&data)).connect().await.unwrap();
    root.apply(&quiver_client::Definitions::from_yaml(RIDES).unwrap()).await.unwrap();
    let example = examples.join("driver_stats.parquet");
    root.ingest("rides", "driver_stats", example.to_str().unwrap(), |_| {}).await.unwrap();
    // Statistics are summarized in the background: wait until the set has some.
    let all = StatsWindow::Offline { from: None, to: None };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while root.statistics("rides", "driver_stats", &all).await.map_or(0, |s| s.rows) == 0 {
        assert!(std::time::Instant::now() < deadline, "no statistics of the ingested file");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let backups = dir.path().join("backups");

    let ranks = [Rank::Viewer, Rank::Writer, Rank::Admin, Rank::ClusterAdmin];
    let kinds = ranks.into_iter().flat_map(|rank| [(rank, false), (rank, true)]);
    let mut n = 0;
    let mut checked = 0;
    for (rank, pii) in kinds {
        let (scope, role) = match rank {
            Rank::Viewer => (Scope::Project("rides".into()), Role::Viewer),
            Rank::Writer => (Scope::Project("rides".into()), Role::Writer),
            Rank::Admin => (Scope::Project("rides".into()), Role::Admin),
            Rank::ClusterAdmin => (Scope::Cluster, Role::Admin),
        };
        let name = format!("{rank:?}-{pii}").to_lowercase();
        let (secret, _) = root.create_token(&NewToken { name, scope, role, pii, ttl: None }).await.unwrap();
        let client = Client::builder(node.endpoint()).token(&secret).connect().await.unwrap();
        for path in PATHS {
            n += 1;
            let (rank_needed, personal) = needs(path);
            let expected = rank >= rank_needed && (!personal || pii);
            let answered = run(path, &client, &secret, node.http_addr(), n, &backups).await;
            assert_eq!(answered, expected, "{path:?} as a {rank:?} token with pii={pii}");
            checked += 1;
        }
    }
    assert_eq!(checked, PATHS.len() * 8, "every path against every kind of token");
}
