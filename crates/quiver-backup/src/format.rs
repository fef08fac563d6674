//! What a backup location holds, and how its objects are written and read back.
//!
//! ```text
//! <location>/<id>/meta.cut          the meta group's state tree at one applied log id
//! <location>/<id>/shard-<n>.cut     each shard's state tree at one applied log id, or its
//!                                   changes since the cut it builds on (`delta`)
//! <location>/<id>/offline/<path>    copies of the offline store's Parquet files
//! <location>/<id>/catalog.json      written last: a backup without it is not complete
//! ```
//!
//! A `.cut` object is a sequence of frames (`u32` little-endian length, then a bincode
//! `Frame`): one header, the tree's pairs (or changes) in key order, and an end frame with
//! their count, so a cut object that stops early is found even without its checksum. Every object is
//! listed in the catalog with its size and SHA-256, and the catalog carries a digest of itself
//! (`digest`); an incremental backup's catalog may name objects in the directory of the backup
//! it builds on.

use super::digest::{self, Digest};
use super::seal::{BackupKey, Opener, Sealer};
use crate::codec::{decode, encode};
use crate::error::{Error, Result};
use crate::storage::KvPair;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use object_store::{ObjectStoreExt, WriteMultipart};
use openraft::{BasicNode, LogId, StoredMembership};
use quiver_offline::store::OfflineStore;
use serde::{Deserialize, Serialize};

/// The catalog layout this build writes; it reads the ones before too (format 1 had no
/// incremental cuts of a group: every cut was whole; format 2 no encryption; format 3 listed
/// objects by xxh3-128 and had no digest of its own, so an edit of it went unseen).
pub const CATALOG_FORMAT: u32 = 4;
pub const CATALOG: &str = "catalog.json";
/// A frame larger than this is damage, not data (chunks are far smaller).
const MAX_FRAME: usize = 256 << 20;

/// A key and its new value, or `None`: the key went away.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// One frame of a `.cut` object, and of the `RaftService.ReadCut` stream it is copied from.
#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    Header(CutHeader),
    Pairs(Vec<KvPair>),
    /// In an incremental cut: keys changed since the cut it builds on (`delta`).
    Changes(Vec<Change>),
    /// How many pairs (or changes) came before it.
    End {
        pairs: u64,
    },
}

/// Which group a cut is of, and the Raft state it was taken at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CutHeader {
    pub group: u64,
    pub applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
}

/// The record of one complete backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub format: u32,
    pub id: String,
    /// µs since the Unix epoch.
    pub started_at: i64,
    pub finished_at: i64,
    /// The backup this one stores only the changes of (its objects may be named here).
    pub parent: Option<String>,
    /// Members of the source cluster.
    pub nodes: usize,
    pub meta: GroupCut,
    pub shards: Vec<GroupCut>,
    /// The source's offline store, where files without a copy here stay.
    pub offline_store: String,
    pub offline: Vec<OfflineFile>,
    /// The check value of the key every object is sealed with (`seal`); `None`: not encrypted.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Made by the `[backup]` schedule, whose retention deletes only such backups (a catalog
    /// from before this field says no: never deleted by a schedule).
    #[serde(default)]
    pub scheduled: bool,
    /// The id of the cluster backed up; `None` before format 4.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The digest of everything above (`digest::catalog`); `None` before format 4.
    #[serde(default)]
    pub digest: Option<String>,
}

impl Catalog {
    /// `key` when it is the one this backup was sealed with; `None` for a backup made
    /// without one; an error naming what to give otherwise, or saying that the catalog was
    /// changed after it was written.
    pub fn key<'k>(&self, key: Option<&'k BackupKey>) -> Result<Option<&'k BackupKey>> {
        let key = match (&self.encryption, key) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::Backup(format!(
                    "backup {} is encrypted: give the key it was made with (--encrypt-key FILE)",
                    self.id
                )));
            }
            (Some(check), Some(key)) if *check == key.check() => Some(key),
            (Some(_), Some(_)) => {
                return Err(Error::Backup(format!("that key is not the one backup {} was encrypted with", self.id)));
            }
        };
        let intact = match &self.digest {
            Some(digest) => *digest == self.digest_with(key)?,
            None => self.format < 4,
        };
        match intact {
            true => Ok(key),
            false => Err(Error::Backup(format!(
                "{} was changed after the backup was written: its digest does not match what it says",
                catalog_path(&self.id)
            ))),
        }
    }

    /// The catalog's digest, over its content without the digest.
    fn digest_with(&self, key: Option<&BackupKey>) -> Result<String> {
        let content =
            serde_json::to_vec(&Catalog { digest: None, ..self.clone() }).map_err(|e| Error::Codec(e.to_string()))?;
        Ok(digest::catalog(&content, key))
    }

    /// Sets the digest, last before the catalog is written.
    pub fn seal(&mut self, key: Option<&BackupKey>) -> Result<()> {
        self.digest = Some(self.digest_with(key)?);
        Ok(())
    }
}

/// One group's cut: the log id its state was read at, and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupCut {
    pub group: u64,
    pub term: u64,
    pub index: u64,
    /// State-tree pairs, and of those online rows (shards).
    pub pairs: u64,
    pub rows: u64,
    /// Earlier cuts of the group this one stores the changes since, oldest (a whole one)
    /// first; empty when `object` holds the whole state.
    #[serde(default)]
    pub builds_on: Vec<Object>,
    pub object: Object,
}

impl GroupCut {
    /// The objects that hold the cut, read in this order (`delta::State`).
    pub fn objects(&self) -> Vec<&Object> {
        self.builds_on.iter().chain(std::iter::once(&self.object)).collect()
    }
}

/// An object of the backup location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Relative to the location: `<id>/…`.
    pub path: String,
    pub bytes: u64,
    pub checksum: String,
}

/// An offline Parquet file the meta state's manifest or a saved dataset names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineFile {
    /// Relative to the offline store.
    pub path: String,
    pub bytes: u64,
    pub checksum: String,
    /// Its copy in the backup location; `None`: it stays in the source's offline store.
    pub copy: Option<Object>,
}

impl Catalog {
    /// Every object of the location the backup needs, its parents' included.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        let cuts = std::iter::once(&self.meta).chain(&self.shards).flat_map(GroupCut::objects);
        cuts.chain(self.offline.iter().filter_map(|f| f.copy.as_ref()))
    }

    /// Bytes of every object the backup needs.
    pub fn bytes(&self) -> u64 {
        self.objects().map(|o| o.bytes).sum()
    }

    /// Bytes stored by this backup itself (not by the ones it builds on).
    pub fn own_bytes(&self) -> u64 {
        self.objects().filter(|o| o.path.starts_with(&format!("{}/", self.id))).map(|o| o.bytes).sum()
    }

    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// A backup's id: its start time, `20261130T224001Z-123` (sorts by time). Only directories
/// named so are backups: a location may also hold other things (the offline store's files).
pub fn backup_id(micros: i64) -> String {
    let seconds = quiver_core::time::format_timestamp(micros - micros.rem_euclid(1_000_000));
    format!("{}-{:03}", seconds.replace(['-', ':'], ""), micros.rem_euclid(1_000_000) / 1000)
}

pub fn is_backup_id(name: &str) -> bool {
    let shape = "dddddddd_dddddd_-ddd";
    name.len() == shape.len()
        && name.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            '_' => c.is_ascii_uppercase(),
            other => c == other,
        })
}

pub fn catalog_path(id: &str) -> String {
    format!("{id}/{CATALOG}")
}

fn store_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backup(format!("{what}: {e}"))
}

/// A backup location, and the key its objects are sealed with (`seal`), if any; or a plain
/// store, such as the offline store files are copied from.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub store: &'a OfflineStore,
    pub key: Option<&'a BackupKey>,
}

impl<'a> Place<'a> {
    pub fn plain(store: &'a OfflineStore) -> Place<'a> {
        Place { store, key: None }
    }
}

/// Streams an object into the location, sealed when a key is given (`seal`), counting and
/// hashing what it stores.
pub struct ObjectWriter {
    path: String,
    upload: WriteMultipart,
    sealer: Option<Sealer>,
    digest: Digest,
    bytes: u64,
}

impl ObjectWriter {
    pub async fn create(place: Place<'_>, path: &str) -> Result<ObjectWriter> {
        let (location, key) = (place.store, place.key);
        let upload = location
            .object_store()
            .put_multipart(&location.path(path))
            .await
            .map_err(|e| store_err(&format!("writing {path} in {}", location.location()), e))?;
        let upload = WriteMultipart::new(upload);
        let mut writer =
            ObjectWriter { path: path.to_string(), upload, sealer: None, digest: Digest::default(), bytes: 0 };
        if let Some(key) = key {
            let (sealer, header) = Sealer::new(key)?;
            writer.store(&header).await?;
            writer.sealer = Some(sealer);
        }
        Ok(writer)
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        match self.sealer.as_mut() {
            Some(sealer) => {
                let sealed = sealer.push(data)?;
                self.store(&sealed).await
            }
            None => self.store(data).await,
        }
    }

    async fn store(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // At most a few parts in flight: the backup streams, it is never held whole.
        self.upload.wait_for_capacity(4).await.map_err(|e| store_err(&format!("writing {}", self.path), e))?;
        self.upload.write(data);
        self.digest.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        self.write_encoded_frame(&encode(frame)?).await
    }

    /// Writes a frame already encoded (as `ReadCut` streams it).
    pub async fn write_encoded_frame(&mut self, payload: &[u8]) -> Result<()> {
        let mut framed = Vec::with_capacity(payload.len() + 4);
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(payload);
        self.write(&framed).await
    }

    pub async fn finish(mut self) -> Result<Object> {
        if let Some(sealer) = self.sealer.take() {
            let last = sealer.finish()?;
            self.store(&last).await?;
        }
        let path = self.path;
        self.upload.finish().await.map_err(|e| store_err(&format!("finishing {path}"), e))?;
        Ok(Object { path, bytes: self.bytes, checksum: self.digest.text() })
    }
}

/// Reads an object as a stream of byte chunks, opened when a key is given (`seal`), hashing
/// what is stored; `check` compares the total with what the catalog says once the stream is
/// done.
pub struct ObjectReader {
    path: String,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    opener: Option<Opener>,
    digest: Digest,
    bytes: u64,
}

impl ObjectReader {
    /// Opens the object `expected` names, to be checked against it.
    pub async fn open_listed(place: Place<'_>, expected: &Object) -> Result<ObjectReader> {
        let mut reader = ObjectReader::open(place, &expected.path).await?;
        reader.digest = Digest::like(&expected.checksum);
        Ok(reader)
    }

    pub async fn open(place: Place<'_>, path: &str) -> Result<ObjectReader> {
        let (location, key) = (place.store, place.key);
        let got = location.object_store().get(&location.path(path)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                Error::Backup(format!("{path} is missing from {}", location.location()))
            }
            e => store_err(&format!("reading {path} in {}", location.location()), e),
        })?;
        let opener = key.map(Opener::new);
        let stream = got.into_stream();
        Ok(ObjectReader { path: path.to_string(), stream, opener, digest: Digest::default(), bytes: 0 })
    }

    /// The next bytes of the object (maybe none, while a sealed chunk is incomplete); `None`
    /// at its end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>> {
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.digest.update(&chunk);
                self.bytes += chunk.len() as u64;
                match self.opener.as_mut() {
                    Some(opener) => Ok(Some(opener.push(&chunk, &self.path)?.into())),
                    None => Ok(Some(chunk)),
                }
            }
            Some(Err(e)) => Err(store_err(&format!("reading {}", self.path), e)),
            None => {
                if let Some(opener) = &self.opener {
                    opener.finish(&self.path)?;
                }
                Ok(None)
            }
        }
    }

    /// Bytes read and their checksum, once the whole object was read.
    pub fn summary(&self) -> (u64, String) {
        (self.bytes, self.digest.text())
    }

    /// Reads whatever is left and checks size and checksum against `expected`.
    pub async fn check(mut self, expected: &Object) -> Result<()> {
        while self.next().await?.is_some() {}
        let found = self.digest.text();
        if self.bytes != expected.bytes || found != expected.checksum {
            return Err(Error::Backup(format!(
                "{} is damaged: {} bytes with checksum {found}, the catalog says {} bytes with {}",
                self.path, self.bytes, expected.bytes, expected.checksum
            )));
        }
        Ok(())
    }
}

/// Frames of a `.cut` object, read as they stream in.
pub struct FrameReader {
    reader: ObjectReader,
    buffer: BytesMut,
}

impl FrameReader {
    pub fn new(reader: ObjectReader) -> FrameReader {
        FrameReader { reader, buffer: BytesMut::new() }
    }

    /// The next frame; an object that ends inside a frame is damaged.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.buffer.len() >= 4 {
                let len = u32::from_le_bytes(self.buffer[..4].try_into().unwrap_or_default()) as usize;
                if len > MAX_FRAME {
                    return Err(Error::Backup(format!("{} is damaged: a frame of {len} bytes", self.reader.path)));
                }
                if self.buffer.len() >= 4 + len {
                    self.buffer.advance(4);
                    let payload = self.buffer.split_to(len);
                    return decode(&payload)
                        .map(Some)
                        .map_err(|e| Error::Backup(format!("{} is damaged: {e}", self.reader.path)));
                }
            }
            match self.reader.next().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(Error::Backup(format!("{} ends inside a frame", self.reader.path))),
            }
        }
    }

    /// Checks the whole object against the catalog once every frame was read.
    pub async fn check(self, expected: &Object) -> Result<()> {
        self.reader.check(expected).await
    }
}

/// Reads a catalog; `None` when the backup has none (not complete).
pub async fn read_catalog(location: &OfflineStore, id: &str) -> Result<Option<Catalog>> {
    let path = catalog_path(id);
    match location.object_store().get(&location.path(&path)).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| store_err(&format!("reading {path}"), e))?;
            let catalog: Catalog =
                serde_json::from_slice(&bytes).map_err(|e| Error::Backup(format!("{path} is damaged: {e}")))?;
            if !(1..=CATALOG_FORMAT).contains(&catalog.format) {
                return Err(Error::Backup(format!(
                    "{path} is in catalog format {}, this build reads formats 1 to {CATALOG_FORMAT}",
                    catalog.format
                )));
            }
            Ok(Some(catalog))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err(&format!("reading {path} in {}", location.location()), e)),
    }
}

/// Writes the catalog: the last write of a backup, which makes it complete.
pub async fn write_catalog(location: &OfflineStore, catalog: &Catalog) -> Result<()> {
    let json = serde_json::to_vec_pretty(catalog).map_err(|e| Error::Codec(e.to_string()))?;
    location
        .put(&catalog_path(&catalog.id), json.into())
        .await
        .map_err(|e| store_err(&format!("writing the catalog of {} in {}", catalog.id, location.location()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(format: u32) -> Catalog {
        let object = Object { path: "x/meta.cut".into(), bytes: 1, checksum: "xxh3-128:00".into() };
        let meta = GroupCut { group: 0, term: 1, index: 1, pairs: 1, rows: 0, builds_on: Vec::new(), object };
        Catalog {
            format,
            id: "x".into(),
            started_at: 0,
            finished_at: 0,
            parent: None,
            nodes: 1,
            meta,
            shards: Vec::new(),
            offline_store: String::new(),
            offline: Vec::new(),
            encryption: None,
            scheduled: false,
            cluster: None,
            digest: None,
        }
    }

    #[test]
    fn an_edited_catalog_is_refused_and_one_from_before_digests_is_read() {
        assert!(catalog(3).key(None).is_ok(), "format 3 had no digest");
        assert!(catalog(4).key(None).is_err(), "format 4 has one");
        let mut sealed = catalog(4);
        sealed.seal(None).unwrap();
        assert!(sealed.key(None).is_ok());
        let mut edited = sealed.clone();
        edited.meta.pairs += 1;
        let refused = edited.key(None).unwrap_err().to_string();
        assert!(refused.contains("x/catalog.json was changed"), "{refused}");

        // Encrypted: an HMAC under the key, which a digest made without it does not pass.
        let key = BackupKey::from_bytes(&[3; 32]).unwrap();
        let mut keyed = catalog(4);
        keyed.encryption = Some(key.check());
        keyed.seal(Some(&key)).unwrap();
        assert!(keyed.key(Some(&key)).is_ok());
        let mut forged = keyed.clone();
        forged.meta.rows = 9;
        forged.seal(None).unwrap();
        assert!(forged.key(Some(&key)).is_err(), "a SHA-256 recomputed without the key is not the HMAC");
    }

    #[test]
    fn backup_ids_sort_by_time_and_only_they_are_backups() {
        let (a, b) = (backup_id(1_780_272_000_000_000), backup_id(1_780_272_000_123_456));
        assert_eq!((a.as_str(), b.as_str()), ("20260601T000000Z-000", "20260601T000000Z-123"));
        assert!(a < b && is_backup_id(&a) && is_backup_id(&b));
        assert!(!is_backup_id("rides") && !is_backup_id("20260601T000000Z-12x"));
    }
}
