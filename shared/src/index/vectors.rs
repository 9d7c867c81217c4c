//! Embedding vectors stored as int8 with one scale per vector: 4× smaller than f32, and cosine
//! similarity survives the rounding well enough for ranking.

use serde::{Deserialize, Serialize};

/// Vectors of one dimension, quantised and L2-normalised before quantisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QuantizedVectors {
    pub dims: u32,
    /// `len × dims` values.
    pub data: Vec<i8>,
    /// Per vector: the factor that turns its int8 values back into a unit vector's components.
    pub scales: Vec<f32>,
}

impl QuantizedVectors {
    pub fn new(dims: usize) -> Self {
        Self {
            dims: dims as u32,
            data: Vec::new(),
            scales: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Appends a vector (normalised, then scaled so its largest component is ±127).
    pub fn push(&mut self, v: &[f32]) -> Result<(), String> {
        if v.len() != self.dims as usize {
            return Err(format!(
                "vector of {} dimensions in an index of {}",
                v.len(),
                self.dims
            ));
        }
        let (q, scale) = quantize(v);
        self.data.extend_from_slice(&q);
        self.scales.push(scale);
        Ok(())
    }

    pub fn get(&self, i: usize) -> (&[i8], f32) {
        let d = self.dims as usize;
        (&self.data[i * d..(i + 1) * d], self.scales[i])
    }

    /// The dequantised vector `i` (to carry a vector over to a new index unchanged).
    pub fn dequantize(&self, i: usize) -> Vec<f32> {
        let (q, scale) = self.get(i);
        q.iter().map(|&x| x as f32 * scale).collect()
    }

    /// Cosine similarity of vector `i` with a query already normalised and quantised.
    pub fn cosine(&self, i: usize, query: &[i8], query_scale: f32) -> f32 {
        let (v, scale) = self.get(i);
        let dot: i32 = v
            .iter()
            .zip(query)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        dot as f32 * scale * query_scale
    }
}

/// L2-normalises and quantises one vector; returns the values and their scale.
pub fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return (vec![0; v.len()], 0.0);
    }
    let max = v.iter().map(|x| (x / norm).abs()).fold(0.0f32, f32::max);
    let scale = if max == 0.0 { 0.0 } else { max / 127.0 };
    let q = v
        .iter()
        .map(|x| {
            if scale == 0.0 {
                0
            } else {
                ((x / norm) / scale).round().clamp(-127.0, 127.0) as i8
            }
        })
        .collect();
    (q, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine_f32(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn quantised_cosine_is_close_to_exact() {
        let a: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let b: Vec<f32> = (0..256)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0)
            .collect();
        let mut store = QuantizedVectors::new(256);
        store.push(&a).unwrap();
        let (qb, sb) = quantize(&b);
        let approx = store.cosine(0, &qb, sb);
        assert!(
            (approx - cosine_f32(&a, &b)).abs() < 0.02,
            "{approx} vs {}",
            cosine_f32(&a, &b)
        );
        let (qa, sa) = quantize(&a);
        assert!((store.cosine(0, &qa, sa) - 1.0).abs() < 0.01);
    }

    #[test]
    fn wrong_dimensions_and_zero_vectors_are_handled() {
        let mut store = QuantizedVectors::new(3);
        assert!(store.push(&[1.0, 2.0]).is_err());
        store.push(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(store.cosine(0, &[1, 1, 1], 1.0), 0.0);
    }
}
