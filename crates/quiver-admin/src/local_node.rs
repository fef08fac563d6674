//! A `quiver-node` child process on loopback ports, for the demo, end-to-end tests and
//! benchmarks. Faults are real: `kill_9` sends SIGKILL, `pause` SIGSTOP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quiver_client::Client;

/// Lines of each node's log a failing test prints.
const LOG_TAIL_ON_FAILURE: usize = 80;

pub struct LocalNode {
    child: Option<Child>,
    /// A command the node runs under (`ip netns exec NS`), if any.
    prefix: Vec<String>,
    bin: PathBuf,
    data_dir: PathBuf,
    listen: String,
    http: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

/// Does the node whose HTTP port is `addr` answer `GET /health` with 200? Over TLS when
/// given the cluster's CA (PEM).
pub async fn healthy(addr: &str, ca: Option<&[u8]>) -> bool {
    health(addr, ca).await.is_some_and(|(ok, _)| ok)
}

/// `/health` of the node at `addr`: whether it answered 200, and its body (what it waits for).
pub async fn health(addr: &str, ca: Option<&[u8]>) -> Option<(bool, String)> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(2));
    if let Some(ca) = ca {
        match reqwest::Certificate::from_pem(ca) {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(_) => return None,
        }
    }
    let scheme = if ca.is_some() { "https" } else { "http" };
    let client = builder.build().ok()?;
    let answer = client.get(format!("{scheme}://{addr}/health")).send().await.ok()?;
    let ok = answer.status().is_success();
    Some((ok, answer.text().await.unwrap_or_default()))
}

/// A Quiver binary (`quiver-node`, `quiverctl`): from `$QUIVER_BIN_DIR`, else beside the
/// running executable (or one level up, for test binaries in `target/*/deps`).
pub fn binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("QUIVER_BIN_DIR") {
        return Ok(PathBuf::from(dir).join(name));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("{name} not found beside {}; build it (cargo build --workspace --bins) or set QUIVER_BIN_DIR", exe.display())
}

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> Result<String> {
    Ok(free_addrs(1)?.remove(0))
}

/// Ports handed to test nodes: below Linux's ephemeral range (32768 up), so no outgoing
/// connection takes one between being found free and the node binding it.
const NODE_PORTS: std::ops::Range<u16> = 12_000..32_000;

/// `count` different loopback addresses nobody listens on right now. All are held until the
/// last is found: one released before the next is asked for could be handed out again, and
/// two nodes told the same port make one of them exit at start.
pub fn free_addrs(count: usize) -> Result<Vec<String>> {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    let mut held: Vec<TcpListener> = Vec::with_capacity(count);
    for attempt in 0u64.. {
        if held.len() == count {
            break;
        }
        anyhow::ensure!(attempt < 10_000, "no free port among {NODE_PORTS:?}");
        let span = u64::from(NODE_PORTS.end - NODE_PORTS.start);
        let port = NODE_PORTS.start + (random.hash_one(attempt) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter().map(|l| Ok(l.local_addr()?.to_string())).collect()
}

impl LocalNode {
    /// Starts a node on `data_dir` with fresh ports and waits until it serves.
    /// `extra` are more `quiver-node` flags.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Result<LocalNode> {
        LocalNode::start_with_env(data_dir, extra, &[]).await
    }

    /// Like `start`, with extra environment variables for the node process.
    pub async fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(String, String)]) -> Result<LocalNode> {
        let [listen, http] = <[String; 2]>::try_from(free_addrs(2)?)
            .map_err(|got| anyhow::anyhow!("asked for 2 free addresses, got {got:?}"))?;
        let mut node = LocalNode {
            child: None,
            prefix: Vec::new(),
            bin: binary("quiver-node")?,
            data_dir: data_dir.to_path_buf(),
            listen,
            http,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            log: data_dir.with_extension("log"),
        };
        node.spawn()?;
        node.wait_ready(Duration::from_secs(30)).await?;
        Ok(node)
    }

    /// Starts `count` nodes under `dir` (`node1`, `node2`…) that form one cluster from the
    /// same `--initial-cluster` list and cluster secret (`cluster_secret`), sharing one offline
    /// store (`offline_store`, unless `extra` names another), and waits until every one is
    /// ready.
    pub async fn start_cluster(
        dir: &Path,
        count: usize,
        extra: &[&str],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<LocalNode>> {
        LocalNode::start_cluster_of(&binary("quiver-node")?, dir, count, extra, env, timeout).await
    }

    /// `start_cluster` with another build of `quiver-node` (`bin`), such as an earlier
    /// release's.
    pub async fn start_cluster_of(
        bin: &Path,
        dir: &Path,
        count: usize,
        extra: &[&str],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<LocalNode>> {
        let mut addrs = free_addrs(2 * count)?;
        let http = addrs.split_off(count);
        let listen = addrs;
        let initial = listen.join(",");
        let secret = LocalNode::cluster_secret(dir);
        let secret = secret.to_str().context("a temporary path that is not UTF-8")?;
        let mut args = vec!["--initial-cluster", initial.as_str(), "--cluster-secret", secret];
        let store = LocalNode::offline_store(dir);
        let store = store.to_str().context("a temporary path that is not UTF-8")?;
        if !extra.contains(&"--offline-store") {
            args.extend(["--offline-store", store]);
        }
        args.extend_from_slice(extra);
        let mut nodes = Vec::with_capacity(count);
        for (i, (addr, http)) in listen.iter().zip(&http).enumerate() {
            let data_dir = dir.join(format!("node{}", i + 1));
            nodes.push(LocalNode::launch(bin.to_path_buf(), &[], &data_dir, addr, http, &args, env)?);
        }
        for node in &mut nodes {
            node.wait_ready(timeout).await?;
        }
        Ok(nodes)
    }

    /// The cluster secret of the nodes `start_cluster` starts under `dir`, made by the first
    /// of them to start: give it to a node that joins them.
    pub fn cluster_secret(dir: &Path) -> PathBuf {
        dir.join("cluster.secret")
    }

    /// The offline store the nodes `start_cluster` starts under `dir` share.
    pub fn offline_store(dir: &Path) -> PathBuf {
        dir.join("offline")
    }

    /// The flags of a node joining, through the member at `endpoint`, the cluster
    /// `start_cluster` started under `dir`: its secret and offline store.
    pub fn join_args(dir: &Path, endpoint: &str) -> Vec<String> {
        let join = endpoint.trim_start_matches("http://").trim_start_matches("https://").to_string();
        let secret = LocalNode::cluster_secret(dir).display().to_string();
        let store = LocalNode::offline_store(dir).display().to_string();
        ["--join".to_string(), join, "--cluster-secret".into(), secret, "--offline-store".into(), store].into()
    }

    /// Starts a node on fixed addresses without waiting for it: members of a new cluster
    /// only become ready together (see `wait_ready`).
    pub fn spawn_at(
        data_dir: &Path,
        listen: &str,
        http: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<LocalNode> {
        LocalNode::spawn_under(&[], data_dir, listen, http, extra, env)
    }

    /// `spawn_at`, the node running under the command `prefix` (e.g. `ip netns exec NS`, to
    /// put it in a network namespace of its own).
    pub fn spawn_under(
        prefix: &[&str],
        data_dir: &Path,
        listen: &str,
        http: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<LocalNode> {
        LocalNode::launch(binary("quiver-node")?, prefix, data_dir, listen, http, extra, env)
    }

    fn launch(
        bin: PathBuf,
        prefix: &[&str],
        data_dir: &Path,
        listen: &str,
        http: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<LocalNode> {
        let mut node = LocalNode {
            child: None,
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            bin,
            data_dir: data_dir.to_path_buf(),
            listen: listen.to_string(),
            http: http.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            log: data_dir.with_extension("log"),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &self.listen, "--http", &self.http])
            .args(&self.extra)
            .env_remove("QUIVER_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn http_addr(&self) -> &str {
        &self.http
    }

    /// The process id while the node runs (for reading its memory use, or signalling it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.endpoint()).await?)
    }

    /// Waits until the node answers and every group it hosts has a leader.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                // The log's end says why; the file may be gone with a test's temp dir.
                bail!("quiver-node exited with {status}; the end of {}:\n{}", self.log.display(), self.log_tail(5));
            }
            if self.healthy().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let said = self.health().await.map_or_else(|| "no answer".to_string(), |(_, body)| body);
                bail!("quiver-node not ready after {timeout:?} (/health: {said}); see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the `quiver-node` binary for the next (re)start: another build on the same data.
    pub fn set_binary(&mut self, bin: PathBuf) {
        self.bin = bin;
    }

    /// Replaces the extra environment for the next (re)start.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Waits for the process to end by itself (a crash point, a fatal error).
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("quiver-node still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /health` answers 200: every group assigned to the node has a leader. Over TLS,
    /// trusting the `--tls-ca` the node was started with, when it was.
    async fn healthy(&self) -> bool {
        self.health().await.is_some_and(|(ok, _)| ok)
    }

    /// This node's `/health`: whether it is ready, and what it says.
    async fn health(&self) -> Option<(bool, String)> {
        let ca = self.extra.iter().position(|a| a == "--tls-ca").and_then(|i| self.extra.get(i + 1));
        let ca = ca.map(std::fs::read).transpose().ok()?;
        health(&self.http, ca.as_deref()).await
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) to the node process.
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.pid().context("the node is not running")?;
        let status = Command::new("kill").args([format!("-{name}"), pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -{name} {pid} failed");
        }
        Ok(())
    }

    /// True once the process has ended (killed, crashed) or when none was started.
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for a graceful exit; says whether the node exited cleanly.
    pub fn terminate(&mut self) -> Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(true) };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !sent.is_ok_and(|s| s.success()) {
            child.kill()?;
        }
        Ok(child.wait()?.success())
    }

    /// The last `lines` lines of the node's log (empty when it is gone; above a backtrace, if
    /// it ended with one).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        // An error's backtrace (RUST_BACKTRACE) would fill the tail; the error is above it.
        let end = log.find("\nStack backtrace:").or_else(|| log.find("\nstack backtrace:")).unwrap_or(log.len());
        let tail: Vec<&str> = log[..end].lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Starts the node again on the same data directory and ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.respawn()?;
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// Kills the node if it runs and starts it again without waiting for it, for a restart
    /// that is expected to die at a crash point before it is ready.
    pub fn respawn(&mut self) -> Result<()> {
        self.kill_9()?;
        self.spawn()
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test's temp dir goes with it: its output keeps what each node last said.
        if std::thread::panicking() {
            eprintln!("--- the end of {} ---\n{}", self.log.display(), self.log_tail(LOG_TAIL_ON_FAILURE));
        }
    }
}
