//! Statistics of float32 lists (embeddings): lengths, the L2-norm distribution and a running mean
//! per dimension. A shift of the mean vector or of the norms is the cheap signal that an embedding
//! model or its input changed; per-dimension quantiles would cost a sketch per dimension.

use serde::{Deserialize, Serialize};

use super::moments::Moments;
use super::numeric::NumericStats;

/// Dimensions beyond this get no running mean, which bounds a summary's size.
pub const MAX_EMBEDDING_DIMS: usize = 1024;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbeddingStats {
    lengths: Moments,
    norms: NumericStats,
    /// Sum and count of the finite values of each dimension; sums merge exactly.
    dims: Vec<DimensionSum>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct DimensionSum {
    sum: f64,
    count: u64,
}

impl EmbeddingStats {
    /// NaN and infinite elements are left out of the norm and of their dimension's mean.
    pub(crate) fn observe(&mut self, vector: &[f32]) {
        self.lengths.observe(vector.len() as f64);
        let capped = vector.len().min(MAX_EMBEDDING_DIMS);
        if self.dims.len() < capped {
            self.dims.resize(capped, DimensionSum::default());
        }
        let mut squares = 0.0;
        for (i, x) in vector.iter().map(|&x| f64::from(x)).enumerate().filter(|(_, x)| x.is_finite()) {
            squares += x * x;
            if let Some(dim) = self.dims.get_mut(i) {
                dim.sum += x;
                dim.count += 1;
            }
        }
        self.norms.observe(squares.sqrt());
    }

    pub(crate) fn merge(&mut self, other: &EmbeddingStats) {
        self.lengths.merge(&other.lengths);
        self.norms.merge(&other.norms);
        if self.dims.len() < other.dims.len() {
            self.dims.resize(other.dims.len(), DimensionSum::default());
        }
        for (mine, theirs) in self.dims.iter_mut().zip(&other.dims) {
            mine.sum += theirs.sum;
            mine.count += theirs.count;
        }
    }

    /// Distribution of list lengths.
    pub fn lengths(&self) -> &Moments {
        &self.lengths
    }

    /// Distribution of L2 norms.
    pub fn norms(&self) -> &NumericStats {
        &self.norms
    }

    /// Mean of each of the first [`MAX_EMBEDDING_DIMS`] dimensions; `None` for a dimension
    /// with no finite value.
    pub fn dimension_means(&self) -> Vec<Option<f64>> {
        self.dims.iter().map(|d| (d.count > 0).then(|| d.sum / d.count as f64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_norms_follow_the_vectors() {
        let mut s = EmbeddingStats::default();
        s.observe(&[3.0, 4.0]);
        s.observe(&[1.0, 0.0, 2.0]);
        assert_eq!(s.dimension_means(), vec![Some(2.0), Some(2.0), Some(2.0)]);
        assert_eq!((s.norms().min(), s.norms().max()), (Some(5f64.sqrt()), Some(5.0)));
        assert_eq!((s.lengths().min(), s.lengths().max()), (Some(2.0), Some(3.0)));
    }

    #[test]
    fn dimensions_past_the_cap_are_not_tracked_but_count_in_the_norm() {
        let mut s = EmbeddingStats::default();
        s.observe(&vec![1.0; MAX_EMBEDDING_DIMS + 300]);
        assert_eq!(s.dimension_means().len(), MAX_EMBEDDING_DIMS);
        assert_eq!(s.norms().max(), Some(((MAX_EMBEDDING_DIMS + 300) as f64).sqrt()));
    }

    #[test]
    fn non_finite_elements_are_skipped() {
        let mut s = EmbeddingStats::default();
        s.observe(&[f32::NAN, 2.0]);
        s.observe(&[1.0, f32::INFINITY]);
        assert_eq!(s.dimension_means(), vec![Some(1.0), Some(2.0)]);
        assert_eq!(s.norms().count(), 2);
    }

    #[test]
    fn merge_equals_one_pass() {
        let (mut a, mut b, mut whole) =
            (EmbeddingStats::default(), EmbeddingStats::default(), EmbeddingStats::default());
        for (i, v) in [[1.0f32, 2.0].as_slice(), &[3.0], &[5.0, 6.0, 7.0]].into_iter().enumerate() {
            whole.observe(v);
            if i == 0 { a.observe(v) } else { b.observe(v) }
        }
        a.merge(&b);
        assert_eq!(a.dimension_means(), whole.dimension_means());
        assert_eq!(a.lengths(), whole.lengths());
        assert_eq!(a.norms().mean(), whole.norms().mean());
    }
}
