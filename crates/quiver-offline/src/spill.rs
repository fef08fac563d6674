//! A retrieval's events, partitioned by the spine key they belong to: held in memory when
//! the retrieval's memory budget holds them all, else appended to one local file per
//! partition and read back a partition at a time, so the join holds one partition's events
//! at once whatever the size of the history (a grace hash partitioning, by dense key id).
//!
//! Spill files live in a directory of their own, removed when the retrieval ends however it
//! ends: an error, or its future dropped because the client went away.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use quiver_core::asof::EventRow;

use crate::{Error, Result};

/// How much memory a retrieval's events may take, and where they go beyond it.
#[derive(Debug, Clone)]
pub struct Memory {
    pub budget: u64,
    pub spill_dir: PathBuf,
}

impl Memory {
    /// No limit: every retrieval holds its events in memory.
    pub fn unlimited() -> Memory {
        Memory { budget: u64::MAX, spill_dir: std::env::temp_dir() }
    }
}

/// What a retrieval held at most and spilled, by its own accounting of what grows with the
/// history: decoded key columns of files being read, kept events, spill buffers, and a
/// partition's join (its events and spine rows, their sort words). The spine itself, the
/// matches (a few words per spine row) and the answer are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub peak_bytes: u64,
    pub spilled_bytes: u64,
    /// Partitions of the largest join (1: held in memory).
    pub partitions: u32,
}

impl Usage {
    /// Adds what another join (of a part, on a node of its own) held and spilled: the
    /// peak is the largest one node held, the bytes spilled are summed.
    pub fn merge(&mut self, other: &Usage) {
        self.peak_bytes = self.peak_bytes.max(other.peak_bytes);
        self.spilled_bytes += other.spilled_bytes;
        self.partitions = self.partitions.max(other.partitions);
    }
}

/// Bytes held now and at most, counted from the tasks that hold them.
#[derive(Debug, Default)]
pub struct Tracker {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Tracker {
    pub fn hold(&self, bytes: u64) {
        let now = self.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: u64) {
        self.now.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Bytes one event costs the join: its record here, the kernel's copy, its sort word.
pub const EVENT_BYTES: u64 = (size_of::<Located>() + size_of::<EventRow<u32>>() + 16) as u64;
/// Bytes one spine row costs a partition's join: its position, row and sort word.
pub const SPINE_ROW_BYTES: u64 = (4 + size_of::<quiver_core::asof::SpineRow<u32>>() + 16) as u64;
/// Partitions at most: each holds an open file and a buffer.
const MAX_PARTITIONS: u64 = 1024;
/// Names of the directories retrievals spill into.
const PREFIX: &str = "retrieval-";
/// What else in a spill dir is a node's own: ingests' staged files and downloaded sources.
pub const INGEST_PREFIX: &str = "ingest-";

/// Removes what retrievals and ingests of a process killed meanwhile left in `dir` (and
/// nothing else: it may be shared); answers how many entries went. Run before the node
/// serves.
pub fn remove_leftovers(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(spill_err(dir)(e)),
    };
    let mut removed = 0;
    let ours = |e: &std::fs::DirEntry| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(PREFIX) || name.starts_with(INGEST_PREFIX)
    };
    for entry in entries.flatten().filter(ours) {
        let path = entry.path();
        let gone = match path.is_dir() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
        gone.map_err(spill_err(&path))?;
        removed += 1;
    }
    Ok(removed)
}

/// A spilled event: key, time, sequence number, file, row.
const RECORD: usize = 4 + 8 + 8 + 4 + 4;

/// An event kept by pass 1, and where its row is: index in the file list, row in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    pub event: EventRow<u32>,
    pub file: u32,
    pub row: u32,
}

impl Located {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.event.key.to_le_bytes())?;
        out.write_all(&self.event.ts.to_le_bytes())?;
        out.write_all(&self.event.seq.to_le_bytes())?;
        out.write_all(&self.file.to_le_bytes())?;
        out.write_all(&self.row.to_le_bytes())
    }

    fn read(record: &[u8]) -> Located {
        let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().unwrap_or_default());
        let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
        let event = EventRow { key: u32_at(0), ts: u64_at(4) as i64, seq: u64_at(12) };
        Located { event, file: u32_at(20), row: u32_at(24) }
    }
}

enum Part {
    Held(Vec<Located>),
    Spilled { writer: BufWriter<File>, path: PathBuf },
}

/// Pass 1's events by partition (`key % count`).
pub struct Partitions {
    parts: Vec<Part>,
    /// Removed with everything in it when the partitions are dropped.
    dir: Option<tempfile::TempDir>,
    held: u64,
    spilled: u64,
}

pub(crate) fn spill_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spill { path: path.display().to_string(), source }
}

impl Partitions {
    /// As many partitions as it takes for each to join within `memory`'s budget, given an
    /// upper bound of the events and the spine rows: held in memory when one does.
    pub fn for_join(memory: &Memory, events: u64, spine_rows: u64) -> Result<Partitions> {
        let needed = events.saturating_mul(EVENT_BYTES).saturating_add(spine_rows.saturating_mul(SPINE_ROW_BYTES));
        if needed <= memory.budget {
            return Ok(Partitions { parts: vec![Part::Held(Vec::new())], dir: None, held: 0, spilled: 0 });
        }
        // Twice what an even split needs: keys are not spread evenly.
        let count = needed.saturating_mul(2).div_ceil(memory.budget.max(1)).clamp(2, MAX_PARTITIONS) as usize;
        let buffer = (memory.budget / 4 / count as u64).clamp(4 << 10, 64 << 10) as usize;
        std::fs::create_dir_all(&memory.spill_dir).map_err(spill_err(&memory.spill_dir))?;
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&memory.spill_dir)
            .map_err(spill_err(&memory.spill_dir))?;
        let mut parts = Vec::with_capacity(count);
        for p in 0..count {
            let path = dir.path().join(format!("{p}.events"));
            let file = File::create(&path).map_err(spill_err(&path))?;
            parts.push(Part::Spilled { writer: BufWriter::with_capacity(buffer, file), path });
        }
        Ok(Partitions { parts, dir: Some(dir), held: (buffer * count) as u64, spilled: 0 })
    }

    pub fn count(&self) -> u32 {
        self.parts.len() as u32
    }

    pub fn spills(&self) -> bool {
        self.dir.is_some()
    }

    /// Bytes held now: events in memory, or the spill buffers.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    pub fn spilled_bytes(&self) -> u64 {
        self.spilled
    }

    /// Adds the events pass 1 kept of file `file`: (event, row in the file).
    pub fn add(&mut self, file: u32, events: Vec<(EventRow<u32>, u32)>) -> Result<()> {
        let count = self.parts.len() as u32;
        for (event, row) in events {
            let located = Located { event, file, row };
            match &mut self.parts[(event.key % count) as usize] {
                Part::Held(held) => {
                    held.push(located);
                    self.held += size_of::<Located>() as u64;
                }
                Part::Spilled { writer, path } => {
                    located.write(writer).map_err(spill_err(path))?;
                    self.spilled += RECORD as u64;
                }
            }
        }
        Ok(())
    }

    /// Takes partition `p`'s events, in the order they were added; a spilled partition's
    /// file is read back and removed.
    pub fn take(&mut self, p: u32) -> Result<Vec<Located>> {
        let part = std::mem::replace(&mut self.parts[p as usize], Part::Held(Vec::new()));
        match part {
            Part::Held(held) => {
                self.held -= (held.len() * size_of::<Located>()) as u64;
                Ok(held)
            }
            Part::Spilled { writer, path } => {
                let mut file = writer.into_inner().map_err(|e| spill_err(&path)(e.into_error()))?;
                file.flush().map_err(spill_err(&path))?;
                drop(file);
                let mut bytes = Vec::new();
                File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(spill_err(&path))?;
                std::fs::remove_file(&path).map_err(spill_err(&path))?;
                Ok(bytes.chunks_exact(RECORD).map(Located::read).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: u32) -> Vec<(EventRow<u32>, u32)> {
        (0..n).map(|i| (EventRow { key: i * 7 % 13, ts: i64::from(i) - 5, seq: u64::from(i) * 3 }, i)).collect()
    }

    #[test]
    fn spilled_partitions_give_back_what_was_added_by_key_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory { budget: 1000, spill_dir: dir.path().join("spill") };
        let mut parts = Partitions::for_join(&memory, 100, 10).unwrap();
        assert!(parts.spills() && parts.count() > 1);
        parts.add(4, events(100)).unwrap();
        assert_eq!(parts.spilled_bytes(), 100 * RECORD as u64);
        let mut back = Vec::new();
        for p in 0..parts.count() {
            let taken = parts.take(p).unwrap();
            assert!(taken.iter().all(|l| l.event.key % parts.count() == p && l.file == 4));
            back.extend(taken);
        }
        back.sort_by_key(|l| l.row);
        let added: Vec<Located> = events(100).into_iter().map(|(event, row)| Located { event, file: 4, row }).collect();
        assert_eq!(back, added);
        drop(parts);
        assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0, "the spill dir is emptied");
        // What a killed process left is removed at the next start, and nothing else.
        let parts = Partitions::for_join(&memory, 100, 10).unwrap();
        std::mem::forget(parts);
        std::fs::write(dir.path().join("spill/other"), "kept").unwrap();
        assert_eq!(remove_leftovers(&dir.path().join("spill")).unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 1);
    }

    #[test]
    fn events_that_fit_are_held() {
        let mut parts = Partitions::for_join(&Memory::unlimited(), 100, 10).unwrap();
        assert!(!parts.spills() && parts.count() == 1);
        parts.add(0, events(10)).unwrap();
        assert_eq!(parts.held_bytes(), 10 * size_of::<Located>() as u64);
        assert_eq!(parts.take(0).unwrap().len(), 10);
        assert_eq!(parts.held_bytes(), 0);
    }
}
