//! A real S3-compatible server for tests: `s3s-fs` (SigV4-checked, data on disk) on a
//! free loopback port, stopped when dropped. `.ci/run` installs it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quiver_offline::store::S3Settings;

pub const ACCESS_KEY: &str = "quiver-test";
pub const SECRET_KEY: &str = "quiver-test-secret";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server with the named buckets created.
    pub fn start(buckets: &[&str]) -> Result<S3Server> {
        let dir = tempfile::tempdir()?;
        for bucket in buckets {
            std::fs::create_dir(dir.path().join(bucket))?;
        }
        let addr = quiver_admin::local_node::free_addr()?;
        let (host, port) = addr.rsplit_once(':').context("address has a port")?;
        let child = Command::new("s3s-fs")
            .args(["--host", host, "--port", port, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting s3s-fs (install it with: cargo install s3s-fs --version 0.14.1 --locked --features binary)",
            )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                bail!("s3s-fs did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(S3Server { child, endpoint: format!("http://{addr}"), _dir: dir })
    }

    /// The environment a node needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
