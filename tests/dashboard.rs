//! The dashboard in a real headless browser (Debian's `chromium`, which `.ci/run` installs):
//! every page loads, shows the expected names and draws its charts; a screenshot of each
//! is saved under `target/dashboard/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quiver_client::StatsWindow;
use quiver_tests::node_with_rides;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| Command::new(b).arg("--version").output().is_ok())
}

/// Runs headless chromium on `url` with `args`; returns its standard output.
fn browse(browser: &str, url: &str, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1800"])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_renders_in_a_real_browser() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "chromium is missing; .ci/run installs it");
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = node_with_rides(dir.path(), &[]).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/driver_stats.parquet");
    client.ingest("rides", "driver_stats", example.to_str().unwrap(), |_| {}).await.unwrap();
    let spine = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/driver_spine.csv")).unwrap();
    let mut request = quiver_client::HistoricalRequest::new(
        "rides",
        quiver_client::FeatureSelection::Vector("driver_model_v1".into()),
        quiver_client::Spine::Csv(spine),
    );
    request.save_as = Some("training_2026_11".into());
    client.historical(request).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = StatsWindow::Offline { from: None, to: None };
    while client.statistics("rides", "driver_stats", &all).await.unwrap().rows == 0 {
        assert!(Instant::now() < deadline, "statistics never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A monitor comparing the last ten years of offline rows with the training set.
    let mut defs = quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap();
    let stats = defs.feature_sets.iter_mut().find(|f| f.name == "driver_stats").unwrap();
    stats.monitoring = Some(quiver_core::spec::MonitoringSpec {
        reference: Some("dataset:training_2026_11".into()),
        window: Some("3650d".into()),
        ..Default::default()
    });
    client.apply(&defs).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while !quiver_tests::http_get(node.http_addr(), "/ui").1.contains("<td>driver_stats</td><td>20") {
        assert!(Instant::now() < deadline, "the monitor never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catalog = quiver_tests::http_get(node.http_addr(), "/ui").1;
    assert!(!catalog.contains("driver_stats:conv_rate (invalid"), "the monitor compared real statistics:\n{catalog}");
    let base = format!("http://{}", node.http_addr());
    let pages = [
        (
            "catalog",
            "/ui",
            vec!["driver_stats", "driver_model_v1", "training_2026_11", "driver_id (int64)", "Recent monitor results"],
        ),
        (
            "feature-set",
            "/ui/feature-sets/rides/driver_stats",
            vec!["conv_rate", "avg_daily_trips", "class=\"histogram\"", "class=\"drift\"", "Drift over time"],
        ),
        ("cluster", "/ui/cluster", vec!["Nodes", "meta", "shard", "voter"]),
    ];
    for (name, path, expected) in pages {
        let url = format!("{base}{path}");
        let dom = browse(browser, &url, &["--dump-dom"]);
        for text in expected {
            assert!(dom.contains(text), "{path} lacks {text}:\n{dom}");
        }
        let shot = screenshots().join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        browse(browser, &url, &[&format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} is not a real screenshot", shot.display());
    }
    // A page for a feature set that does not exist says so.
    let missing = browse(browser, &format!("{base}/ui/feature-sets/rides/nope"), &["--dump-dom"]);
    assert!(missing.contains("unknown feature set"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_the_dashboard_signs_in_and_shows_personal_values_only_with_the_grant() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "chromium is missing; .ci/run installs it");
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let allow = examples.to_str().unwrap();
    let node =
        quiver_tests::LocalNode::start(&dir.path().join("node"), &["--auth", "--ingest-allow", allow]).await.unwrap();
    let admin = std::fs::read_to_string(dir.path().join("node/admin.token")).unwrap();
    let root = quiver_client::Client::builder(node.endpoint()).token(admin.trim()).connect().await.unwrap();
    root.apply(&quiver_client::Definitions::from_yaml(quiver_tests::RIDES).unwrap()).await.unwrap();
    let example = examples.join("driver_stats.parquet");
    root.ingest("rides", "driver_stats", example.to_str().unwrap(), |_| {}).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = StatsWindow::Offline { from: None, to: None };
    while root.statistics("rides", "driver_stats", &all).await.unwrap().rows == 0 {
        assert!(Instant::now() < deadline, "statistics never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = |name: &str, pii: bool| {
        let new = quiver_client::NewToken {
            name: name.into(),
            scope: quiver_client::Scope::Project("rides".into()),
            role: quiver_client::Role::Viewer,
            pii,
            ttl: None,
        };
        let root = root.clone();
        async move { root.create_token(&new).await.unwrap().0 }
    };
    let (plain, granted) = (token("analyst", false).await, token("dispatcher", true).await);
    let base = format!("http://{}", node.http_addr());
    let page = "/ui/feature-sets/rides/driver_stats";

    // Without a token: the sign-in form, and nothing of the page; /metrics is refused too.
    let anonymous = browse(browser, &format!("{base}{page}"), &["--dump-dom"]);
    assert!(anonymous.contains("Sign in") && !anonymous.contains("conv_rate"), "{anonymous}");
    assert!(quiver_tests::http_get(node.http_addr(), "/metrics").0.contains("401"));
    assert!(quiver_tests::http_get(node.http_addr(), "/health").0.contains("200"), "health stays open");
    // A sign-in link (the token in the fragment) lands on the page asked for.
    let signed_in = |token: &str| {
        let url = format!("{base}/ui/login?next={page}#token={token}");
        browse(browser, &url, &["--dump-dom", "--virtual-time-budget=10000"])
    };
    let without = signed_in(&plain);
    assert!(without.contains("conv_rate") && without.contains("class=\"histogram\""), "{without}");
    assert!(without.contains("not shown: driver_stats:city"), "the page names what it leaves out: {without}");
    let with = signed_in(&granted);
    assert!(with.contains("conv_rate") && !with.contains("not shown"), "{with}");
    let cities = ["Lisbon", "Porto", "Braga", "Faro"];
    assert!(cities.iter().any(|c| with.contains(c)), "the grant shows the city values: {with}");
    assert!(!cities.iter().any(|c| without.contains(c)), "no city value without the grant: {without}");
    // Reading personal values on the dashboard is on record; so is a page refused.
    let query = quiver_client::AuditQuery { actor: Some("dispatcher".into()), ..Default::default() };
    let read = root.audit(&query).await.unwrap();
    assert!(
        read.iter()
            .any(|e| e.action == "dashboard" && e.detail.contains("driver_stats:city") && e.from.contains("127.0.0.1")),
        "{read:#?}"
    );
    let shot = screenshots().join("feature-set-without-pii-grant.png");
    let url = format!("{base}/ui/login?next={page}#token={plain}");
    browse(browser, &url, &[&format!("--screenshot={}", shot.display()), "--virtual-time-budget=10000"]);
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
}
