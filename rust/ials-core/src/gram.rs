//! The Gram matrix `Y^T Y` of the fixed side, computed once per half-sweep.

use rayon::prelude::*;

use crate::kernels::LANES;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Rows per block whose partial sum is formed independently. Blocks are fixed by the data, not by
/// the thread count, and their partials are added in block order, so the result is bitwise the same
/// for any number of threads.
const BLOCK_ROWS: usize = 4096;
/// Rows summed in the factor type before the partial is added into the f64 block sum.
const INNER_ROWS: usize = 64;

/// `Y^T Y` (k x k, row-major, full symmetric) of a row-major `n x k` matrix, accumulated in f64.
pub fn gram<T: Real>(y: &[T], k: usize) -> Vec<f64> {
    if k == 0 {
        return Vec::new();
    }
    let partials: Vec<Vec<f64>> = y
        .par_chunks(BLOCK_ROWS * k)
        .map(|block| dispatch(BlockGram { block, k }))
        .collect();
    let mut upper = vec![0.0f64; k * k];
    for partial in &partials {
        for (total, &p) in upper.iter_mut().zip(partial) {
            *total += p;
        }
    }
    // Blocks were computed right of each diagonal entry's block; mirror the strict upper triangle.
    for i in 0..k {
        for j in 0..i {
            upper[i * k + j] = upper[j * k + i];
        }
    }
    upper
}

/// The upper triangle (by column blocks) of one block's `Y_b^T Y_b`.
struct BlockGram<'a, T> {
    block: &'a [T],
    k: usize,
}

impl<T: Real> Kernel for BlockGram<'_, T> {
    type Output = Vec<f64>;

    /// Register-tiled: for each row `a` of the result and each block of `LANES` columns right of
    /// the diagonal, the block stays in registers while up to `INNER_ROWS` factor rows (resident
    /// in L1) stream past; only then is it added to the f64 sum.
    #[inline(always)]
    fn run<A: Arith>(self) -> Vec<f64> {
        let k = self.k;
        let mut sum = vec![0.0f64; k * k];
        for rows in self.block.chunks(INNER_ROWS * k) {
            for a in 0..k {
                let mut start = a - a % LANES;
                while start < k {
                    let width = LANES.min(k - start);
                    let dst = &mut sum[a * k + start..a * k + start + width];
                    if width == LANES {
                        let mut acc = [T::ZERO; LANES];
                        for row in rows.chunks_exact(k) {
                            let ya = row[a];
                            let columns = &row[start..start + LANES];
                            for t in 0..LANES {
                                acc[t] = A::fma(ya, columns[t], acc[t]);
                            }
                        }
                        for (s, v) in dst.iter_mut().zip(acc) {
                            *s += v.to_f64();
                        }
                    } else {
                        for (t, s) in dst.iter_mut().enumerate() {
                            let mut acc = T::ZERO;
                            for row in rows.chunks_exact(k) {
                                acc = A::fma(row[a], row[start + t], acc);
                            }
                            *s += acc.to_f64();
                        }
                    }
                    start += LANES;
                }
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        for (n, k) in [(0, 3), (1, 1), (7, 5), (5000, 9), (9000, 17)] {
            let y: Vec<f32> = (0..n * k)
                .map(|i| ((i * 37 % 101) as f32) / 101.0 - 0.5)
                .collect();
            let g = gram(&y, k);
            for a in 0..k {
                for b in 0..k {
                    let naive: f64 = (0..n)
                        .map(|r| y[r * k + a] as f64 * y[r * k + b] as f64)
                        .sum();
                    assert!(
                        (g[a * k + b] - naive).abs() <= 1e-4 * (1.0 + naive.abs()),
                        "{n} {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn identical_for_any_thread_count() {
        let (n, k) = (20_000, 8);
        let y: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32) / 1013.0)
            .collect();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| gram(&y, k))
        };
        assert_eq!(run(1), run(3));
    }
}
