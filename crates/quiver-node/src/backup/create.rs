//! Making a backup, on the node asked (or, on a schedule, the metadata leader).
//!
//! 1. `BeginBackupCut` in the meta group: until the cut is taken, export commits, ingests'
//!    publishing and new splits and merges wait (`Busy`), and none is under way (a backup
//!    waits for them, two minutes at most), so an ingest is in the backup whole or not at all.
//! 2. Every shard's leader opens a cut of its shard after a read-index round
//!    (`RaftService.ReadCut`): every write acknowledged before the backup started is in it.
//! 3. The metadata leader opens a cut of the meta group, then `EndBackupCut`. The meta cut
//!    is taken last, so its export marks cover every row a shard's cut has already handed
//!    to the offline store, and no file it lists holds a row a shard's cut lacks (exports
//!    were held): a restored shard exports exactly the rows its queue still has.
//! 4. The cuts stream into `.cut` objects while the cluster goes on (copy-on-write, see
//!    `raft::cut`); each shard's range is checked against the meta cut's map. In an
//!    incremental backup a group whose applied log id has not moved is named, not stored,
//!    and one whose has stores only the keys that changed since (`delta`).
//! 5. The offline files the meta cut names are read (checksums) and copied, those an
//!    incremental backup's parent lists already named again.
//! 6. The catalog is written last; then `RecordBackup` for status.
//!
//! A backup that dies on the way leaves objects but no catalog: it is not complete, is
//! never restored, and the next backup gets a new id.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_core::backup::{BackupProgress, BackupRecord};
use quiver_core::shard_map::META_GROUP;
use quiver_offline::store::{OfflineStore, S3Settings, absolute_location};
use quiver_proto::MAX_MESSAGE_BYTES;
use quiver_proto::v1::RaftMessage;
use quiver_proto::v1::raft_service_client::RaftServiceClient;

use super::catalog;
use super::delta::{Diff, State};
use super::format::{
    CATALOG_FORMAT, Catalog, Change, CutHeader, Frame, GroupCut, Object, ObjectReader, ObjectWriter, OfflineFile,
    Place, backup_id,
};
use super::seal::BackupKey;
use crate::groups::Groups;
use crate::meta_reader::MetaReader;
use crate::proposer::Proposer;
use crate::raft::network::PeerPool;
use quiver_core::time::now_micros;
use quiver_store::codec::{decode, encode, load};
use quiver_store::command::MetaCommand;
use quiver_store::error::{Error, Result};
use quiver_store::keyspace::{META_STATE, ROW, SHARD_RANGE};
use quiver_store::meta::MetaState;

/// How long exports and splits wait for a backup to cut the groups, at most: a backup
/// that dies meanwhile holds them no longer than this, and one whose cut takes longer
/// fails (`EndBackupCut`) rather than stand inconsistent.
const CUT_HOLD_MS: u64 = 30_000;
/// How long a backup waits for an ingest to publish, or a split or merge to end, before it
/// cuts the groups.
const BUSY_WAIT: Duration = Duration::from_secs(120);
/// How long a group's cut is looked for among its replicas (elections, moves).
const FIND_LEADER_FOR: Duration = Duration::from_secs(15);
/// Incremental cuts a group's cut builds on at most: the next one is stored whole, so a
/// restore reads a bounded number of objects at once.
const MAX_CHAIN: usize = 8;
/// Keys gone since the earlier cut, written per frame.
const REMOVED_PER_FRAME: usize = 2_000;

/// What a backup is asked to do.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// A directory on this node's machine, or `s3://bucket/prefix`.
    pub to: String,
    pub incremental: bool,
    /// `None`: copy the offline files unless `to` is the offline store itself.
    pub copy_offline: Option<bool>,
    pub scheduled: bool,
    /// Seal every object with this key (`seal`).
    pub key: Option<BackupKey>,
}

/// The parts of a node that make backups.
pub struct Backups {
    pub groups: Arc<Groups>,
    pub meta: MetaReader,
    pub proposer: Arc<Proposer>,
    pub pool: PeerPool,
    pub offline: OfflineStore,
    pub s3: S3Settings,
    /// Bytes a backup writes per second at most; 0: no limit.
    pub max_bytes_per_sec: u64,
    /// One backup at a time from this node.
    pub running: tokio::sync::Mutex<()>,
}

type Stream = tonic::Streaming<RaftMessage>;

/// Whoever follows a backup's progress; it must not block.
pub type Follower<'a> = &'a (dyn Fn(&BackupProgress) + Send + Sync);

/// Reports progress to the backup's follower, and keeps the backup's writes under its rate
/// limit.
struct Reporter<'a> {
    progress: BackupProgress,
    follower: Follower<'a>,
    started: Instant,
    max_bytes_per_sec: u64,
}

impl Reporter<'_> {
    fn send(&self) {
        (self.follower)(&self.progress);
    }

    /// Counts `bytes` written, then waits as long as the backup is ahead of its rate.
    async fn wrote(&mut self, bytes: u64) {
        self.progress.bytes = self.progress.bytes.saturating_add(bytes);
        self.send();
        if self.max_bytes_per_sec > 0 {
            let due = Duration::from_secs_f64(self.progress.bytes as f64 / self.max_bytes_per_sec as f64);
            if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(ahead).await;
            }
        }
    }

    fn phase(&mut self, phase: String) {
        self.progress.phase = phase;
        self.send();
    }
}

impl Backups {
    /// Makes a backup; reports progress to `follower` and answers the final report.
    pub async fn create(&self, request: BackupRequest, follower: Follower<'_>) -> Result<BackupProgress> {
        let _one = self.running.try_lock().map_err(|_| quiver_core::Error::Busy {
            reason: "this node is already making a backup".into(),
            retry_after_ms: 5000,
        })?;
        let location = catalog::open(&request.to, &self.s3)?;
        // Reachable, and what is there already: found out before anything is held.
        let listed = catalog::list(&location).await?;
        // A scheduled incremental backup builds on the schedule's own, never on an operator's;
        // with none of those (the schedule's first here, or catalogs from before the mark) it
        // is whole.
        // Only a backup of this cluster: another one's (a restored cluster's source, say) holds
        // other data under the same log positions.
        let cluster = self.proposer.cluster_id().await?;
        let own = |c: &Catalog| (!request.scheduled || c.scheduled) && c.cluster.as_ref() == Some(&cluster);
        let newest = listed.into_iter().rev().find_map(|l| l.catalog.filter(own));
        let parent = match (request.incremental, newest) {
            (true, Some(newest)) => Some(newest),
            (true, None) if !request.scheduled => {
                let none = format!(
                    "{} holds no complete backup of this cluster to build on: make a full one first",
                    request.to
                );
                return Err(Error::Backup(none));
            }
            _ => None,
        };
        let key = request.key.as_ref();
        // An incremental backup reads the one it builds on, and is sealed as it was.
        if let Some(parent) = &parent
            && parent.key(key)?.map(BackupKey::check) != key.map(BackupKey::check)
        {
            return Err(Error::Backup(format!(
                "backup {} that this one would build on is not encrypted: make a full encrypted backup",
                parent.id
            )));
        }
        let place = Place { store: &location, key };
        let started_at = now_micros();
        let id = backup_id(started_at);
        let into_offline_store = absolute_location(location.location()) == absolute_location(self.offline.location());
        let copy = request.copy_offline.unwrap_or(!into_offline_store);
        let progress = BackupProgress { id: id.clone(), ..Default::default() };
        let mut report =
            Reporter { progress, follower, started: Instant::now(), max_bytes_per_sec: self.max_bytes_per_sec };
        report.phase("cutting the groups".into());

        let (shards, meta) = self.cut_all(&id).await?;
        report.progress.objects_total = shards.len() as u64 + 1;
        let mut shard_cuts = Vec::new();
        let mut ranges: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        for (header, stream) in shards {
            let group = header.group;
            report.phase(format!("reading shard {group}"));
            crate::failpoint::delay("backup-object").await;
            let earlier = parent.as_ref().and_then(|p| p.shards.iter().find(|c| c.group == group));
            let (cut, range) = match earlier.filter(|c| unchanged(c, &header)) {
                Some(cut) => (cut.clone(), None),
                None => {
                    let path = format!("{id}/shard-{group}.cut");
                    write_cut(place, &path, header, stream, SHARD_RANGE, earlier, &mut report).await?
                }
            };
            report.progress.objects_done += 1;
            ranges.push((group, range));
            shard_cuts.push(cut);
        }
        report.phase("reading the meta group".into());
        let (meta_header, meta_stream) = meta;
        let path = format!("{id}/meta.cut");
        let earlier = parent.as_ref().map(|p| &p.meta);
        let (meta_cut, state) =
            write_cut(place, &path, meta_header, meta_stream, META_STATE, earlier, &mut report).await?;
        report.progress.objects_done += 1;
        let state: MetaState = load(&state.ok_or_else(|| Error::Backup("the meta cut holds no meta state".into()))?)?;
        check_ranges(&state, &ranges)?;

        let offline = self.offline_files(&state, place, &id, copy, parent.as_ref(), &mut report).await?;
        // Before the catalog: a complete backup's files are never collected as garbage.
        let left: Vec<String> = offline.iter().filter(|f| f.copy.is_none()).map(|f| f.path.clone()).collect();
        if !left.is_empty() {
            let pin = MetaCommand::PinFiles { backup: id.clone(), location: request.to.clone(), paths: left };
            self.proposer.write_meta(pin).await?;
        }
        let mut catalog = Catalog {
            format: CATALOG_FORMAT,
            encryption: key.map(BackupKey::check),
            scheduled: request.scheduled,
            id: id.clone(),
            started_at,
            finished_at: now_micros(),
            parent: parent.map(|p| p.id),
            nodes: state.nodes.len(),
            meta: meta_cut,
            shards: shard_cuts,
            offline_store: absolute_location(self.offline.location()),
            offline,
            cluster: Some(cluster),
            digest: None,
        };
        catalog.seal(key)?;
        super::format::write_catalog(&location, &catalog).await?;
        let record = BackupRecord {
            id: id.clone(),
            location: request.to.clone(),
            finished_at: catalog.finished_at,
            bytes: catalog.bytes(),
            rows: catalog.rows(),
            incremental: catalog.parent.is_some(),
            scheduled: request.scheduled,
        };
        if let Err(e) = self.proposer.write_meta(MetaCommand::RecordBackup(record)).await {
            tracing::warn!(backup = id, "recording the backup for status: {e}");
        }
        tracing::info!(backup = id, to = request.to, bytes = catalog.bytes(), rows = catalog.rows(), "backup complete");
        report.progress.phase = "done".into();
        report.progress.done = true;
        // Shards an incremental backup did not read again still count: the rows it holds.
        report.progress.rows = catalog.rows();
        Ok(report.progress)
    }

    /// Opens every shard's cut, then the meta group's, under the meta group's hold.
    async fn cut_all(&self, id: &str) -> Result<(Vec<(CutHeader, Stream)>, (CutHeader, Stream))> {
        // An ingest publishing, or a split or merge under way, is waited out for a while.
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            let begin = MetaCommand::BeginBackupCut { id: id.to_string(), hold_ms: CUT_HOLD_MS };
            match self.proposer.write_meta(begin).await {
                Err(Error::Core(quiver_core::Error::Busy { retry_after_ms, .. })) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
                }
                other => break other.map(drop)?,
            }
        }
        let cut = async {
            let state = self.meta.caught_up().await?;
            let mut shards = Vec::new();
            for shard in &state.shard_map.shards {
                let leader_first = shard.leader.into_iter().chain(shard.replicas.iter().copied());
                shards.push(self.open_cut(shard.id, addresses(&state, leader_first)).await?);
            }
            let leader_first = self.groups.leader_of(META_GROUP).into_iter().chain(state.nodes.keys().copied());
            let meta = self.open_cut(META_GROUP, addresses(&state, leader_first)).await?;
            crate::failpoint::delay("backup-cut").await;
            Ok((shards, meta))
        }
        .await;
        // A cut not known to lie within its hold must not stand: an export may have committed
        // between two groups' cuts. That is one refused as taken after the hold lapsed (which
        // comes back as an error), or one whose end was never recorded (the hold then lapses
        // by itself).
        match self.proposer.write_meta(MetaCommand::EndBackupCut { id: id.to_string() }).await {
            Err(e) if cut.is_ok() => Err(e),
            Err(e) => {
                tracing::warn!(backup = id, "ending the cut: {e}");
                cut
            }
            Ok(_) => cut,
        }
    }

    /// Asks the replicas at `addresses` in turn for a cut of `group`, until its leader
    /// answers with the cut's header.
    async fn open_cut(&self, group: u64, addresses: Vec<String>) -> Result<(CutHeader, Stream)> {
        let deadline = Instant::now() + FIND_LEADER_FOR;
        let mut last = String::from("no replica known");
        loop {
            for addr in &addresses {
                match self.try_open_cut(group, addr).await {
                    Ok(opened) => return Ok(opened),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(
                    quiver_core::Error::Unavailable(format!("no leader of group {group} gave a cut: {last}")).into()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_open_cut(&self, group: u64, addr: &str) -> Result<(CutHeader, Stream)> {
        // Cuts are opened together and read one after another: each on its own connection.
        let channel = self.pool.own_channel(addr).map_err(Error::Raft)?;
        let mut client = RaftServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let request = RaftMessage { group_id: group, payload: Vec::new(), error: Vec::new() };
        let status = |s: tonic::Status| Error::Raft(s.message().to_string());
        let mut stream = client.read_cut(request).await.map_err(status)?.into_inner();
        match stream.message().await.map_err(status)? {
            Some(m) => match decode(&m.payload)? {
                Frame::Header(header) => Ok((header, stream)),
                other => Err(Error::Backup(format!("group {group}'s cut began with {other:?}"))),
            },
            None => Err(Error::Backup(format!("group {group}'s cut ended before its header"))),
        }
    }

    /// Lists (with checksums) and copies the offline files `state` names.
    async fn offline_files(
        &self,
        state: &MetaState,
        location: Place<'_>,
        id: &str,
        copy: bool,
        parent: Option<&Catalog>,
        report: &mut Reporter<'_>,
    ) -> Result<Vec<OfflineFile>> {
        let manifest = state.manifest.values().flatten().map(|f| f.path.clone());
        let paths: BTreeSet<String> = manifest.chain(state.datasets.values().map(|d| d.path.clone())).collect();
        report.progress.objects_total += paths.len() as u64;
        report.phase(format!("{} offline files", if copy { "copying" } else { "listing" }));
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let earlier = parent.and_then(|p| p.offline.iter().find(|f| f.path == path && (f.copy.is_some() || !copy)));
            let file = match earlier {
                // Offline files never change once written: the earlier backup's entry holds.
                Some(file) => file.clone(),
                None => self.offline_file(&path, location, id, copy, report).await?,
            };
            report.progress.objects_done += 1;
            report.send();
            files.push(file);
        }
        Ok(files)
    }

    async fn offline_file(
        &self,
        path: &str,
        location: Place<'_>,
        id: &str,
        copy: bool,
        report: &mut Reporter<'_>,
    ) -> Result<OfflineFile> {
        let mut reader = ObjectReader::open(Place::plain(&self.offline), path).await?;
        let mut writer = match copy {
            true => Some(ObjectWriter::create(location, &format!("{id}/offline/{path}")).await?),
            false => None,
        };
        while let Some(chunk) = reader.next().await? {
            if let Some(writer) = writer.as_mut() {
                writer.write(&chunk).await?;
                report.wrote(chunk.len() as u64).await;
            }
        }
        let (bytes, checksum) = reader.summary();
        let copy = match writer {
            Some(writer) => Some(writer.finish().await?),
            None => None,
        };
        Ok(OfflineFile { path: path.to_string(), bytes, checksum, copy })
    }
}

/// Peer addresses of `ids`, each once, in order.
fn addresses(state: &MetaState, ids: impl Iterator<Item = u64>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ids.filter(|id| seen.insert(*id)).filter_map(|id| state.nodes.get(&id).map(|n| n.addr.clone())).collect()
}

/// Whether the earlier cut of a group is at the same applied log id as `header`: its state
/// has not moved since.
fn unchanged(earlier: &GroupCut, header: &CutHeader) -> bool {
    header.applied.is_some_and(|a| earlier.index == a.index && earlier.term == a.leader_id.term)
}

/// Streams one group's cut into an object: whole, or as its changes since `earlier` (the
/// same group's cut in the backup this one builds on) unless that chain is already
/// `MAX_CHAIN` long. Answers its entry and the value of `watch`.
async fn write_cut(
    location: Place<'_>,
    path: &str,
    header: CutHeader,
    mut stream: Stream,
    watch: &[u8],
    earlier: Option<&GroupCut>,
    report: &mut Reporter<'_>,
) -> Result<(GroupCut, Option<Vec<u8>>)> {
    let group = header.group;
    let applied = header.applied.unwrap_or_default();
    let builds_on: Vec<Object> = match earlier.filter(|e| e.builds_on.len() < MAX_CHAIN) {
        Some(e) => e.objects().into_iter().cloned().collect(),
        None => Vec::new(),
    };
    let mut diff = match builds_on.is_empty() {
        true => None,
        false => Some(Diff::new(State::open(location, &builds_on.iter().collect::<Vec<_>>(), group).await?.1)),
    };
    let mut writer = ObjectWriter::create(location, path).await?;
    writer.write_frame(&Frame::Header(header)).await?;
    let (mut pairs, mut rows, mut watched, mut stored) = (0u64, 0u64, None, 0u64);
    loop {
        let message = stream
            .message()
            .await
            .map_err(|s| Error::Backup(format!("reading group {group}'s cut: {}", s.message())))?
            .ok_or_else(|| Error::Backup(format!("group {group}'s cut stopped before its end")))?;
        match decode(&message.payload)? {
            Frame::Pairs(chunk) => {
                pairs += chunk.len() as u64;
                let new_rows = chunk.iter().filter(|(k, _)| k.first() == Some(&ROW)).count() as u64;
                rows += new_rows;
                report.progress.rows += new_rows;
                if let Some((_, v)) = chunk.iter().find(|(k, _)| k.as_slice() == watch) {
                    watched = Some(v.clone());
                }
                match diff.as_mut() {
                    None => {
                        stored += chunk.len() as u64;
                        write_frame(&mut writer, &message.payload, report).await?;
                    }
                    Some(diff) => {
                        let changes = diff.changes(&chunk).await?;
                        stored += write_changes(&mut writer, changes, report).await?;
                    }
                }
            }
            Frame::End { pairs: sent } if sent != pairs => {
                return Err(Error::Backup(format!("group {group}'s cut sent {pairs} pairs but counted {sent}")));
            }
            Frame::End { .. } => break,
            other => return Err(Error::Backup(format!("group {group}'s cut sent {other:?} amid its pairs"))),
        }
    }
    if let Some(mut diff) = diff {
        loop {
            let removed = diff.removed(REMOVED_PER_FRAME).await?;
            if removed.is_empty() {
                break;
            }
            stored += write_changes(&mut writer, removed, report).await?;
        }
        // The earlier cuts were read whole: a damaged one fails this backup, not its restore.
        diff.finish().await?;
    }
    write_frame(&mut writer, &encode(&Frame::End { pairs: stored })?, report).await?;
    let object = writer.finish().await?;
    let cut = GroupCut { group, term: applied.leader_id.term, index: applied.index, pairs, rows, builds_on, object };
    Ok((cut, watched))
}

async fn write_frame(writer: &mut ObjectWriter, payload: &[u8], report: &mut Reporter<'_>) -> Result<()> {
    writer.write_encoded_frame(payload).await?;
    report.wrote(payload.len() as u64 + 4).await;
    Ok(())
}

/// Writes `changes` as a frame unless there are none; answers how many.
async fn write_changes(writer: &mut ObjectWriter, changes: Vec<Change>, report: &mut Reporter<'_>) -> Result<u64> {
    let count = changes.len() as u64;
    if count > 0 {
        write_frame(writer, &encode(&Frame::Changes(changes))?, report).await?;
    }
    Ok(count)
}

/// Every shard's range in its cut is its range in the meta cut's map (no split or merge
/// came between them).
fn check_ranges(state: &MetaState, ranges: &[(u64, Option<Vec<u8>>)]) -> Result<()> {
    for (group, stored) in ranges {
        let Some(stored) = stored else { continue };
        let range: Option<(u64, u64)> = load(stored)?;
        let shard = state.shard_map.shard(*group)?;
        if range.is_some_and(|r| r != (shard.start, shard.end)) {
            return Err(Error::Backup(format!(
                "shard {group}'s range changed while the backup cut it (a split or merge): make the backup again"
            )));
        }
    }
    if state.shard_map.shards.len() != ranges.len() {
        return Err(Error::Backup("the shard map changed while the backup cut it: make the backup again".into()));
    }
    Ok(())
}
