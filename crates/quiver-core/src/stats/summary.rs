//! The summary of one feature over some rows: what monitoring stores per feature set and day,
//! and merges on read for any date range.

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::categorical::CategoricalStats;
use super::embedding::EmbeddingStats;
use super::numeric::{HistogramBin, NumericStats};
use super::sketch_image;
use crate::value::{Value, ValueType};
use crate::{Error, Result};

/// log2 of the HyperLogLog register count: 4096 four-bit registers (about 2 KB), a relative
/// standard error of 1.6%, and exact counts up to a few hundred distinct values.
const HLL_LG_K: u8 = 12;

/// Statistics of one feature, built by [`FeatureSummary::observe`] and combined by
/// [`FeatureSummary::merge`]. Every type gets counts, nulls and a distinct estimate; beyond that
/// each type has one *distribution*, the one that quantiles, histograms, mean and drift describe:
///
/// | type                                 | distribution                         |
/// |--------------------------------------|--------------------------------------|
/// | int32, int64, float32, float64       | the values                           |
/// | timestamp                            | the values, in microseconds          |
/// | bytes, `list<int64>`, `list<string>` | the lengths                          |
/// | `list<float32>` (embeddings)         | the L2 norms; see [`EmbeddingStats`] |
/// | string, bool                         | none: value frequencies instead      |
///
/// Not `PartialEq`: the sketches inside have no equality; compare answers or encoded bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureSummary {
    value_type: ValueType,
    count: u64,
    nulls: u64,
    #[serde(with = "sketch_image")]
    distinct: HllSketch,
    body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Body {
    Numeric(NumericStats),
    Categorical(CategoricalStats),
    Lengths(NumericStats),
    Embedding(EmbeddingStats),
}

impl FeatureSummary {
    /// An empty summary for a feature of type `value_type`.
    pub fn new(value_type: ValueType) -> Self {
        use ValueType as T;
        let body = match value_type {
            T::Int32 | T::Int64 | T::Float32 | T::Float64 | T::Timestamp => Body::Numeric(NumericStats::default()),
            T::Bool | T::String => Body::Categorical(CategoricalStats::default()),
            T::Bytes | T::Int64List | T::StringList => Body::Lengths(NumericStats::default()),
            T::Float32List => Body::Embedding(EmbeddingStats::default()),
        };
        #[allow(
            clippy::expect_used,
            reason = "a constant argument the sketch takes, checked by every test that builds one"
        )]
        let distinct = HllSketch::new(HLL_LG_K, HllType::Hll4).expect("HLL_LG_K is within 4..=21");
        Self { value_type, count: 0, nulls: 0, distinct, body }
    }

    /// Adds one value. A non-null value must have the summary's type exactly: stored values are
    /// already conformed to their feature's type, so anything else is a caller's mistake.
    pub fn observe(&mut self, value: &Value) -> Result<()> {
        let Some(ty) = value.value_type() else {
            self.count += 1;
            self.nulls += 1;
            return Ok(());
        };
        if ty != self.value_type {
            let expected = self.value_type;
            return Err(Error::InvalidArgument(format!("a summary of {expected} values cannot take a {ty} value")));
        }
        match (&mut self.body, value) {
            (Body::Numeric(s), Value::Int32(v)) => s.observe(f64::from(*v)),
            (Body::Numeric(s), Value::Int64(v) | Value::Timestamp(v)) => s.observe(*v as f64),
            (Body::Numeric(s), Value::Float32(v)) => s.observe(f64::from(*v)),
            (Body::Numeric(s), Value::Float64(v)) => s.observe(*v),
            (Body::Categorical(s), Value::String(v)) => s.observe(v),
            (Body::Categorical(s), Value::Bool(v)) => s.observe(if *v { "true" } else { "false" }),
            (Body::Lengths(s), Value::Bytes(v)) => s.observe(v.len() as f64),
            (Body::Lengths(s), Value::Int64List(v)) => s.observe(v.len() as f64),
            (Body::Lengths(s), Value::StringList(v)) => s.observe(v.len() as f64),
            (Body::Embedding(s), Value::Float32List(v)) => s.observe(v),
            (_, _) => return Err(self.corrupt()),
        }
        self.count += 1;
        self.distinct.update(raw_bytes::from_slice(&identity(value).to_le_bytes()));
        Ok(())
    }

    /// Adds `other`'s rows to this summary. Both must describe the same value type; on error
    /// this summary is unchanged.
    pub fn merge(&mut self, other: &FeatureSummary) -> Result<()> {
        if self.value_type != other.value_type {
            return Err(Error::InvalidArgument(format!(
                "cannot merge a summary of {} values into one of {} values",
                other.value_type, self.value_type
            )));
        }
        match (&mut self.body, &other.body) {
            (Body::Numeric(a), Body::Numeric(b)) | (Body::Lengths(a), Body::Lengths(b)) => a.merge(b),
            (Body::Categorical(a), Body::Categorical(b)) => a.merge(b),
            (Body::Embedding(a), Body::Embedding(b)) => a.merge(b),
            (_, _) => return Err(self.corrupt()),
        }
        self.count += other.count;
        self.nulls += other.nulls;
        #[allow(
            clippy::expect_used,
            reason = "a constant argument the sketch takes, checked by every test that builds one"
        )]
        let mut union = HllUnion::new(HLL_LG_K).expect("HLL_LG_K is within 4..=21");
        union.update(&self.distinct);
        union.update(&other.distinct);
        self.distinct = union.to_sketch(HllType::Hll4);
        Ok(())
    }

    /// Only a summary decoded from bytes that were not written by [`FeatureSummary::new`]'s
    /// rules can hold statistics of another type than its own.
    fn corrupt(&self) -> Error {
        Error::Internal(format!("corrupt feature summary: a {} summary holds other statistics", self.value_type))
    }

    pub fn value_type(&self) -> ValueType {
        self.value_type
    }

    /// Rows seen, nulls included.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// Estimated number of distinct non-null values (NaN counts as one value).
    pub fn distinct(&self) -> u64 {
        self.distinct.estimate().round() as u64
    }

    /// The distribution this summary describes (see the table on [`FeatureSummary`]).
    pub fn distribution(&self) -> Option<&NumericStats> {
        match &self.body {
            Body::Numeric(s) | Body::Lengths(s) => Some(s),
            Body::Embedding(s) => Some(s.norms()),
            Body::Categorical(_) => None,
        }
    }

    /// Value frequencies of a string or bool feature.
    pub fn categorical(&self) -> Option<&CategoricalStats> {
        match &self.body {
            Body::Categorical(s) => Some(s),
            _ => None,
        }
    }

    /// Per-dimension means, norms and lengths of a `list<float32>` feature.
    pub fn embedding(&self) -> Option<&EmbeddingStats> {
        match &self.body {
            Body::Embedding(s) => Some(s),
            _ => None,
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.distribution()?.min()
    }

    pub fn max(&self) -> Option<f64> {
        self.distribution()?.max()
    }

    pub fn mean(&self) -> Option<f64> {
        self.distribution()?.mean()
    }

    /// Population standard deviation of the distribution.
    pub fn stddev(&self) -> Option<f64> {
        self.distribution()?.stddev()
    }

    /// See [`NumericStats::quantile`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.distribution()?.quantile(q)
    }

    /// See [`NumericStats::cdf`]. `None`, not a number, when there is nothing to rank against.
    pub fn cdf(&self, x: f64) -> Option<f64> {
        self.distribution()?.cdf(x)
    }

    /// See [`NumericStats::histogram`]; empty for string and bool features.
    pub fn histogram(&self, bins: usize) -> Vec<HistogramBin> {
        self.distribution().map(|d| d.histogram(bins)).unwrap_or_default()
    }

    /// See [`CategoricalStats::top_values`]; empty for features that are not string or bool.
    pub fn top_values(&self) -> Vec<(String, u64)> {
        self.categorical().map(CategoricalStats::top_values).unwrap_or_default()
    }
}

/// A 64-bit identity of a non-null value for the distinct count. Floats are canonical, so 0.0
/// and -0.0, or NaNs with different payloads, count once.
fn identity(value: &Value) -> u64 {
    fn float(x: f64) -> u64 {
        if x.is_nan() {
            f64::NAN.to_bits()
        } else if x == 0.0 {
            0
        } else {
            x.to_bits()
        }
    }
    fn hashed(feed: impl FnOnce(&mut Xxh3)) -> u64 {
        let mut hasher = Xxh3::new();
        feed(&mut hasher);
        hasher.digest()
    }
    match value {
        Value::Null => 0,
        Value::Bool(v) => u64::from(*v),
        Value::Int32(v) => i64::from(*v) as u64,
        Value::Int64(v) | Value::Timestamp(v) => *v as u64,
        Value::Float32(v) => float(f64::from(*v)),
        Value::Float64(v) => float(*v),
        Value::String(v) => xxh3_64(v.as_bytes()),
        Value::Bytes(v) => xxh3_64(v),
        Value::Float32List(v) => hashed(|h| v.iter().for_each(|&x| h.update(&float(f64::from(x)).to_le_bytes()))),
        Value::Int64List(v) => hashed(|h| v.iter().for_each(|x| h.update(&x.to_le_bytes()))),
        // Length-prefixed, so ["ab", "c"] and ["a", "bc"] differ.
        Value::StringList(v) => hashed(|h| {
            for s in v {
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::{Rng, exact_rank};

    /// Rank error allowed for the t-digest, as in `numeric`.
    const RANK_TOLERANCE: f64 = 0.005;
    /// Three standard errors of the HyperLogLog estimate (1.04 / √4096 each).
    const DISTINCT_TOLERANCE: f64 = 3.0 * 1.04 / 64.0;

    fn summary_of(ty: ValueType, values: impl IntoIterator<Item = Value>) -> FeatureSummary {
        let mut s = FeatureSummary::new(ty);
        values.into_iter().for_each(|v| s.observe(&v).unwrap());
        s
    }

    fn assert_close_to_distinct(s: &FeatureSummary, truth: usize) {
        let error = (s.distinct() as f64 - truth as f64).abs() / truth as f64;
        assert!(error <= DISTINCT_TOLERANCE, "distinct {} vs {truth}", s.distinct());
    }

    fn assert_quantiles_within_rank_tolerance(s: &FeatureSummary, sorted: &[f64]) {
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
            let rank = exact_rank(sorted, s.quantile(q).unwrap());
            assert!((rank - q).abs() <= RANK_TOLERANCE, "q {q} has exact rank {rank}");
        }
    }

    #[test]
    fn numeric_summary_matches_exact_statistics() {
        let mut rng = Rng::new(1);
        let mut values: Vec<f64> = (0..50_000).map(|_| rng.normal() * 2.0 - 5.0).collect();
        let rows = values.iter().map(|&x| Value::Float64(x)).chain([Value::Null, Value::Null]);
        let s = summary_of(ValueType::Float64, rows);
        values.sort_by(f64::total_cmp);

        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let stddev = (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert_eq!((s.count(), s.nulls()), (50_002, 2));
        assert_eq!((s.min(), s.max()), (Some(values[0]), Some(values[values.len() - 1])));
        assert!((s.mean().unwrap() - mean).abs() < 1e-9, "mean {:?} vs {mean}", s.mean());
        assert!((s.stddev().unwrap() - stddev).abs() < 1e-9, "stddev {:?} vs {stddev}", s.stddev());
        assert_quantiles_within_rank_tolerance(&s, &values);
        assert_close_to_distinct(&s, 50_000);
    }

    #[test]
    fn merging_four_parts_equals_one_pass() {
        let mut rng = Rng::new(2);
        let values: Vec<i64> = (0..40_000).map(|_| (rng.uniform() * 10_000.0) as i64).collect();
        let rows = |chunk: &[i64]| chunk.iter().map(|&v| Value::Int64(v)).collect::<Vec<_>>();
        let whole = summary_of(ValueType::Int64, rows(&values));
        let mut merged = FeatureSummary::new(ValueType::Int64);
        for part in values.chunks(10_000) {
            merged.merge(&summary_of(ValueType::Int64, rows(part))).unwrap();
        }

        assert_eq!((merged.count(), merged.nulls()), (whole.count(), whole.nulls()));
        assert_eq!((merged.min(), merged.max()), (whole.min(), whole.max()));
        assert!((merged.mean().unwrap() - whole.mean().unwrap()).abs() < 1e-9);
        assert!((merged.stddev().unwrap() - whole.stddev().unwrap()).abs() < 1e-9);
        let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        sorted.sort_by(f64::total_cmp);
        assert_quantiles_within_rank_tolerance(&merged, &sorted);
        let truth = values.iter().collect::<std::collections::HashSet<_>>().len();
        assert_close_to_distinct(&merged, truth);
        assert_close_to_distinct(&whole, truth);
    }

    #[test]
    fn merged_top_values_equal_one_pass() {
        let words = ["red", "green", "blue", "red", "red", "blue"];
        let rows = |n: usize| (0..n).map(|i| Value::String(words[i % words.len()].into()));
        let whole = summary_of(ValueType::String, rows(600));
        let mut merged = FeatureSummary::new(ValueType::String);
        (0..4).for_each(|_| merged.merge(&summary_of(ValueType::String, rows(150))).unwrap());
        assert_eq!(merged.top_values(), whole.top_values());
        assert_eq!(whole.top_values(), vec![("red".into(), 300), ("blue".into(), 200), ("green".into(), 100)]);
        assert_eq!(merged.distinct(), 3);
    }

    #[test]
    fn summaries_of_every_type_round_trip_through_bincode() {
        let config = bincode::config::standard();
        let samples = [
            Value::Bool(true),
            Value::Int32(-3),
            Value::Int64(1 << 40),
            Value::Float32(0.5),
            Value::Float64(-2.25),
            Value::String("berlin".into()),
            Value::Bytes(vec![1, 2, 3]),
            Value::Timestamp(1_750_000_000_000_000),
            Value::Float32List(vec![0.5, -1.0, 2.0]),
            Value::Int64List(vec![7, 8]),
            Value::StringList(vec!["a".into(), "b".into()]),
        ];
        for sample in samples {
            let ty = sample.value_type().unwrap();
            let s = summary_of(ty, [sample.clone(), Value::Null, sample.clone()]);
            let bytes = bincode::serde::encode_to_vec(&s, config).unwrap();
            let (back, read): (FeatureSummary, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(read, bytes.len(), "{ty}");
            assert_eq!(bincode::serde::encode_to_vec(&back, config).unwrap(), bytes, "{ty}");
            assert_eq!((back.value_type(), back.count(), back.nulls(), back.distinct()), (ty, 3, 1, 1), "{ty}");
            assert_eq!(
                (back.quantile(0.5), back.mean(), back.top_values()),
                (s.quantile(0.5), s.mean(), s.top_values())
            );
            assert_eq!(back.embedding().map(|e| e.dimension_means()), s.embedding().map(|e| e.dimension_means()));
        }
    }

    #[test]
    fn the_same_rows_give_byte_identical_summaries_on_any_thread() {
        let build = || {
            let mut rng = Rng::new(5);
            let (mut numbers, mut words) =
                (FeatureSummary::new(ValueType::Float64), FeatureSummary::new(ValueType::String));
            for _ in 0..20_000 {
                numbers.observe(&Value::Float64(rng.normal())).unwrap();
                words.observe(&Value::String(format!("w{}", rng.next_u64() % 1000))).unwrap();
            }
            let config = bincode::config::standard();
            [numbers, words].map(|s| bincode::serde::encode_to_vec(&s, config).unwrap())
        };
        assert_eq!(build(), std::thread::spawn(build).join().unwrap());
    }

    #[test]
    fn corrupt_bytes_fail_to_decode_instead_of_panicking() {
        let config = bincode::config::standard();
        let s = summary_of(ValueType::Float64, (0..100).map(|i| Value::Float64(f64::from(i))));
        let mut bytes = bincode::serde::encode_to_vec(&s, config).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle..].iter_mut().for_each(|b| *b = 0xff);
        let decoded: Result<(FeatureSummary, usize), _> = bincode::serde::decode_from_slice(&bytes, config);
        assert!(decoded.is_err());
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_canonical_for_floats() {
        let s = summary_of(ValueType::String, (0..1000).map(|i| Value::String(format!("v{}", i % 10))));
        assert_eq!(s.distinct(), 10);
        let floats = [0.0, -0.0, f64::NAN, -f64::NAN, 1.0].map(Value::Float64);
        assert_eq!(summary_of(ValueType::Float64, floats).distinct(), 3);
        let lists = [vec!["ab", "c"], vec!["a", "bc"], vec!["ab", "c"]]
            .map(|l| Value::StringList(l.into_iter().map(String::from).collect()));
        assert_eq!(summary_of(ValueType::StringList, lists).distinct(), 2);
    }

    #[test]
    fn values_of_another_type_are_refused_and_change_nothing() {
        let mut s = FeatureSummary::new(ValueType::Int64);
        let err = s.observe(&Value::Int32(1)).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("int64") && m.contains("int32")), "{err}");
        assert_eq!((s.count(), s.distinct(), s.mean()), (0, 0, None));

        s.observe(&Value::Int64(5)).unwrap();
        let other = summary_of(ValueType::Float64, [Value::Float64(1.0)]);
        assert!(matches!(s.merge(&other), Err(Error::InvalidArgument(_))));
        assert_eq!((s.count(), s.mean()), (1, Some(5.0)));
    }

    #[test]
    fn nan_and_infinities_are_counted_without_panicking() {
        let s = summary_of(ValueType::Float64, [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(Value::Float64));
        assert_eq!((s.count(), s.nulls(), s.distribution().unwrap().non_finite()), (3, 0, 3));
        assert_eq!((s.mean(), s.stddev(), s.min(), s.quantile(0.5), s.cdf(0.0)), (None, None, None, None, None));
        assert!(s.histogram(10).is_empty());
        let f32s = summary_of(ValueType::Float32, [Value::Float32(f32::NAN), Value::Float32(2.0)]);
        assert_eq!((f32s.mean(), f32s.quantile(0.5), f32s.cdf(f64::NAN)), (Some(2.0), Some(2.0), None));
    }

    #[test]
    fn a_summary_of_nulls_has_counts_and_nothing_else() {
        let s = summary_of(ValueType::Int64, [Value::Null, Value::Null]);
        assert_eq!((s.count(), s.nulls(), s.distinct()), (2, 2, 0));
        assert_eq!((s.mean(), s.stddev(), s.quantile(0.5), s.cdf(1.0)), (None, None, None, None));
        assert!(s.histogram(10).is_empty() && s.top_values().is_empty());
        assert!(FeatureSummary::new(ValueType::Bool).top_values().is_empty());
    }

    #[test]
    fn bytes_and_lists_describe_their_lengths_and_embeddings_their_norms() {
        let bytes = summary_of(ValueType::Bytes, [vec![0u8; 2], vec![0u8; 4]].map(Value::Bytes));
        assert_eq!((bytes.mean(), bytes.max()), (Some(3.0), Some(4.0)));
        let lists = summary_of(ValueType::Int64List, [vec![], vec![1, 2, 3]].map(Value::Int64List));
        assert_eq!((lists.min(), lists.max()), (Some(0.0), Some(3.0)));
        let embeddings = summary_of(ValueType::Float32List, [vec![3.0, 4.0], vec![0.0, 1.0]].map(Value::Float32List));
        assert_eq!((embeddings.min(), embeddings.max()), (Some(1.0), Some(5.0)));
        assert_eq!(embeddings.embedding().unwrap().dimension_means(), vec![Some(1.5), Some(2.5)]);
        let flags = summary_of(ValueType::Bool, [true, true, false].map(Value::Bool));
        assert_eq!(flags.top_values(), vec![("true".into(), 2), ("false".into(), 1)]);
        assert_eq!(flags.distribution().map(NumericStats::count), None);
    }
}
