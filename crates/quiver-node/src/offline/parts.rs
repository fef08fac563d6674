//! A training set split over the cluster (`quiver_offline::split`). The node that received
//! it cuts the spine by entity key into one part per node, joins its own part, asks each
//! other node for its part (`OfflineService.JoinPart`, from members only), and merges the
//! answers in spine order. Each node joins its part within its own `retrieval_memory`,
//! reading the files from the shared offline store.
//!
//! The plan names the feature set versions and the very files the receiving node saw, so a
//! part is joined against the same data wherever it runs. A part whose node fails (down,
//! on another offline store) is joined here instead: a lost node costs time, never rows.
//! When the caller goes away, the part streams are dropped, and every node stops its part
//! and frees its spill files (`api::offline`).

use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use quiver_core::Error as CoreError;
use quiver_core::registry::{Entity, FeatureSet};
use quiver_offline::files::DataFile;
use quiver_offline::retrieval::{Phases, Source, point_in_time};
use quiver_offline::spill::{Memory, Usage};
use quiver_offline::spine::Spine;
use quiver_offline::split::{hash_range, merge_parts, routed_alike, split_spine};
use quiver_proto::MAX_MESSAGE_BYTES;
use quiver_proto::v1::JoinPartRequest;
use quiver_proto::v1::offline_service_client::OfflineServiceClient;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use quiver_store::codec::{decode, encode};
use quiver_store::error::Result;
use quiver_store::meta::MetaState;

/// What a node joins its part with.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartPlan {
    /// The offline store the files are on: a node on another one cannot join the part.
    pub store: String,
    /// The part spine's time column.
    pub time_column: String,
    /// The part's range of key hashes (`split::hash_range`).
    pub key_hashes: (u64, u64),
    pub sets: Vec<PlannedSet>,
}

/// A feature set version to join: `retrieval::Source`, owned.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlannedSet {
    pub entity: Entity,
    pub fs: FeatureSet,
    pub files: Vec<DataFile>,
    pub features: Vec<(usize, String)>,
    /// Its entity is keyed as the spine was split (`split::routed_alike`): its files need
    /// only be read in the part's range of key hashes.
    pub routed: bool,
}

impl PartPlan {
    fn sources(&self) -> Vec<Source<'_>> {
        self.sets
            .iter()
            .map(|s| Source {
                entity: &s.entity,
                fs: &s.fs,
                files: s.files.clone(),
                features: s.features.clone(),
                key_hashes: s.routed.then_some(self.key_hashes),
            })
            .collect()
    }
}

/// The addresses of the other nodes a training set of `rows` spine rows is split over;
/// none when it is joined here alone (`[offline] split_min_rows`).
pub fn helpers(node: &Node, state: &MetaState, rows: usize) -> Vec<String> {
    if rows == 0 || (rows as u64) < node.config.offline.split_min_rows {
        return Vec::new();
    }
    state.nodes.values().filter(|n| n.id != node.id && !n.draining).map(|n| n.addr.clone()).collect()
}

/// Joins `sources` onto the spine split over this node and `helpers`; answers the whole
/// answer and how many nodes joined a part of it. `phases` gets `split` (cutting the
/// spine), `parts` (until every part's answer is here) and `merge`.
pub async fn point_in_time_split(
    node: &Node,
    helpers: &[String],
    spine: &Spine,
    time_column: &str,
    sources: &[Source<'_>],
    phases: &mut Phases,
    usage: &mut Usage,
) -> Result<(RecordBatch, u32)> {
    let started = Instant::now();
    let count = helpers.len() + 1;
    let split = split_spine(&spine.batch, &spine.times, time_column, sources, count)?;
    let first = sources.first().map(|s| s.entity);
    let plans: Vec<PartPlan> = (0..count)
        .map(|part| PartPlan {
            store: node.offline.location().to_string(),
            time_column: time_column.to_string(),
            key_hashes: hash_range(part, count),
            sets: sources
                .iter()
                .map(|s| PlannedSet {
                    entity: s.entity.clone(),
                    fs: s.fs.clone(),
                    files: s.files.clone(),
                    features: s.features.clone(),
                    routed: first.is_some_and(|first| routed_alike(first, s.entity)),
                })
                .collect(),
        })
        .collect();
    let memory = node.config.retrieval_memory()?;
    let started = phases.add("split", started);
    let here = join_here(node, &plans[0], &split.parts[0], &memory);
    let there = helpers.iter().zip(&split.parts[1..]).zip(&plans[1..]).map(|((addr, part), plan)| {
        let memory = &memory;
        async move {
            let asked = async { join_there(node, addr, &encode(plan)?, part).await };
            match asked.await {
                Ok(answer) => Ok(answer),
                Err(e) => {
                    tracing::warn!(node = addr.as_str(), "a training set's part is joined here instead: {e}");
                    join_here(node, plan, part, memory).await
                }
            }
        }
    });
    let (here, there) = tokio::join!(here, futures::future::try_join_all(there));
    let mut answers = vec![here?];
    answers.extend(there?);
    let started = phases.add("parts", started);
    for (_, used) in &answers {
        usage.merge(used);
    }
    let answers: Vec<RecordBatch> = answers.into_iter().map(|(batch, _)| batch).collect();
    let merged = merge_parts(&spine.batch, sources, &answers, &split.places)?;
    phases.add("merge", started);
    Ok((merged, answers.len() as u32))
}

/// A part's answer: the columns the join adds, in the part's row order, and what its join
/// held and spilled.
type PartAnswer = (RecordBatch, Usage);

async fn join_here(node: &Node, plan: &PartPlan, part: &RecordBatch, memory: &Memory) -> Result<PartAnswer> {
    let times = part
        .column_by_name(&plan.time_column)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| {
            CoreError::InvalidArgument(format!("a part's spine lacks its time column {}", plan.time_column))
        })?
        .clone();
    let (mut phases, mut usage) = (Phases::default(), Usage::default());
    let sources = plan.sources();
    let answer = point_in_time(&node.offline, part, &times, &sources, memory, &mut phases, &mut usage).await?;
    // Only what the join adds: the receiving node has the spine's columns.
    let added: Vec<usize> = (part.num_columns()..answer.num_columns()).collect();
    Ok((answer.project(&added)?, usage))
}

/// Asks the node at `addr` to join `part`, and reads its answer whole.
async fn join_there(node: &Node, addr: &str, plan: &[u8], part: &RecordBatch) -> Result<PartAnswer> {
    let mut spine = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut spine, &part.schema())?;
    writer.write(part)?;
    writer.finish()?;
    drop(writer);
    // A long stream of its own: on a shared connection it could stall the Raft traffic.
    let channel = node.peers.own_channel(addr).map_err(CoreError::Unavailable)?;
    let mut client = OfflineServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let request = JoinPartRequest { plan: plan.to_vec(), spine };
    let failed = |s: tonic::Status| CoreError::Unavailable(format!("{addr}: {}", s.message()));
    let mut stream = client.join_part(request).await.map_err(failed)?.into_inner();
    let (mut bytes, mut usage) = (Vec::new(), Usage::default());
    while let Some(chunk) = stream.message().await.map_err(failed)? {
        if let Some(p) = chunk.progress.filter(|_| !chunk.data.is_empty()) {
            usage = Usage { peak_bytes: p.peak_memory_bytes, spilled_bytes: p.spilled_bytes, partitions: p.partitions };
        }
        bytes.extend(chunk.data);
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((arrow_select::concat::concat_batches(&schema, &batches)?, usage))
}

/// A part asked of this node: `plan` and `spine` as `join_there` sent them.
pub async fn join_part(node: &Node, plan: &[u8], spine: Vec<u8>) -> Result<(RecordBatch, Usage)> {
    crate::failpoint::delay("join-part").await;
    let plan: PartPlan = decode(plan)?;
    if plan.store != node.offline.location() {
        return Err(CoreError::Unavailable(format!(
            "this node's offline store is {}, not {}: it cannot read the part's files",
            node.offline.location(),
            plan.store
        ))
        .into());
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(spine), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let part = arrow_select::concat::concat_batches(&schema, &batches)?;
    join_here(node, &plan, &part, &node.config.retrieval_memory()?).await
}
