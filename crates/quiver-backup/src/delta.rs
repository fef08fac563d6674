//! Incremental cuts: a group's cut stored as the keys that changed since the cut it builds on.
//!
//! A group's cut is a chain of objects (`GroupCut::objects`): the first holds a whole state
//! (`Frame::Pairs`), each later one the changes since the one before, in key order
//! (`Frame::Changes`: a key's new value, or `None` for a key that went away). `State` reads a
//! chain back as one state in key order, later objects winning; `Diff` compares a new cut's
//! pairs, as they stream in, with such a state and answers the changes to store. Both hold a
//! frame of each object at a time, never a state whole.

use std::collections::VecDeque;

use super::format::{Change, CutHeader, Frame, FrameReader, Object, ObjectReader, Place};
use crate::error::{Error, Result};
use crate::storage::KvPair;

/// One object of a chain, read a change at a time.
struct Source {
    frames: FrameReader,
    object: Object,
    buffered: VecDeque<Change>,
    /// Entries read so far, to match against the end frame.
    entries: u64,
    last: Option<Vec<u8>>,
    ended: bool,
}

impl Source {
    async fn open(place: Place<'_>, object: &Object, group: u64) -> Result<(CutHeader, Source)> {
        let mut frames = FrameReader::new(ObjectReader::open_listed(place, object).await?);
        let header = match frames.next().await? {
            Some(Frame::Header(h)) if h.group == group => h,
            other => {
                return Err(damaged(object, &format!("it does not begin with group {group}'s header: {other:?}")));
            }
        };
        let source =
            Source { frames, object: object.clone(), buffered: VecDeque::new(), entries: 0, last: None, ended: false };
        Ok((header, source))
    }

    /// The next change of this object, read when needed; `None` past its end frame.
    async fn peek(&mut self) -> Result<Option<&Change>> {
        while self.buffered.is_empty() && !self.ended {
            let changes: Vec<Change> = match self.frames.next().await? {
                Some(Frame::Pairs(pairs)) => pairs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                Some(Frame::Changes(changes)) => changes,
                Some(Frame::End { pairs }) if pairs == self.entries => {
                    self.ended = true;
                    continue;
                }
                Some(Frame::End { pairs }) => {
                    return Err(damaged(&self.object, &format!("{} entries, its end says {pairs}", self.entries)));
                }
                Some(Frame::Header(_)) => return Err(damaged(&self.object, "a second header")),
                None => return Err(damaged(&self.object, "it ends before its end frame")),
            };
            for (key, _) in &changes {
                if self.last.as_ref().is_some_and(|last| last >= key) {
                    return Err(damaged(&self.object, "its keys are out of order"));
                }
                self.last = Some(key.clone());
            }
            self.entries += changes.len() as u64;
            self.buffered.extend(changes);
        }
        Ok(self.buffered.front())
    }

    /// Takes the change `peek` showed.
    fn take(&mut self) -> Option<Change> {
        self.buffered.pop_front()
    }

    /// Nothing after the end frame, and size and checksum as the catalog says.
    async fn finish(mut self) -> Result<()> {
        if self.frames.next().await?.is_some() {
            return Err(damaged(&self.object, "frames after its end"));
        }
        self.frames.check(&self.object).await
    }
}

fn damaged(object: &Object, why: &str) -> Error {
    Error::Backup(format!("{} is damaged: {why}", object.path))
}

/// The state a chain of cut objects holds, read in key order.
pub struct State {
    /// Oldest first: a later one's change of a key wins.
    sources: Vec<Source>,
    peeked: Option<KvPair>,
}

impl State {
    /// Opens the chain `objects` of `group`'s cut; answers the header of its last object
    /// (the cut's own) too.
    pub async fn open(place: Place<'_>, objects: &[&Object], group: u64) -> Result<(CutHeader, State)> {
        let mut sources = Vec::with_capacity(objects.len());
        let mut header = None;
        for object in objects {
            let (h, source) = Source::open(place, object, group).await?;
            header = Some(h);
            sources.push(source);
        }
        let header = header.ok_or_else(|| Error::Backup(format!("group {group}'s cut names no object")))?;
        Ok((header, State { sources, peeked: None }))
    }

    /// The next pair of the state; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<KvPair>> {
        match self.peeked.take() {
            Some(pair) => Ok(Some(pair)),
            None => self.read().await,
        }
    }

    async fn peek(&mut self) -> Result<Option<&KvPair>> {
        if self.peeked.is_none() {
            self.peeked = self.read().await?;
        }
        Ok(self.peeked.as_ref())
    }

    async fn read(&mut self) -> Result<Option<KvPair>> {
        loop {
            let mut least: Option<Vec<u8>> = None;
            for source in &mut self.sources {
                if let Some((key, _)) = source.peek().await?
                    && least.as_ref().is_none_or(|l| key < l)
                {
                    least = Some(key.clone());
                }
            }
            let Some(key) = least else { return Ok(None) };
            let mut value = None;
            for source in &mut self.sources {
                if source.peek().await?.is_some_and(|(k, _)| *k == key) {
                    value = source.take().and_then(|(_, v)| v);
                }
            }
            if let Some(value) = value {
                return Ok(Some((key, value)));
            }
        }
    }

    /// Checks every object whole; call once `next` answered `None`.
    pub async fn finish(self) -> Result<()> {
        for source in self.sources {
            source.finish().await?;
        }
        Ok(())
    }
}

/// The changes from an earlier state to a new one whose pairs arrive in key order.
pub struct Diff {
    old: State,
    last: Option<Vec<u8>>,
}

impl Diff {
    pub fn new(old: State) -> Diff {
        Diff { old, last: None }
    }

    /// The changes up to the last key of `pairs`, the next pairs of the new state.
    pub async fn changes(&mut self, pairs: &[KvPair]) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for (key, value) in pairs {
            if self.last.as_ref().is_some_and(|last| last >= key) {
                return Err(Error::Backup("a group's cut sent its keys out of order".into()));
            }
            self.last = Some(key.clone());
            while let Some((old_key, _)) = self.old.peek().await?
                && old_key < key
            {
                changes.push((old_key.clone(), None));
                self.old.next().await?;
            }
            let same = match self.old.peek().await? {
                Some((old_key, old_value)) if old_key == key => {
                    let same = old_value == value;
                    self.old.next().await?;
                    same
                }
                _ => false,
            };
            if !same {
                changes.push((key.clone(), Some(value.clone())));
            }
        }
        Ok(changes)
    }

    /// Up to `max` keys of the old state past the new one's last: they went away. Empty
    /// once there are none.
    pub async fn removed(&mut self, max: usize) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        while changes.len() < max
            && let Some((key, _)) = self.old.next().await?
        {
            changes.push((key, None));
        }
        Ok(changes)
    }

    /// Checks the old state's objects whole; call once `removed` answered nothing.
    pub async fn finish(self) -> Result<()> {
        self.old.finish().await
    }
}

#[cfg(test)]
mod tests {
    use quiver_offline::store::OfflineStore;
    use std::collections::BTreeMap;

    use openraft::StoredMembership;
    use proptest::prelude::*;

    use super::*;
    use crate::format::ObjectWriter;

    type Map = BTreeMap<Vec<u8>, Vec<u8>>;

    fn header() -> CutHeader {
        CutHeader { group: 7, applied: None, membership: StoredMembership::default() }
    }

    /// Writes `frames` after a header and before an end frame counting `entries`.
    async fn object(location: &OfflineStore, path: &str, frames: Vec<Frame>, entries: u64) -> Object {
        let mut writer = ObjectWriter::create(Place::plain(location), path).await.unwrap();
        writer.write_frame(&Frame::Header(header())).await.unwrap();
        for frame in frames {
            writer.write_frame(&frame).await.unwrap();
        }
        writer.write_frame(&Frame::End { pairs: entries }).await.unwrap();
        writer.finish().await.unwrap()
    }

    async fn read_all(location: &OfflineStore, chain: &[Object]) -> Map {
        let (_, mut state) = State::open(Place::plain(location), &chain.iter().collect::<Vec<_>>(), 7).await.unwrap();
        let mut read = Map::new();
        while let Some((k, v)) = state.next().await.unwrap() {
            read.insert(k, v);
        }
        state.finish().await.unwrap();
        read
    }

    /// Stores each state of `states` in turn, the first whole and each next one as its
    /// changes from the chain so far, and reads the chain back after each.
    async fn chain_of(states: Vec<Map>) -> Vec<(Map, Map, usize)> {
        let dir = tempfile::tempdir().unwrap();
        let location = OfflineStore::open(&dir.path().display().to_string(), &Default::default()).unwrap();
        let mut chain: Vec<Object> = Vec::new();
        let mut seen = Vec::new();
        for (n, state) in states.into_iter().enumerate() {
            let pairs: Vec<KvPair> = state.clone().into_iter().collect();
            let (frames, entries) = match chain.is_empty() {
                true => (pairs.chunks(3).map(|c| Frame::Pairs(c.to_vec())).collect::<Vec<_>>(), pairs.len()),
                false => {
                    let (_, old) =
                        State::open(Place::plain(&location), &chain.iter().collect::<Vec<_>>(), 7).await.unwrap();
                    let mut diff = Diff::new(old);
                    let mut changes = Vec::new();
                    // In chunks, as a cut streams in.
                    for chunk in pairs.chunks(2) {
                        changes.extend(diff.changes(chunk).await.unwrap());
                    }
                    loop {
                        let gone = diff.removed(2).await.unwrap();
                        if gone.is_empty() {
                            break;
                        }
                        changes.extend(gone);
                    }
                    diff.finish().await.unwrap();
                    let entries = changes.len();
                    (changes.chunks(3).map(|c| Frame::Changes(c.to_vec())).collect(), entries)
                }
            };
            chain.push(object(&location, &format!("{n}.cut"), frames, entries as u64).await);
            seen.push((state, read_all(&location, &chain).await, entries));
        }
        seen
    }

    fn state() -> impl Strategy<Value = Map> {
        prop::collection::btree_map(prop::collection::vec(0u8..6, 0..3), prop::collection::vec(0u8..3, 0..2), 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A chain of changes reads back as the last state stored, whatever changed
        /// between states: keys added, changed, removed, or all of them.
        #[test]
        fn a_chain_reads_back_as_the_state_last_stored(states in prop::collection::vec(state(), 1..5)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            for (stored, read, _) in runtime.block_on(chain_of(states)) {
                prop_assert_eq!(stored, read);
            }
        }
    }

    #[tokio::test]
    async fn an_unchanged_state_stores_no_change_and_one_change_stores_one() {
        let whole: Map = (0u16..100).map(|k| (k.to_be_bytes().to_vec(), vec![1])).collect();
        let mut changed = whole.clone();
        changed.insert(50u16.to_be_bytes().to_vec(), vec![2]);
        let entries: Vec<usize> = chain_of(vec![whole.clone(), whole, changed]).await.iter().map(|s| s.2).collect();
        assert_eq!(entries, vec![100, 0, 1]);
    }

    #[tokio::test]
    async fn a_chain_with_an_object_out_of_order_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let location = OfflineStore::open(&dir.path().display().to_string(), &Default::default()).unwrap();
        let pairs = vec![(vec![2], vec![0]), (vec![1], vec![0])];
        let object = object(&location, "x.cut", vec![Frame::Pairs(pairs)], 2).await;
        let (_, mut state) = State::open(Place::plain(&location), &[&object], 7).await.unwrap();
        let error = state.next().await.unwrap_err().to_string();
        assert!(error.contains("x.cut is damaged: its keys are out of order"), "{error}");
    }
}
