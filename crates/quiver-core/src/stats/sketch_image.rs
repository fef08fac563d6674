//! Serde for the DataSketches types, which have no serde support of their own: each is stored as
//! its compact binary image (the format every DataSketches implementation reads), inside whatever
//! format the summary is written in. Use as `#[serde(with = "sketch_image")]`.

use datasketches::frequencies::FrequentItemsSketch;
use datasketches::hll::HllSketch;
use datasketches::tdigest::TDigestMut;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sketch with a binary image.
pub(crate) trait SketchImage: Sized {
    /// Names the sketch in a decoding error.
    const NAME: &'static str;
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, datasketches::error::Error>;
}

impl SketchImage for TDigestMut {
    const NAME: &'static str = "t-digest";
    fn encode(&self) -> Vec<u8> {
        // Serializing compresses the digest first, which needs `&mut`.
        self.clone().serialize()
    }
    fn decode(bytes: &[u8]) -> Result<Self, datasketches::error::Error> {
        TDigestMut::deserialize(bytes)
    }
}

impl SketchImage for HllSketch {
    const NAME: &'static str = "HyperLogLog sketch";
    fn encode(&self) -> Vec<u8> {
        self.serialize()
    }
    fn decode(bytes: &[u8]) -> Result<Self, datasketches::error::Error> {
        HllSketch::deserialize(bytes)
    }
}

impl SketchImage for FrequentItemsSketch<String> {
    const NAME: &'static str = "frequent-items sketch";
    fn encode(&self) -> Vec<u8> {
        self.serialize()
    }
    fn decode(bytes: &[u8]) -> Result<Self, datasketches::error::Error> {
        FrequentItemsSketch::deserialize(bytes)
    }
}

pub(crate) fn serialize<T: SketchImage, S: Serializer>(sketch: &T, serializer: S) -> Result<S::Ok, S::Error> {
    sketch.encode().serialize(serializer)
}

pub(crate) fn deserialize<'de, T: SketchImage, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    T::decode(&bytes).map_err(|e| D::Error::custom(format!("corrupt {} in feature summary: {e}", T::NAME)))
}
