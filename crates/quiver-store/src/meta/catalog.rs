//! Meta commands of one concern: the registry, the offline manifest, saved datasets and statistics records, ingests' publishing leases and sequence numbers.

use quiver_core::offline::Dataset;
use quiver_core::table::TableRef;

use super::{EXPIRED_PER_COMMIT, MetaMachine, SOURCE_RETENTION_MICROS};
use crate::codec::store;
use crate::command::{MetaCommand, Response};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::storage::{KvTree, WriteBatch};

impl MetaMachine {
    /// Applies a command of this concern (`MetaMachine::apply` sends each here by kind).
    pub(super) fn apply_catalog(
        &mut self,
        tree: &dyn KvTree,
        cmd: &MetaCommand,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<Response> {
        let response = match cmd {
            MetaCommand::ApplyDefinitions(defs) => match self.state.registry.apply(defs, leader_time) {
                Ok(changes) => Response::Applied(changes),
                Err(e) => return Ok(Response::Rejected(e)),
            },
            MetaCommand::SaveDataset { project, dataset, stats } => {
                let key = (project.clone(), dataset.name.clone());
                if self.state.datasets.contains_key(&key) {
                    let taken = format!("dataset '{}' exists in project {}; pick another name", key.1, key.0);
                    return Ok(Response::Rejected(quiver_core::Error::InvalidArgument(taken)));
                }
                batch.put(keyspace::dataset_stats(&key.0, &key.1), store(stats)?);
                self.state.datasets.insert(key, Dataset { created_at: leader_time, ..dataset.clone() });
                Response::Done
            }
            // Statistics do not touch the in-memory state: only their own keys.
            MetaCommand::RecordFileStats { table, day, path, stats } => {
                batch.put(keyspace::file_stats(table, *day, path), store(stats)?);
                return Ok(Response::Done);
            }
            MetaCommand::RecordMonitorRun { table, at, report } => {
                batch.put(keyspace::monitor_run(table, *at), store(report)?);
                return Ok(Response::Done);
            }
            MetaCommand::RecordServingStats { table, day, node, seq, stats } => {
                batch.put(keyspace::serving_stats(table, *day, *node, *seq), store(stats)?);
                return Ok(Response::Done);
            }
            MetaCommand::ReplaceFiles { table, remove, add } => {
                let files = self.state.manifest.entry(table.clone()).or_default();
                if !remove.iter().all(|p| files.iter().any(|f| &f.path == p)) {
                    return Ok(Response::Duplicate);
                }
                files.retain(|f| !remove.contains(&f.path));
                files.push(add.clone());
                self.state.garbage.extend(remove.iter().map(|p| (p.clone(), leader_time)));
                Response::Done
            }
            MetaCommand::ForgetGarbage { paths } => {
                self.state.garbage.retain(|(p, _)| !paths.contains(p));
                Response::Done
            }
            MetaCommand::ReserveSeq { count } => {
                let start = self.state.next_seq;
                self.state.next_seq = start.saturating_add(*count);
                Response::Seq(start)
            }
            MetaCommand::CommitFiles { files, source, export } => {
                // An export range is deduplicated by its shard's mark; any other source by
                // its key, remembered for SOURCE_RETENTION_MICROS.
                match export {
                    Some(r) => {
                        if let Err(busy) = self.state.check_no_backup_cut(leader_time, "an export") {
                            return Ok(Response::Rejected(busy));
                        }
                        if self.state.export_marks.get(&r.shard).is_some_and(|m| *m >= r.from) {
                            return Ok(Response::Duplicate);
                        }
                        self.state.export_marks.insert(r.shard, r.through);
                    }
                    None => {
                        if !self.remember_source(tree, &source.0, &source.1, leader_time, batch)? {
                            return Ok(Response::Duplicate);
                        }
                    }
                }
                for (table, file) in files {
                    self.state.manifest.entry(table.clone()).or_default().push(file.clone());
                }
                Response::Done
            }
            MetaCommand::BeginPublish { id, lease_ms } => {
                if let Some((backup, until)) = &self.state.backup_cut
                    && leader_time < *until
                {
                    return Ok(Response::Rejected(quiver_core::Error::Busy {
                        reason: format!("backup {backup} is cutting the groups; the ingest publishes once it has"),
                        retry_after_ms: 200,
                    }));
                }
                let until =
                    leader_time.saturating_add(i64::try_from(*lease_ms).unwrap_or(i64::MAX).saturating_mul(1000));
                batch.put(keyspace::ingest_publishing(id), store(&until)?);
                return Ok(Response::Done);
            }
            MetaCommand::EndPublish { id } => {
                batch.delete(keyspace::ingest_publishing(id));
                return Ok(Response::Done);
            }
            other => return Err(Error::Raft(format!("catalog does not apply {other:?}"))),
        };
        self.changed = true;
        Ok(response)
    }

    /// Records source `source` of `table` at `leader_time`; false when it was committed
    /// before. Also forgets a few expired sources (deterministic: it depends only on the
    /// tree and the entry's time).
    fn remember_source(
        &mut self,
        tree: &dyn KvTree,
        table: &TableRef,
        source: &str,
        leader_time: i64,
        batch: &mut WriteBatch,
    ) -> Result<bool> {
        let key = keyspace::source(table, source);
        if self.pending_sources.contains(&key) || tree.get(&key)?.is_some() {
            return Ok(false);
        }
        let cutoff = leader_time.saturating_sub(SOURCE_RETENTION_MICROS);
        for kv in tree.scan_prefix(&[keyspace::SOURCE_EXPIRY]).take(EXPIRED_PER_COMMIT) {
            let (expiry_key, _) = kv?;
            match keyspace::split_expiry(&expiry_key) {
                Some((at, expired)) if at < cutoff => {
                    batch.delete(expired.to_vec());
                    batch.delete(expiry_key.clone());
                }
                _ => break,
            }
        }
        batch.put(keyspace::expiry(keyspace::SOURCE_EXPIRY, leader_time, &key), Vec::new());
        batch.put(key.clone(), leader_time.to_be_bytes().to_vec());
        self.pending_sources.insert(key);
        Ok(true)
    }
}
