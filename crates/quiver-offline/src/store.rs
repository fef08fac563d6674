//! Where offline files live, chosen by location: a local directory (the default), any
//! S3-compatible service (`s3://bucket/prefix`), or memory (`memory://`, for tests).
//! Everything above this module sees paths relative to the location.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// S3 settings; unset ones fall back to the usual `AWS_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:9000` for a local S3-compatible server.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// A location as any process on this machine opens it: a directory made absolute, a URL as
/// it is.
pub fn absolute_location(location: &str) -> String {
    match location.contains("://") {
        true => location.to_string(),
        false => std::path::absolute(location).map_or_else(|_| location.to_string(), |p| p.display().to_string()),
    }
}

#[derive(Clone)]
pub struct OfflineStore {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory.
    local: Option<Arc<LocalFileSystem>>,
    prefix: Path,
    location: String,
}

impl std::fmt::Debug for OfflineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

fn bad_location(location: &str, reason: impl ToString) -> Error {
    Error::Location { location: location.to_string(), reason: reason.to_string() }
}

impl OfflineStore {
    /// Opens `location`: `s3://bucket[/prefix]`, `memory://`, `file:///dir` or a directory path.
    pub fn open(location: &str, s3: &S3Settings) -> Result<OfflineStore> {
        let mut local = None;
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad_location(location, "no bucket named"));
            }
            let mut builder =
                AmazonS3Builder::from_env().with_bucket_name(bucket).with_virtual_hosted_style_request(false);
            if let Some(endpoint) = s3.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()) {
                builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            (Arc::new(builder.build().map_err(|e| bad_location(location, e))?), prefix)
        } else if location == "memory://" {
            (Arc::new(InMemory::new()), "")
        } else {
            let dir = location.strip_prefix("file://").unwrap_or(location);
            std::fs::create_dir_all(dir).map_err(|e| bad_location(location, e))?;
            let fs = Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| bad_location(location, e))?);
            local = Some(fs.clone());
            (fs, "")
        };
        let prefix = Path::parse(prefix.trim_matches('/')).map_err(|e| bad_location(location, e))?;
        Ok(OfflineStore { store, local, prefix, location: location.to_string() })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The full object path of `relative` (slash-separated).
    pub fn path(&self, relative: &str) -> Path {
        relative.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }

    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        self.store.put(&self.path(relative), PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, relative: &str) -> Result<Bytes> {
        Ok(self.store.get(&self.path(relative)).await?.bytes().await?)
    }

    /// Whether the object `relative` is there.
    pub async fn exists(&self, relative: &str) -> Result<bool> {
        match self.store.head(&self.path(relative)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the object `relative` is on this machine's file system, when the store is a
    /// local directory: a reader that decodes on a thread of its own reads it there
    /// (`read_local`), so that the bytes are allocated and freed on one thread.
    pub fn local_file(&self, relative: &str) -> Option<PathBuf> {
        self.local.as_ref()?.path_to_filesystem(&self.path(relative)).ok()
    }

    /// Deletes an object; one that is already gone is not an error.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Relative paths and sizes of the objects under `relative`.
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, u64)>> {
        let base = self.path(relative);
        let strip = self.prefix.as_ref().len();
        let objects: Vec<_> = self.store.list(Some(&base)).try_collect().await?;
        Ok(objects
            .into_iter()
            .map(|m| (m.location.as_ref()[strip..].trim_start_matches('/').to_string(), m.size))
            .collect())
    }
}

/// A file of a local store (`OfflineStore::local_file`), read whole on the calling thread.
pub fn read_local(path: &std::path::Path) -> Result<Bytes> {
    std::fs::read(path).map(Bytes::from).map_err(|e| local_error(path, e))
}

/// A file of a local store, opened to be read by ranges on the calling thread.
pub fn open_local(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| local_error(path, e))
}

/// An error reading a local file, as the object store gives it.
fn local_error(path: &std::path::Path, e: std::io::Error) -> Error {
    let path = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => object_store::Error::NotFound { path, source: Box::new(e) },
        _ => object_store::Error::Generic { store: "LocalFileSystem", source: format!("reading {path}: {e}").into() },
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_directory_s_objects_are_read_where_they_lie() {
        let dir = tempfile::tempdir().unwrap();
        let store = OfflineStore::open(&dir.path().display().to_string(), &S3Settings::default()).unwrap();
        store.put("p/s/v1/2024-01-02/a.parquet", Bytes::from_static(b"the bytes")).await.unwrap();
        let path = store.local_file("p/s/v1/2024-01-02/a.parquet").unwrap();
        assert_eq!(read_local(&path).unwrap(), store.get("p/s/v1/2024-01-02/a.parquet").await.unwrap());
        let gone = read_local(&store.local_file("p/s/v1/2024-01-02/b.parquet").unwrap()).unwrap_err();
        assert!(matches!(gone, Error::Store(object_store::Error::NotFound { .. })), "{gone}");
        let memory = OfflineStore::open("memory://", &S3Settings::default()).unwrap();
        assert_eq!(memory.local_file("p/s/v1/2024-01-02/a.parquet"), None, "only a directory's objects are files");
    }
}
