//! What a retrieval may hold, and where its events go when its spine is too large for it.
//!
//! A join folds its events into its spine's slots as they are read (`SpineSlots`): it holds
//! no event, so the history's size does not matter, only the spine's. When the spine's slots
//! take more than half the budget, the spine rows and the events are partitioned by dense
//! key id, the events appended to one local file per partition, and each partition joined
//! in turn from its file (a grace hash join), holding one partition's slots at once.
//!
//! Spill files live in a directory of their own, removed when the retrieval ends however it
//! ends: an error, or its future dropped because the client went away.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use quiver_core::asof::{EventRow, SpineSlots};

use crate::{Error, Result};

/// How much memory a retrieval's joins may take, and where their events go beyond it.
#[derive(Debug, Clone)]
pub struct Memory {
    pub budget: u64,
    pub spill_dir: PathBuf,
}

impl Memory {
    /// No limit: no join spills.
    pub fn unlimited() -> Memory {
        Memory { budget: u64::MAX, spill_dir: std::env::temp_dir() }
    }
}

/// What a retrieval held at most and spilled, by its own accounting: decoded columns and
/// events of the files being read, the feature values kept of matches, spill buffers, and
/// the slots of the spine rows being joined. The spine itself, the matches (a few words per
/// spine row) and the answer are not counted.
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

    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// Bytes one spine row costs the join: its key id and position, and its slot.
pub const SPINE_ROW_BYTES: u64 = 8 + SpineSlots::ROW_BYTES;
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

/// One partition's spill file, being written.
struct Spill {
    writer: BufWriter<File>,
    path: PathBuf,
}

/// Pass 1's events by partition (`key % count`), spilled.
pub struct Partitions {
    parts: Vec<Option<Spill>>,
    /// Removed with everything in it when the partitions are dropped.
    _dir: tempfile::TempDir,
    held: u64,
    spilled: u64,
}

pub(crate) fn spill_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spill { path: path.display().to_string(), source }
}

impl Partitions {
    /// How many partitions a join of `spine_rows` needs within `memory`'s budget: 1 (it
    /// spills nothing) when their slots take at most half of it; the rest is for the files
    /// being read.
    pub fn needed(memory: &Memory, spine_rows: u64) -> u32 {
        let slots = spine_rows.saturating_mul(SPINE_ROW_BYTES);
        if slots <= memory.budget / 2 {
            return 1;
        }
        // A quarter of the budget each if keys spread evenly, which they need not.
        slots.saturating_mul(4).div_ceil(memory.budget.max(1)).clamp(2, MAX_PARTITIONS) as u32
    }

    /// `count` empty partitions, in a spill directory of their own.
    pub fn create(memory: &Memory, count: u32) -> Result<Partitions> {
        let buffer = (memory.budget / 4 / u64::from(count)).clamp(4 << 10, 64 << 10) as usize;
        std::fs::create_dir_all(&memory.spill_dir).map_err(spill_err(&memory.spill_dir))?;
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&memory.spill_dir)
            .map_err(spill_err(&memory.spill_dir))?;
        let mut parts = Vec::with_capacity(count as usize);
        for p in 0..count {
            let path = dir.path().join(format!("{p}.events"));
            let file = File::create(&path).map_err(spill_err(&path))?;
            parts.push(Some(Spill { writer: BufWriter::with_capacity(buffer, file), path }));
        }
        Ok(Partitions { parts, _dir: dir, held: (buffer * count as usize) as u64, spilled: 0 })
    }

    pub fn count(&self) -> u32 {
        self.parts.len() as u32
    }

    /// Bytes held: the spill buffers.
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
            let spill = self.parts[(event.key % count) as usize].as_mut().ok_or_else(|| {
                Error::Core(quiver_core::Error::Internal("a partition was added to once read".into()))
            })?;
            Located { event, file, row }.write(&mut spill.writer).map_err(spill_err(&spill.path))?;
            self.spilled += RECORD as u64;
        }
        Ok(())
    }

    /// Gives partition `p`'s events to `each`, in the order they were added, reading its
    /// file a buffer at a time; then removes the file.
    pub fn drain(&mut self, p: u32, mut each: impl FnMut(Located)) -> Result<()> {
        let Some(Spill { writer, path }) = self.parts[p as usize].take() else { return Ok(()) };
        let file = writer.into_inner().map_err(|e| spill_err(&path)(e.into_error()))?;
        drop(file);
        let mut reader = std::io::BufReader::new(File::open(&path).map_err(spill_err(&path))?);
        let mut record = [0u8; RECORD];
        loop {
            match reader.read_exact(&mut record) {
                Ok(()) => each(Located::read(&record)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(spill_err(&path)(e)),
            }
        }
        std::fs::remove_file(&path).map_err(spill_err(&path))
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
        let count = Partitions::needed(&memory, 10);
        assert!(count > 1);
        let mut parts = Partitions::create(&memory, count).unwrap();
        parts.add(4, events(100)).unwrap();
        assert_eq!(parts.spilled_bytes(), 100 * RECORD as u64);
        let mut back = Vec::new();
        for p in 0..parts.count() {
            let mut taken = Vec::new();
            parts.drain(p, |l| taken.push(l)).unwrap();
            assert!(taken.iter().all(|l| l.event.key % parts.count() == p && l.file == 4));
            back.extend(taken);
        }
        back.sort_by_key(|l| l.row);
        let added: Vec<Located> = events(100).into_iter().map(|(event, row)| Located { event, file: 4, row }).collect();
        assert_eq!(back, added);
        drop(parts);
        assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0, "the spill dir is emptied");
        // What a killed process left is removed at the next start, and nothing else.
        let parts = Partitions::create(&memory, count).unwrap();
        std::mem::forget(parts);
        std::fs::write(dir.path().join("spill/other"), "kept").unwrap();
        assert_eq!(remove_leftovers(&dir.path().join("spill")).unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 1);
    }

    #[test]
    fn a_spine_whose_slots_fit_half_the_budget_needs_no_partition() {
        assert_eq!(Partitions::needed(&Memory::unlimited(), u64::from(u32::MAX)), 1);
        let memory = Memory { budget: 100 * SPINE_ROW_BYTES, spill_dir: std::env::temp_dir() };
        assert_eq!(Partitions::needed(&memory, 50), 1);
        assert_eq!(Partitions::needed(&memory, 51), 3);
    }
}
