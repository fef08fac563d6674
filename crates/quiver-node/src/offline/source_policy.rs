//! Which paths an ingest may read. The node reads an ingest's source itself, with its own
//! rights, so with authentication on a caller may name only what the operator listed
//! (`[ingest] allow`: local directories and `s3://` prefixes; none by default), and never the
//! node's own data: its data dir, a local offline store, its spill dir or a local backup
//! location (scheduled, or of a backup the cluster recorded), listed or not. A refused path gets one message whether it exists or not, so the
//! refusal tells nothing of the node's disk. With authentication off (the embedded default,
//! on loopback) every path the node can read is allowed, as the operator is the only caller.

use std::path::{Path, PathBuf};

use quiver_core::Error as CoreError;

use quiver_store::config::Config;
use quiver_store::error::Result;

pub struct SourcePolicy {
    /// Authentication is on: only listed places.
    enforced: bool,
    /// Listed local directories, resolved (symbolic links, `..`).
    local: Vec<PathBuf>,
    /// Listed `s3://bucket/prefix` places.
    s3: Vec<String>,
    /// The node's own places, never read by an ingest.
    own: Vec<PathBuf>,
    own_s3: Option<String>,
}

impl SourcePolicy {
    /// The policy of a node with `config`, whose backups went to `backups` too.
    pub fn new(config: &Config, backups: impl IntoIterator<Item = String>) -> SourcePolicy {
        let (s3, local): (Vec<&String>, Vec<&String>) =
            config.ingest.allow.iter().partition(|a| a.starts_with("s3://"));
        let offline = config.offline_location();
        let mut own = vec![config.data_dir.clone(), config.spill_dir()];
        let places = [offline.clone(), config.backup.to.clone()].into_iter().chain(backups);
        own.extend(places.filter(|l| is_local(l)).map(PathBuf::from));
        SourcePolicy {
            enforced: config.auth.enabled,
            local: local.into_iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect(),
            s3: s3.into_iter().map(|p| p.trim_end_matches('/').to_string()).collect(),
            own: own
                .iter()
                .flat_map(|p| [std::path::absolute(p).ok(), std::fs::canonicalize(p).ok()])
                .flatten()
                .collect(),
            own_s3: offline.starts_with("s3://").then(|| offline.trim_end_matches('/').to_string()),
        }
    }

    fn refused(path: &str) -> quiver_store::error::Error {
        CoreError::PermissionDenied(format!(
            "ingest path '{path}' is not in a place this node reads sources from: its operator lists them in \
             [ingest] allow (--ingest-allow); the node's own data is never one"
        ))
        .into()
    }

    /// `path` (a local file or directory) resolved, when an ingest may read it.
    pub fn local(&self, path: &str) -> Result<PathBuf> {
        if !self.enforced {
            return Ok(PathBuf::from(path));
        }
        // A path that does not exist is refused like one that may not be read.
        let resolved = std::fs::canonicalize(path).map_err(|_| SourcePolicy::refused(path))?;
        let under = |dirs: &[PathBuf]| dirs.iter().any(|d| resolved.starts_with(d));
        if under(&self.own) || !under(&self.local) {
            return Err(SourcePolicy::refused(path));
        }
        Ok(resolved)
    }

    /// Refuses a file found in an allowed directory that leads elsewhere (a link).
    pub fn file(&self, file: &Path) -> Result<()> {
        match file.to_str() {
            Some(path) if self.enforced => self.local(path).map(drop),
            Some(_) => Ok(()),
            None => Err(SourcePolicy::refused(&file.display().to_string())),
        }
    }

    /// Refuses an `s3://` URL outside the listed prefixes, or in the offline store.
    pub fn s3(&self, url: &str) -> Result<()> {
        if !self.enforced {
            return Ok(());
        }
        let within = |prefix: &str| url == prefix || url.starts_with(&format!("{prefix}/"));
        if self.own_s3.as_deref().is_some_and(within) || !self.s3.iter().any(|p| within(p)) || url.contains("/../") {
            return Err(SourcePolicy::refused(url));
        }
        Ok(())
    }
}

fn is_local(location: &str) -> bool {
    !location.is_empty() && !location.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, allow: &[String]) -> SourcePolicy {
        let mut config = Config { data_dir: dir.join("data"), ..Config::default() };
        config.auth.enabled = true;
        config.ingest.allow = allow.to_vec();
        std::fs::create_dir_all(config.data_dir.join("offline")).unwrap();
        SourcePolicy::new(&config, [dir.join("landing/backups").display().to_string()])
    }

    #[test]
    fn with_auth_only_listed_places_and_never_the_nodes_own() {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        std::fs::create_dir_all(landing.join("backups")).unwrap();
        std::fs::write(landing.join("a.csv"), "x").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "x").unwrap();
        let allow = vec![landing.display().to_string(), dir.path().join("data").display().to_string()];
        let p = policy(dir.path(), &[allow, vec!["s3://raw/events".into()]].concat());
        assert!(p.local(&landing.join("a.csv").display().to_string()).is_ok());
        let message = |path: &Path| p.local(&path.display().to_string()).unwrap_err().to_string();
        let outside = message(&dir.path().join("secret.csv"));
        assert_eq!(
            outside.replace("secret.csv", "X"),
            message(&dir.path().join("missing.csv")).replace("missing.csv", "X"),
            "the same refusal whether the file exists or not"
        );
        assert!(message(&landing.join("../secret.csv")).contains("[ingest] allow"), "no way out by '..'");
        assert!(
            p.local(&dir.path().join("data/offline").display().to_string()).is_err(),
            "the data dir, listed or not"
        );
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), landing.join("link.csv")).unwrap();
        assert!(p.file(&landing.join("link.csv")).is_err(), "a link out of a listed directory");
        assert!(p.s3("s3://raw/events/2026/a.parquet").is_ok());
        for url in ["s3://raw/eventsX/a.parquet", "s3://raw/other.csv", "s3://raw/events/../x/a.csv"] {
            assert!(p.s3(url).is_err(), "{url}");
        }
    }

    #[test]
    fn without_auth_every_path_is_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let p = SourcePolicy::new(&config, []);
        assert!(p.local("/anything").is_ok() && p.s3("s3://any/thing").is_ok());
    }
}
