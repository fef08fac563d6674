//! Historical retrieval requests: read the spine, find the feature set versions and their
//! manifest files, run the point-in-time join, answer with Arrow IPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use bytes::Bytes;
use quiver_core::access::personal;
use quiver_core::offline::{Dataset, SpineFormat};
use quiver_core::online::FeatureSelection;
use quiver_core::table::TableRef;
use quiver_core::{Error as CoreError, ValueType};
use quiver_offline::files::write_batch;
use quiver_offline::retrieval::{Phases, Source, point_in_time};
use quiver_offline::spill::Usage;
use quiver_offline::spine::{Spine, read_spine};

use crate::auth::Call;
use crate::node::Node;
use crate::offline::parts;
use quiver_store::command::MetaCommand;
use quiver_store::error::Result;
use quiver_store::meta::MetaState;
use quiver_store::records::Summaries;

/// A feature set version and the (feature index, output name) pairs asked of it.
type SetColumns = (String, u32, Vec<(usize, String)>);

pub struct HistoryRequest {
    /// Who asks: personal features need their grant, and their read goes on record.
    pub call: Call,
    pub project: String,
    pub selection: FeatureSelection,
    pub spine: Bytes,
    pub spine_format: SpineFormat,
    pub timestamp_column: String,
    pub short_names: bool,
    /// Store the answer as a training dataset of this name.
    pub save_as: Option<String>,
    /// The spine's file name, for the dataset's lineage.
    pub spine_name: String,
}

/// Output column names: `set:feature`, or `feature` when asked and no other set uses it.
fn output_names(refs: &[quiver_core::registry::ResolvedFeature], short: bool) -> Vec<String> {
    refs.iter()
        .map(|f| {
            let name = f.reference.rsplit(':').next().unwrap_or(&f.reference).to_string();
            let unique = refs.iter().filter(|g| g.reference.rsplit(':').next() == Some(name.as_str())).count() == 1;
            if short && unique { name } else { f.reference.clone() }
        })
        .collect()
}

/// A training set, or a part of one, as a node answers it.
#[derive(Debug)]
pub struct Answer {
    pub batch: RecordBatch,
    /// Where the time went, phase by phase.
    pub phases: Phases,
    /// What its joins held and spilled (the most one node held).
    pub usage: Usage,
    /// Nodes that joined a part of it.
    pub nodes: u32,
}

/// Joins the spine with every feature asked for, point in time (split over the cluster
/// when it is large, `parts`), and saves the answer as a dataset when asked.
pub async fn build_training_set(node: &Node, req: HistoryRequest) -> Result<Answer> {
    crate::failpoint::delay("training-set").await;
    let (mut phases, mut usage) = (Phases::default(), Usage::default());
    let (batch, lineage, nodes) = join(node, &req, &mut phases, &mut usage).await?;
    if let Some(name) = &req.save_as {
        let started = Instant::now();
        save(node, &req, name, &batch, lineage).await?;
        phases.add("save", started);
    }
    Ok(Answer { batch, phases, usage, nodes })
}

/// What a saved dataset records about how it was made.
struct Lineage {
    features: Vec<String>,
    /// Output column, the `set:feature` its statistics are kept under, and its type.
    columns: Vec<(String, String, ValueType)>,
    feature_sets: Vec<String>,
    spine_from: i64,
    spine_to: i64,
}

async fn save(node: &Node, req: &HistoryRequest, name: &str, batch: &RecordBatch, lineage: Lineage) -> Result<()> {
    if node.meta.caught_up().await?.datasets.contains_key(&(req.project.clone(), name.to_string())) {
        return Err(CoreError::InvalidArgument(format!(
            "dataset '{name}' exists in project {}; pick another name",
            req.project
        ))
        .into());
    }
    let path = format!("datasets/{}/{name}.parquet", req.project);
    let bytes = write_batch(&node.offline, &path, batch).await?;
    let dataset = Dataset {
        name: name.to_string(),
        path,
        vector: match &req.selection {
            FeatureSelection::Vector(v) => Some(v.clone()),
            FeatureSelection::Refs(_) => None,
        },
        features: lineage.features,
        feature_sets: lineage.feature_sets,
        spine: req.spine_name.clone(),
        rows: batch.num_rows() as u64,
        bytes,
        spine_from: lineage.spine_from,
        spine_to: lineage.spine_to,
        created_at: 0,
    };
    let typed: Vec<(String, ValueType)> = lineage.columns.iter().map(|(c, _, ty)| (c.clone(), *ty)).collect();
    let summaries = quiver_offline::stats::summarize(std::slice::from_ref(batch), &typed)?;
    let columns = lineage.columns.into_iter().zip(summaries).map(|((_, key, _), (_, s))| (key, s)).collect();
    let stats = Summaries { rows: batch.num_rows() as u64, columns };
    node.proposer.write_meta(MetaCommand::SaveDataset { project: req.project.clone(), dataset, stats }).await?;
    Ok(())
}

async fn join(
    node: &Node,
    req: &HistoryRequest,
    phases: &mut Phases,
    usage: &mut Usage,
) -> Result<(RecordBatch, Lineage, u32)> {
    let started = Instant::now();
    // Every file committed before the request, through any node, takes part.
    let state: Arc<MetaState> = node.meta.caught_up().await?;
    let project = state.registry.project(&req.project)?;
    let resolved = project.select(&req.selection)?;
    req.call.caller.check_pii(project, &resolved)?;
    req.call.record_personal_read(&node.audit, node.id, || personal(project, &resolved)).await?;
    let names = output_names(&resolved, req.short_names);
    // Group features by feature set version, in order of first appearance.
    let mut groups: Vec<SetColumns> = Vec::new();
    for (f, name) in resolved.iter().zip(names.iter().cloned()) {
        match groups.iter_mut().find(|(s, v, _)| *s == f.set && *v == f.version) {
            Some(group) => group.2.push((f.index, name)),
            None => groups.push((f.set.clone(), f.version, vec![(f.index, name)])),
        }
    }
    let mut key_types = BTreeMap::new();
    for (set, version, _) in &groups {
        let fs = project.feature_set(set, Some(*version))?;
        for k in &project.entity(&fs.entity)?.join_keys {
            key_types.insert(k.name.clone(), k.ty);
        }
    }
    let read = read_spine(req.spine.clone(), req.spine_format, &req.timestamp_column, &key_types)?;
    let Spine { batch: spine, times: spine_ts } = &read;
    phases.add("spine", started);
    let lineage = Lineage {
        features: resolved.iter().map(|f| f.reference.clone()).collect(),
        columns: resolved
            .iter()
            .zip(&names)
            .map(|(f, name)| {
                let feature = f.reference.rsplit(':').next().unwrap_or_default();
                (name.clone(), format!("{}:{feature}", f.set), f.ty)
            })
            .collect(),
        feature_sets: groups.iter().map(|(s, v, _)| format!("{s}@{v}")).collect(),
        spine_from: spine_ts.values().iter().min().copied().unwrap_or_default(),
        spine_to: spine_ts.values().iter().max().copied().unwrap_or_default(),
    };
    let mut sources = Vec::new();
    for (set, version, features) in groups {
        let fs = project.feature_set(&set, Some(version))?;
        let table = TableRef::new(&project.name, fs);
        let files = state.manifest.get(&table).cloned().unwrap_or_default();
        sources.push(Source { entity: project.entity(&fs.entity)?, fs, files, features, key_hashes: None });
    }
    let helpers = parts::helpers(node, &state, spine.num_rows());
    if !helpers.is_empty() {
        let time_column = &req.timestamp_column;
        let (batch, nodes) =
            parts::point_in_time_split(node, &helpers, &read, time_column, &sources, phases, usage).await?;
        return Ok((batch, lineage, nodes));
    }
    let memory = node.config.retrieval_memory()?;
    let batch = point_in_time(&node.offline, spine, spine_ts, &sources, &memory, phases, usage).await?;
    Ok((batch, lineage, 1))
}

/// The answer as one Arrow IPC stream cut into messages of about `bytes` each, made one at
/// a time as they are sent: the schema, then slices of the answer in spine order, then the
/// end of the stream. The answer is never copied whole.
pub struct IpcMessages<'a> {
    batch: &'a RecordBatch,
    writer: Option<arrow_ipc::writer::StreamWriter<Vec<u8>>>,
    rows_per_message: usize,
    /// Room for a message, so that its buffer is not grown (and copied) as it is written.
    capacity: usize,
    next_row: usize,
    started: bool,
}

impl<'a> IpcMessages<'a> {
    pub fn new(batch: &'a RecordBatch, bytes: usize) -> IpcMessages<'a> {
        let row_bytes = batch.get_array_memory_size() / batch.num_rows().max(1);
        let rows_per_message = (bytes / row_bytes.max(1)).max(1);
        let capacity = rows_per_message.saturating_mul(row_bytes).saturating_add(64 << 10);
        IpcMessages { batch, writer: None, rows_per_message, capacity, next_row: 0, started: false }
    }

    /// The next message's bytes; `None` after the end of the stream.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>> {
        if !self.started {
            self.started = true;
            self.writer = Some(arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &self.batch.schema())?);
        }
        let Some(writer) = self.writer.as_mut() else { return Ok(None) };
        let rows = self.rows_per_message.min(self.batch.num_rows() - self.next_row);
        if rows == 0 {
            writer.finish()?;
            let end = std::mem::take(writer.get_mut());
            self.writer = None;
            return Ok(Some(end));
        }
        writer.write(&self.batch.slice(self.next_row, rows))?;
        self.next_row += rows;
        Ok(Some(std::mem::replace(writer.get_mut(), Vec::with_capacity(self.capacity))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    fn decoded(messages: &mut IpcMessages) -> (usize, RecordBatch) {
        let mut bytes = Vec::new();
        let mut count = 0;
        while let Some(message) = messages.next_message().unwrap() {
            bytes.extend(message);
            count += 1;
        }
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().unwrap();
        (count, arrow_select::concat::concat_batches(&schema, &batches).unwrap())
    }

    #[test]
    fn the_answer_streams_in_slices_that_make_it_whole_again() {
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let batch = RecordBatch::try_from_iter([("v", values)]).unwrap();
        let (count, whole) = decoded(&mut IpcMessages::new(&batch, 8_000));
        assert_eq!(whole, batch);
        assert!(count > 5, "about 8 kB a message: {count} messages");
        let empty = RecordBatch::new_empty(batch.schema());
        let (count, none) = decoded(&mut IpcMessages::new(&empty, 8_000));
        assert_eq!((count, none.num_rows(), none.schema()), (1, 0, batch.schema()), "the schema alone");
    }
}
