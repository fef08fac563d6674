//! Encrypted backups: every object of a backup made with a key (`backup create
//! --encrypt-key FILE`) is sealed with AES-256-GCM, so a copy of the location holds no
//! readable value. An object is a header (`QVE1` and a random 96-bit nonce base) and chunks
//! of at most 64 KiB of plaintext, each stored as its length (`u32` LE) and its ciphertext
//! with the tag; chunk `i`'s nonce is the base with `i` added into its last eight bytes, and
//! its associated data says `i` and whether it is the last, so chunks cannot be reordered,
//! dropped or cut off unnoticed. The catalog, which holds no values, stays readable and names
//! the key by a check value (a hash of the key), so a wrong key is told as such before any
//! object is read.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// What every key file holds: `qvk_` and 64 hex digits.
const PREFIX: &str = "qvk_";
const MAGIC: &[u8; 4] = b"QVE1";
const HEADER: usize = MAGIC.len() + NONCE_LEN;
/// Plaintext per chunk, at most.
const CHUNK: usize = 64 << 10;
const TAG: usize = 16;

/// A backup key, read from its file.
#[derive(Clone)]
pub struct BackupKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.check())
    }
}

impl BackupKey {
    /// A new key's file contents.
    pub fn generate() -> Result<String> {
        crate::token::random_hex(PREFIX)
    }

    pub fn parse(text: &str) -> Result<BackupKey> {
        let hex = text.trim().strip_prefix(PREFIX).unwrap_or_default();
        let mut bytes = [0u8; 32];
        let valid = hex.len() == 64
            && hex.as_bytes().chunks(2).zip(bytes.iter_mut()).all(|(pair, byte)| {
                std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()).map(|b| *byte = b).is_some()
            });
        if !valid {
            return Err(Error::Backup(
                "not a backup key (qvk_ and 64 hex digits, as `quiverctl backup new-key FILE` writes it)".into(),
            ));
        }
        Ok(BackupKey { bytes })
    }

    pub fn read(path: &Path) -> Result<BackupKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        BackupKey::parse(&text).map_err(|e| Error::Backup(format!("{}: {e}", path.display())))
    }

    /// The raw key, as it crosses to the node that makes the backup.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<BackupKey> {
        let bytes = bytes.try_into().map_err(|_| Error::Backup(format!("a backup key of {} bytes", bytes.len())))?;
        Ok(BackupKey { bytes })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What the catalog names the key by: the first 16 bytes of a SHA-256 of it, in hex.
    pub fn check(&self) -> String {
        let hash = digest(&SHA256, &[b"quiver backup key ".as_slice(), &self.bytes].concat());
        hash.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[allow(clippy::expect_used, reason = "a 32-byte key is always a valid AES-256 key")]
    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("a 256-bit key"))
    }
}

fn nonce(base: &[u8; NONCE_LEN], index: u64) -> Nonce {
    let mut bytes = *base;
    let tail = u64::from_be_bytes(bytes[4..].try_into().unwrap_or_default()).wrapping_add(index);
    bytes[4..].copy_from_slice(&tail.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aad(index: u64, last: bool) -> [u8; 9] {
    let mut aad = [0u8; 9];
    aad[..8].copy_from_slice(&index.to_be_bytes());
    aad[8] = u8::from(last);
    aad
}

/// Seals one object's plaintext, chunk by chunk.
pub struct Sealer {
    key: LessSafeKey,
    base: [u8; NONCE_LEN],
    index: u64,
    pending: Vec<u8>,
}

impl Sealer {
    /// A sealer and the header its object starts with.
    pub fn new(key: &BackupKey) -> Result<(Sealer, Vec<u8>)> {
        let mut base = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut base).map_err(|_| Error::Backup("the system's random source failed".into()))?;
        let header = [MAGIC.as_slice(), &base].concat();
        Ok((Sealer { key: key.aead(), base, index: 0, pending: Vec::new() }, header))
    }

    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
        let mut chunk = plain.to_vec();
        let (nonce, aad) = (nonce(&self.base, self.index), aad(self.index, last));
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(aad), &mut chunk)
            .map_err(|_| Error::Backup("sealing a backup chunk failed".into()))?;
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(&chunk);
        self.index += 1;
        Ok(())
    }

    /// The stored bytes of every whole chunk `data` completes.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        // Whole chunks only: the last is always shorter, which is how a reader knows it.
        while self.pending.len() >= CHUNK {
            let rest = self.pending.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.seal(&chunk, false, &mut out)?;
        }
        Ok(out)
    }

    /// The stored bytes of the last chunk (what is pending, maybe nothing).
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let last = std::mem::take(&mut self.pending);
        self.seal(&last, true, &mut out)?;
        Ok(out)
    }
}

/// Opens one object's stored bytes, chunk by chunk, as they stream in.
pub struct Opener {
    key: LessSafeKey,
    base: Option<[u8; NONCE_LEN]>,
    index: u64,
    stored: Vec<u8>,
    done: bool,
}

impl Opener {
    pub fn new(key: &BackupKey) -> Opener {
        Opener { key: key.aead(), base: None, index: 0, stored: Vec::new(), done: false }
    }

    /// The plaintext of every whole chunk `data` completes; `path` names the object.
    pub fn push(&mut self, data: &[u8], path: &str) -> Result<Vec<u8>> {
        let damaged = |why: &str| Error::Backup(format!("{path}: {why}"));
        self.stored.extend_from_slice(data);
        let mut plain = Vec::new();
        if self.base.is_none() {
            if self.stored.len() < HEADER {
                return Ok(plain);
            }
            if &self.stored[..MAGIC.len()] != MAGIC {
                return Err(damaged("not an encrypted backup object"));
            }
            self.base = Some(self.stored[MAGIC.len()..HEADER].try_into().unwrap_or_default());
            self.stored.drain(..HEADER);
        }
        let base = self.base.unwrap_or_default();
        while self.stored.len() >= 4 {
            let len = u32::from_le_bytes(self.stored[..4].try_into().unwrap_or_default()) as usize;
            if !(TAG..=CHUNK + TAG).contains(&len) {
                return Err(damaged("damaged (a chunk of impossible length)"));
            }
            if self.stored.len() < 4 + len {
                break;
            }
            if self.done {
                return Err(damaged("damaged (data after its last chunk)"));
            }
            let mut chunk: Vec<u8> = self.stored.drain(..4 + len).skip(4).collect();
            // Only the last chunk may be short; try it as a middle one first.
            let last = len < CHUNK + TAG;
            let opened = self.key.open_in_place(nonce(&base, self.index), Aad::from(aad(self.index, last)), &mut chunk);
            let opened = opened.map_err(|_| damaged("cannot be decrypted: a wrong key, or the object was altered"))?;
            plain.extend_from_slice(opened);
            self.done = last;
            self.index += 1;
        }
        Ok(plain)
    }

    /// Refuses an object that ended before its last chunk.
    pub fn finish(&self, path: &str) -> Result<()> {
        match self.done && self.stored.is_empty() {
            true => Ok(()),
            false => Err(Error::Backup(format!("{path}: cut off before its last chunk"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &BackupKey, plain: &[u8], step: usize) -> Vec<u8> {
        let (mut sealer, mut out) = Sealer::new(key).unwrap();
        for piece in plain.chunks(step.max(1)) {
            out.extend(sealer.push(piece).unwrap());
        }
        out.extend(sealer.finish().unwrap());
        out
    }

    fn opened(key: &BackupKey, stored: &[u8], step: usize) -> Result<Vec<u8>> {
        let mut opener = Opener::new(key);
        let mut out = Vec::new();
        for piece in stored.chunks(step.max(1)) {
            out.extend(opener.push(piece, "o")?);
        }
        opener.finish("o")?;
        Ok(out)
    }

    #[test]
    fn objects_round_trip_in_any_pieces_and_only_with_their_key() {
        let key = BackupKey::parse(&BackupKey::generate().unwrap()).unwrap();
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let stored = sealed(&key, &plain, 10_000);
            assert!(size < 64 || !stored.windows(64).any(|w| w == &plain[..64]), "no plaintext stored");
            assert_eq!(opened(&key, &stored, 7_001).unwrap(), plain, "{size} bytes");
            let other = BackupKey::parse(&BackupKey::generate().unwrap()).unwrap();
            assert!(opened(&other, &stored, 7_001).unwrap_err().to_string().contains("wrong key"));
            assert_ne!(key.check(), other.check());
        }
    }

    #[test]
    fn a_cut_reordered_or_altered_object_is_refused() {
        let key = BackupKey::parse(&BackupKey::generate().unwrap()).unwrap();
        let stored = sealed(&key, &vec![7u8; 3 * CHUNK], CHUNK);
        let chunk = 4 + CHUNK + TAG;
        let cut = &stored[..HEADER + 2 * chunk];
        assert!(opened(&key, cut, 1000).unwrap_err().to_string().contains("cut off"));
        let mut swapped = stored.clone();
        let (a, b) = (HEADER, HEADER + chunk);
        let first: Vec<u8> = swapped[a..b].to_vec();
        swapped.copy_within(b..b + chunk, a);
        swapped[b..b + chunk].copy_from_slice(&first);
        assert!(opened(&key, &swapped, 1000).is_err(), "chunks in another order");
        let mut flipped = stored;
        flipped[HEADER + 10] ^= 1;
        assert!(opened(&key, &flipped, 1000).is_err());
        assert!(BackupKey::parse("qvk_12").is_err());
    }
}
