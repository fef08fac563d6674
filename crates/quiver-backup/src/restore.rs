//! Restoring a backup into the data dir of one member of a new cluster (run once per
//! member, each with the same member list; a node started on it then forms the cluster).
//!
//! Every group is written as if its Raft log had been purged up to the log id of its cut:
//! its state tree is the cut's, its applied id and last purged id are the cut's, and its
//! vote is in the cut's term, so the new cluster's first election starts a later term. The
//! log indexes stay those of the source, which keeps export marks and queued rows valid.
//! What names the old cluster's members is rewritten for the new one: the meta state's
//! nodes and each shard's replicas (every member when there are at most three, else three
//! in turn), and each group's membership; shard operations under way are dropped.
//!
//! Every object's checksum is checked as it streams; a restore that fails leaves the data
//! dir as empty as it found it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::{BasicNode, LogId, Membership, StoredMembership, Vote};
use quiver_core::backup::BackupProgress;
use quiver_core::shard_map::META_GROUP;
use quiver_offline::store::{OfflineStore, absolute_location};

use super::catalog;
use super::delta::State;
use super::format::{Catalog, GroupCut, Object, ObjectReader, ObjectWriter, Place};
use super::seal::BackupKey;
use crate::codec::{load, store};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::keyspace::{CLUSTER_ID, LOG_PURGED, LOG_VOTE, MEMBERSHIP, META_FORMAT, META_STATE, TreePart, tree_name};
use crate::meta::{MetaState, NodeInfo, STATE_FORMAT};
use crate::storage::{KvEngine, SledEngine, WriteBatch};

/// Replicas per shard in the restored cluster, as in a new one.
const REPLICAS: usize = 3;
/// Pairs written to a restored tree per batch.
const WRITE_BATCH: usize = 2_000;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub node_id: u64,
    /// The address this member is listed at: where it should listen.
    pub address: String,
    /// Groups written to this data dir: the meta group and the shards this member holds.
    pub groups: Vec<u64>,
    pub rows: u64,
    /// Offline files copied into the new offline store (others were there already).
    pub offline_copied: usize,
}

/// Restores backup `id` from `location` into `config.data_dir`, as the member of the new
/// cluster that `config` (its `initial_cluster` and address) makes it. Into the offline
/// store of the cluster the backup was made of only with `force`: a restored cluster
/// numbers its export files as its source did, so both writing there could overwrite each
/// other's files.
pub async fn restore(
    config: &Config,
    location: &str,
    id: &str,
    key: Option<&BackupKey>,
    force: bool,
    mut progress: impl FnMut(&BackupProgress),
) -> Result<Restored> {
    let mut config = config.clone();
    config.resolve_node_id()?;
    let dir = config.data_dir.clone();
    let empty = match std::fs::read_dir(&dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    if !empty {
        return Err(Error::Backup(format!("{} is not empty: restore into a new, empty data dir", dir.display())));
    }
    let source = catalog::open(location, &config.s3)?;
    let catalog = catalog::find(&source, id).await?;
    let place = Place { store: &source, key: catalog.key(key)? };
    if !force && absolute_location(&config.offline_location()) == catalog.offline_store {
        return Err(Error::Backup(format!(
            "{} is the offline store of the cluster backup {id} was made of: a restored cluster writing there \
             could overwrite that cluster's files while it runs. Give the new cluster its own (--offline-store), \
             or --force when the source is gone for good",
            catalog.offline_store
        )));
    }
    check_present(&source, &catalog).await?;
    let result = write_data_dir(&config, place, &catalog, &mut progress).await;
    if result.is_err() {
        // Leave nothing that looks like a node's data behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The id of the cluster a restore makes: new, so that its backups and export files are never
/// taken for its source's, and the same for every member restored from this backup into
/// this member list.
fn restored_cluster_id(catalog: &Catalog, members: &BTreeMap<u64, String>) -> String {
    let mut seed = format!("quiver restored cluster {} {}", catalog.cluster.as_deref().unwrap_or(""), catalog.id);
    for (id, addr) in members {
        seed += &format!(" {id}={addr}");
    }
    super::digest::hex(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes()).as_ref()[..16])
}

/// Every object the catalog names is there with its size, before anything is written.
async fn check_present(location: &OfflineStore, catalog: &Catalog) -> Result<()> {
    let listed = location.list("").await.map_err(|e| Error::Backup(format!("listing {}: {e}", location.location())))?;
    let sizes: BTreeMap<String, u64> = listed.into_iter().collect();
    for object in catalog.objects() {
        match sizes.get(&object.path) {
            None => return Err(Error::Backup(format!("{} is missing from {}", object.path, location.location()))),
            Some(size) if *size != object.bytes => {
                return Err(Error::Backup(format!(
                    "{} is damaged: {size} bytes, the catalog says {}",
                    object.path, object.bytes
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn write_data_dir(
    config: &Config,
    source: Place<'_>,
    catalog: &Catalog,
    progress: &mut impl FnMut(&BackupProgress),
) -> Result<Restored> {
    let me = config.node_id;
    let members = config.initial_members()?;
    // Every group and file at first; the shards this member does not hold drop out below.
    let objects_total = 1 + catalog.shards.len() as u64 + catalog.offline.len() as u64;
    let mut report = BackupProgress { id: catalog.id.clone(), objects_total, ..Default::default() };
    let online = config.data_dir.join("online");
    std::fs::create_dir_all(&online).map_err(|e| Error::io(format!("creating {}", online.display()), e))?;
    let engine: Arc<dyn KvEngine> = Arc::new(SledEngine::open(&online)?);

    // The meta group first: it says which shards this member holds.
    report.phase = "restoring the meta group".into();
    progress(&report);
    let voters: BTreeMap<u64, BasicNode> =
        members.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
    let mut state = None;
    let mut rewrite_meta = |key: &[u8], value: Vec<u8>| -> Result<Vec<u8>> {
        if key == META_FORMAT {
            let layout: u32 = load(&value)?;
            if layout != STATE_FORMAT {
                return Err(Error::Backup(format!(
                    "the backup's metadata is in layout {layout}, but this build reads layout {STATE_FORMAT}: \
                     restore it with the version of Quiver that made it"
                )));
            }
        }
        if key != META_STATE {
            return Ok(value);
        }
        let mut restored: MetaState = load(&value)?;
        for_new_cluster(&mut restored, &members);
        let bytes = store(&restored)?;
        state = Some(restored);
        Ok(bytes)
    };
    let mut rows = 0;
    restore_group(engine.as_ref(), source, &catalog.meta, me, &voters, &mut rewrite_meta, &mut report, progress)
        .await?;
    let state = state.ok_or_else(|| Error::Backup("the meta cut holds no meta state".into()))?;
    let mut named = WriteBatch::default();
    let cluster = restored_cluster_id(catalog, &members);
    named.put(CLUSTER_ID, store(&cluster)?);
    engine.tree(&tree_name(META_GROUP, TreePart::State))?.write(named)?;
    let mut groups = vec![META_GROUP];
    let mut held = Vec::new();
    for cut in &catalog.shards {
        let shard = state.shard_map.shard(cut.group)?;
        if shard.hosted_by(me) {
            held.push((cut, shard));
        }
    }
    report.objects_total = 1 + held.len() as u64 + catalog.offline.len() as u64;
    for (cut, shard) in held {
        report.phase = format!("restoring shard {}", cut.group);
        progress(&report);
        let voters = shard.replicas.iter().filter_map(|id| voters.get(id).map(|n| (*id, n.clone()))).collect();
        let mut keep = |_: &[u8], value: Vec<u8>| Ok(value);
        restore_group(engine.as_ref(), source, cut, me, &voters, &mut keep, &mut report, progress).await?;
        rows += cut.rows;
        groups.push(cut.group);
    }
    engine.flush()?;
    drop(engine);

    let offline_copied = restore_offline(config, source, catalog, &mut report, progress).await?;
    Identity { node_id: me, joined: false, cluster: Some(cluster) }.write(&config.data_dir)?;
    report.phase = "done".into();
    report.done = true;
    progress(&report);
    let address = members.get(&me).cloned().unwrap_or_default();
    Ok(Restored { node_id: me, address, groups, rows, offline_copied })
}

/// The source's meta state made the new cluster's: its members, shards placed on them.
fn for_new_cluster(state: &mut MetaState, members: &BTreeMap<u64, String>) {
    let ids: Vec<u64> = members.keys().copied().collect();
    state.nodes = members
        .iter()
        .map(|(id, addr)| (*id, NodeInfo { id: *id, addr: addr.clone(), client_addr: addr.clone(), draining: false }))
        .collect();
    state.next_node_id = state.next_node_id.max(ids.iter().max().copied().unwrap_or(0) + 1);
    for (i, shard) in state.shard_map.shards.iter_mut().enumerate() {
        let replicas: Vec<u64> = (0..ids.len().min(REPLICAS)).map(|k| ids[(i + k) % ids.len()]).collect();
        shard.voters = replicas.clone();
        shard.replicas = replicas;
        (shard.leader, shard.leader_term) = (None, 0);
    }
    state.ops.clear();
    state.backup_cut = None;
    // Files waiting for deletion stay with the source's store.
    state.garbage.clear();
}

/// Writes one group's trees from its cut's objects, checking them as they stream.
#[allow(clippy::too_many_arguments)]
async fn restore_group(
    engine: &dyn KvEngine,
    source: Place<'_>,
    cut: &GroupCut,
    me: u64,
    voters: &BTreeMap<u64, BasicNode>,
    rewrite: &mut impl FnMut(&[u8], Vec<u8>) -> Result<Vec<u8>>,
    report: &mut BackupProgress,
    progress: &mut impl FnMut(&BackupProgress),
) -> Result<()> {
    let damaged = |why: String| Error::Backup(format!("{} is damaged: {why}", cut.object.path));
    let group = cut.group;
    let (header, mut pairs_in) = State::open(source, &cut.objects(), group).await?;
    let applied: LogId<u64> = header.applied.ok_or_else(|| damaged("its cut has no applied log id".into()))?;
    let state = engine.tree(&tree_name(group, TreePart::State))?;
    let (mut pairs, mut batch) = (0u64, WriteBatch::default());
    while let Some((key, value)) = pairs_in.next().await? {
        pairs += 1;
        if key.as_slice() != MEMBERSHIP {
            let value = rewrite(&key, value)?;
            batch.put(key, value);
        }
        if batch.len() >= WRITE_BATCH {
            state.write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        state.write(batch)?;
    }
    pairs_in.finish().await?;
    if pairs != cut.pairs {
        return Err(damaged(format!("{pairs} pairs, the catalog says {}", cut.pairs)));
    }
    let mut batch = WriteBatch::default();
    let membership = Membership::from(voters.clone());
    batch.put(MEMBERSHIP, store(&StoredMembership::new(Some(applied), membership))?);
    state.write(batch)?;
    // The log starts after the cut; the vote is in the cut's term, so the next election
    // starts a later one.
    let mut log = WriteBatch::default();
    log.put(LOG_PURGED, store(&applied)?);
    log.put(LOG_VOTE, store(&Vote::new(applied.leader_id.term, me))?);
    engine.tree(&tree_name(group, TreePart::Log))?.write(log)?;
    report.objects_done += 1;
    report.bytes += cut.objects().iter().map(|o| o.bytes).sum::<u64>();
    progress(report);
    Ok(())
}

/// Copies the backup's offline files into the new cluster's offline store, unless a file
/// of the same path and size is there already (another member restored it, or the store is
/// the source's); answers how many it copied.
async fn restore_offline(
    config: &Config,
    source: Place<'_>,
    catalog: &Catalog,
    report: &mut BackupProgress,
    progress: &mut impl FnMut(&BackupProgress),
) -> Result<usize> {
    let target = OfflineStore::open(&config.offline_location(), &config.s3)
        .map_err(|e| Error::Backup(format!("opening the offline store {}: {e}", config.offline_location())))?;
    let present: BTreeSet<(String, u64)> =
        target.list("").await.map_err(|e| Error::Backup(e.to_string()))?.into_iter().collect();
    let original = match catalog.offline.iter().any(|f| f.copy.is_none()) {
        true => Some(catalog::open(&catalog.offline_store, &config.s3)?),
        false => None,
    };
    report.phase = "restoring offline files".into();
    progress(report);
    let mut copied = 0;
    for file in &catalog.offline {
        if !present.contains(&(file.path.clone(), file.bytes)) {
            let (from, object) = match (&file.copy, &original) {
                (Some(copy), _) => (source, copy.clone()),
                (None, Some(store)) => {
                    let object = Object { path: file.path.clone(), bytes: file.bytes, checksum: file.checksum.clone() };
                    (Place::plain(store), object)
                }
                (None, None) => {
                    return Err(Error::Backup(format!("{} has no copy and no store to come from", file.path)));
                }
            };
            copy_object(from, &object, &target, &file.path).await?;
            copied += 1;
            report.bytes += file.bytes;
        }
        report.objects_done += 1;
        progress(report);
    }
    Ok(copied)
}

/// Copies `object` of `from` to `path` of `to`, checking it; a damaged copy is deleted.
async fn copy_object(from: Place<'_>, object: &Object, to: &OfflineStore, path: &str) -> Result<()> {
    let mut reader = ObjectReader::open_listed(from, object).await?;
    let mut writer = ObjectWriter::create(Place::plain(to), path).await?;
    while let Some(chunk) = reader.next().await? {
        writer.write(&chunk).await?;
    }
    writer.finish().await?;
    if let Err(e) = reader.check(object).await {
        let _ = to.delete(path).await;
        return Err(e);
    }
    Ok(())
}
