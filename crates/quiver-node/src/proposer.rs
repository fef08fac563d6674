//! Proposals to Raft groups from this node: to a group it leads, or forwarded to wherever
//! the group's leader is (internal work only — metadata writes, ingest and materialization
//! upserts, export; client requests are routed by the client).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quiver_core::key::{encode_entity_key, key_hash};
use quiver_core::row::ValidatedRow;
use quiver_core::shard_map::META_GROUP;
use quiver_core::table::TableRef;
use quiver_offline::files::DataFile;

use crate::groups::Groups;
use crate::meta_reader::MetaReader;
use crate::raft::NodeId;
use crate::raft::network::{PeerPool, ask_peer};
use quiver_core::time::now_micros;
use quiver_store::command::{Command, MetaCommand, Once, Response, ShardCommand, ShardRow, Write};
use quiver_store::error::{Error, Result};
use quiver_store::meta::ExportRange;
use quiver_store::release;

pub struct Proposer {
    me: NodeId,
    groups: Arc<Groups>,
    meta: MetaReader,
    pool: PeerPool,
    /// How long a proposal is retried through elections.
    retry_for: Duration,
    started_at: i64,
    requests: AtomicU64,
}

impl Proposer {
    pub fn new(groups: Arc<Groups>, meta: MetaReader, pool: PeerPool, retry_for: Duration) -> Proposer {
        let me = groups.me();
        Proposer { me, groups, meta, pool, retry_for, started_at: now_micros(), requests: AtomicU64::new(0) }
    }

    /// Proposes a command to a group this node leads and waits until it is applied;
    /// returns the state machine's answer and the entry's log index.
    pub async fn propose(&self, group: u64, command: Command) -> Result<(Response, u64)> {
        self.groups.group(group)?.propose(command).await
    }

    /// Proposes a metadata command wherever the metadata leader is: here, or forwarded.
    pub async fn write_meta(&self, command: MetaCommand) -> Result<Response> {
        self.propose_anywhere(META_GROUP, &Command::Meta(command)).await.map(|(response, _)| response)
    }

    /// Proposes a command to group `group_id` wherever its leader is: here, or forwarded
    /// to it (internal work only — metadata writes, ingest and materialization upserts;
    /// client requests are routed by the client). Retried through elections for a bounded
    /// time only when it was refused before being proposed or the leader could not be
    /// reached. Every command sent this way is idempotent or refused as a duplicate on
    /// replay (rows: last writer wins, not queued for export), except that a retried
    /// `SaveDataset` may report its own name as taken.
    pub async fn propose_anywhere(&self, group_id: u64, command: &Command) -> Result<(Response, u64)> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        let mut hint: Option<String> = None;
        let mut attempt = 0usize;
        loop {
            let result = match (self.groups.get(group_id), hint.take()) {
                (_, Some(addr)) => self.forward(&addr, group_id, command).await,
                (Some(group), None) => match group.leader() {
                    Some(id) if id == self.me => group.propose(command.clone()).await,
                    Some(id) => match group.address_of(id) {
                        Some(addr) => self.forward(&addr, group_id, command).await,
                        None => Err(quiver_core::Error::Unavailable(format!("no address for leader {id}")).into()),
                    },
                    None => Err(quiver_core::Error::Unavailable(format!("group {group_id} has no leader")).into()),
                },
                // Not hosted here: ask its replicas in turn; they name the leader.
                (None, None) => {
                    let state = self.meta.latest();
                    let replicas = &state.shard_map.shard(group_id)?.replicas;
                    let addr = replicas.get(attempt % replicas.len().max(1)).and_then(|id| state.nodes.get(id));
                    match addr {
                        Some(node) => self.forward(&node.addr, group_id, command).await,
                        None => Err(quiver_core::Error::ShardNotFound(group_id).into()),
                    }
                }
            };
            if let Err(Error::Core(quiver_core::Error::NotLeader { leader, .. })) = &result {
                hint = leader.clone();
            }
            // A shard not hosted where it was asked for is being moved: ask again too.
            let retry = result
                .as_ref()
                .is_err_and(|e| e.is_transient() || matches!(e, Error::Core(quiver_core::Error::ShardNotFound(_))));
            if !retry || Instant::now() >= deadline {
                return result;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            attempt += 1;
        }
    }

    async fn forward(&self, addr: &str, group_id: u64, command: &Command) -> Result<(Response, u64)> {
        ask_peer(&self.pool, addr, group_id, command, |mut peer, message| async move { peer.propose(message).await })
            .await
    }

    /// Writes validated rows of one table to the online shards, grouped by shard and
    /// proposed in parallel; returns the log index each shard gave its part.
    /// `export` queues the rows for the offline store: true for online writes, false for
    /// rows that come from the offline store (ingest, materialization).
    /// `once` (a request id and each row's position in its request) makes each row apply at
    /// most once, whichever shard holds its key. A part refused because its shard no longer
    /// owns some of its keys (a split this node's map does not show yet) was not applied: it
    /// is grouped again by a newer map and sent again, for a bounded time.
    pub async fn put_rows(
        &self,
        table: &TableRef,
        rows: Vec<ValidatedRow>,
        export: bool,
        once: Option<Once>,
    ) -> Result<HashMap<u64, u64>> {
        // Queued rows must not be queued twice when a forwarded part is retried: without a
        // caller's id, the node makes one.
        let once = once.or_else(|| {
            export.then(|| Once { id: self.own_request_id(), positions: (0..rows.len() as u32).collect() })
        });
        let positions = once.as_ref().map(|o| o.positions.clone()).unwrap_or_default();
        let mut pending: Vec<(u32, ShardRow)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let row = ShardRow { key: encode_entity_key(&row.key), event_ts: row.event_ts, values: row.values };
                (positions.get(i).copied().unwrap_or_default(), row)
            })
            .collect();
        let mut written = HashMap::new();
        let deadline = Instant::now() + self.retry_for;
        loop {
            let state = self.meta.latest();
            let mut by_shard: BTreeMap<u64, Vec<(u32, ShardRow)>> = BTreeMap::new();
            for (position, row) in pending.drain(..) {
                by_shard.entry(state.shard_map.shard_for(key_hash(&row.key))?.id).or_default().push((position, row));
            }
            let writes = by_shard.into_iter().map(|(shard, part)| {
                let (positions, rows): (Vec<u32>, Vec<ShardRow>) = part.into_iter().unzip();
                let once = once.as_ref().map(|o| Once { id: o.id.clone(), positions: positions.clone() });
                let command = Command::Shard(ShardCommand::Write(Write { table: table.clone(), rows, export, once }));
                async move {
                    let result = self.propose_anywhere(shard, &command).await;
                    (shard, positions, command, result)
                }
            });
            let mut moved = None;
            for (shard, positions, command, result) in futures::future::join_all(writes).await {
                match result {
                    Ok((_, index)) => drop(written.insert(shard, index)),
                    Err(Error::Core(e @ quiver_core::Error::KeyNotInShard { .. })) => {
                        if let Command::Shard(ShardCommand::Write(Write { rows, .. })) = command {
                            pending.extend(positions.into_iter().zip(rows));
                        }
                        moved = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(e) = moved else { return Ok(written) };
            if Instant::now() >= deadline {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request id no other request of any node uses: node id, start time, counter.
    fn own_request_id(&self) -> Vec<u8> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        [self.me.to_be_bytes(), self.started_at.to_be_bytes(), n.to_be_bytes()].concat()
    }

    /// The cluster's id: the one recorded, else one made now (the first recorded stays).
    pub async fn cluster_id(&self) -> Result<String> {
        let recorded = || quiver_store::meta::cluster_id(self.groups.group(META_GROUP)?.data.as_ref());
        if let Some(id) = recorded()? {
            return Ok(id);
        }
        let made = crate::trust::token::random_hex("")?[..32].to_string();
        self.write_meta(MetaCommand::SetClusterId { id: made }).await?;
        self.meta.caught_up().await?;
        recorded()?.ok_or_else(|| Error::Raft("the cluster id recorded is not in the caught-up meta state".into()))
    }

    /// Puts this release's cluster version in force (`release`) once every member reports
    /// running it or a later one; answers whether this call raised it. Checked against the
    /// caught-up meta state before proposing, as a member of an earlier release could not
    /// even read the command; the apply checks again, for a member added meanwhile.
    pub async fn finalize_upgrade(&self) -> Result<bool> {
        let state = self.meta.caught_up().await?;
        let meta = self.groups.group(META_GROUP)?;
        let reported = |id| quiver_store::meta::node_version(meta.data.as_ref(), id);
        quiver_store::meta::all_run(state.nodes.keys().copied(), reported, release::RELEASE)??;
        let finalize =
            MetaCommand::FinalizeUpgrade { version: release::CLUSTER_VERSION, release: release::RELEASE.into() };
        Ok(!matches!(self.write_meta(finalize).await?, Response::Duplicate))
    }

    /// Reserves `count` ingestion sequence numbers from the meta group; returns the first.
    pub async fn reserve_seq(&self, count: u64) -> Result<u64> {
        match self.write_meta(MetaCommand::ReserveSeq { count }).await? {
            Response::Seq(start) => Ok(start),
            other => Err(Error::Raft(format!("unexpected answer to a sequence reservation: {other:?}"))),
        }
    }

    /// Commits written files to the manifest in one step; false when their source (or
    /// export range) was committed before.
    pub async fn commit_files(
        &self,
        files: Vec<(TableRef, DataFile)>,
        source: (TableRef, String),
        export: Option<ExportRange>,
    ) -> Result<bool> {
        let command = MetaCommand::CommitFiles { files, source, export };
        Ok(!matches!(self.write_meta(command).await?, Response::Duplicate))
    }
}
