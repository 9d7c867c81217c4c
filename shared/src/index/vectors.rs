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
        dot(v, query) as f32 * scale * query_scale
    }

    /// Cosine similarity of every vector with a quantised query, in order: `each(i, similarity)`.
    /// The scan behind dense retrieval, with the dot product chosen once for the CPU.
    pub fn scan(&self, query: &[i8], query_scale: f32, mut each: impl FnMut(usize, f32)) {
        let d = self.dims as usize;
        if d == 0 || query.len() != d {
            return;
        }
        let kernel = dot_kernel();
        for (i, (v, &scale)) in self.data.chunks_exact(d).zip(&self.scales).enumerate() {
            each(i, kernel(v, query) as f32 * scale * query_scale);
        }
    }
}

/// An exact int8 dot product over the common length of two slices.
pub type DotKernel = fn(&[i8], &[i8]) -> i32;

/// The int8 dot product, exact (i32): the fastest kernel this CPU has.
pub fn dot(a: &[i8], b: &[i8]) -> i32 {
    dot_kernel()(a, b)
}

/// The dot product kernel for this CPU, chosen once at run time: AVX2 on x86_64 when present, NEON
/// on aarch64, otherwise portable scalar code. All of them give the same (exact integer) result.
pub fn dot_kernel() -> DotKernel {
    chosen().0
}

/// The name of the kernel [`dot_kernel`] chose (benchmarks print it).
pub fn dot_kernel_name() -> &'static str {
    chosen().1
}

fn chosen() -> (DotKernel, &'static str) {
    static KERNEL: std::sync::OnceLock<(DotKernel, &'static str)> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return (simd::dot_avx2_checked, "avx2");
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return (simd::dot_neon_checked, "neon");
        }
        (dot_scalar, "scalar")
    })
}

/// The portable kernel (and the reference the SIMD kernels are tested against).
pub fn dot_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// The SIMD kernels. Products of two int8 values fit in i16 (|-128 × -128| = 16384) and pairs of
/// them in i32, so widening multiply-adds are exact, and so is the sum in i32 lanes for any
/// realistic dimension (< 131,072).
mod simd {
    #[cfg(target_arch = "x86_64")]
    pub fn dot_avx2_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: `dot_kernel` returns this function only after detecting AVX2 on this CPU.
        unsafe { dot_avx2(a, b) }
    }

    /// 32 values per step: sign-extend each half to 16 × i16, multiply and add adjacent pairs to
    /// 8 × i32 (`vpmaddwd`), accumulate; the remainder is scalar.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n, so both 32-byte unaligned loads are in bounds.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_si256(a.as_ptr().add(i).cast::<__m256i>()),
                    _mm256_loadu_si256(b.as_ptr().add(i).cast::<__m256i>()),
                )
            };
            let a_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(va));
            let a_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(va));
            let b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(vb));
            let b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(vb));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_lo, b_lo));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_hi, b_hi));
            i += 32;
        }
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
        _mm_cvtsi128_si32(sum) + super::dot_scalar(&a[i..], &b[i..])
    }

    #[cfg(target_arch = "aarch64")]
    pub fn dot_neon_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: `dot_kernel` returns this function only after detecting NEON on this CPU.
        unsafe { dot_neon(a, b) }
    }

    /// 16 values per step: widening multiplies to 2 × 8 × i16 (`smull`, `smull2`), pairwise
    /// add-accumulate into 4 × i32 (`sadalp`); the remainder is scalar.
    #[cfg(target_arch = "aarch64")]
    #[target_feature(enable = "neon")]
    fn dot_neon(a: &[i8], b: &[i8]) -> i32 {
        use std::arch::aarch64::*;
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = vdupq_n_s32(0);
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so both 16-byte loads are in bounds.
            let (va, vb) = unsafe { (vld1q_s8(a.as_ptr().add(i)), vld1q_s8(b.as_ptr().add(i))) };
            acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(va), vget_low_s8(vb)));
            acc = vpadalq_s16(acc, vmull_high_s8(va, vb));
            i += 16;
        }
        vaddvq_s32(acc) + super::dot_scalar(&a[i..], &b[i..])
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

    /// xorshift64*: deterministic pseudo-random bytes for the kernel comparisons.
    fn random_i8(seed: &mut u64, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed >> 12;
                *seed ^= *seed << 25;
                *seed ^= *seed >> 27;
                (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8 as i8
            })
            .collect()
    }

    #[test]
    fn the_chosen_kernel_equals_the_scalar_one_on_random_vectors_of_every_length() {
        let kernel = dot_kernel();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        // Lengths around the lane widths (16 for NEON, 32 for AVX2) and typical embedding sizes.
        let lengths =
            (0..=100).chain([127, 128, 129, 255, 256, 257, 383, 384, 385, 767, 768, 1536]);
        for n in lengths {
            for _ in 0..20 {
                let (a, b) = (random_i8(&mut seed, n), random_i8(&mut seed, n));
                assert_eq!(kernel(&a, &b), dot_scalar(&a, &b), "length {n}");
            }
        }
        // The extremes, -128 included (quantisation never produces it, other callers might).
        for n in [31, 32, 33, 256] {
            for (x, y) in [(-128i8, -128i8), (127, 127), (-128, 127)] {
                let (a, b) = (vec![x; n], vec![y; n]);
                assert_eq!(kernel(&a, &b), dot_scalar(&a, &b), "{x}·{y} × {n}");
                assert_eq!(kernel(&a, &b), x as i32 * y as i32 * n as i32);
            }
        }
        assert_eq!(kernel(&[1, 2, 3], &[4, 5]), 14, "the common length");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn on_x86_64_with_avx2_the_avx2_kernel_is_chosen() {
        let expected = if std::arch::is_x86_feature_detected!("avx2") {
            "avx2"
        } else {
            "scalar"
        };
        assert_eq!(dot_kernel_name(), expected);
    }

    #[test]
    fn the_scan_gives_every_vectors_cosine_in_order() {
        let mut store = QuantizedVectors::new(40);
        let mut seed = 7u64;
        for _ in 0..9 {
            let v: Vec<f32> = random_i8(&mut seed, 40).iter().map(|&x| x as f32).collect();
            store.push(&v).unwrap();
        }
        let (q, qs) = quantize(&(0..40).map(|i| i as f32 - 20.0).collect::<Vec<_>>());
        let mut seen = Vec::new();
        store.scan(&q, qs, |i, s| seen.push((i, s)));
        let expected: Vec<(usize, f32)> = (0..9).map(|i| (i, store.cosine(i, &q, qs))).collect();
        assert_eq!(seen, expected);
        let mut none = 0;
        store.scan(&q[..39], qs, |_, _| none += 1);
        assert_eq!(none, 0, "a query of other dimensions scores nothing");
    }

    #[test]
    fn wrong_dimensions_and_zero_vectors_are_handled() {
        let mut store = QuantizedVectors::new(3);
        assert!(store.push(&[1.0, 2.0]).is_err());
        store.push(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(store.cosine(0, &[1, 1, 1], 1.0), 0.0);
    }
}
