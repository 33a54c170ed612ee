//! The Gram matrix `Y^T Y` of the fixed side, computed once per half-sweep.

use rayon::prelude::*;

use crate::error::Result;
use crate::linalg::vector::LANES;
use crate::parallel::Interrupt;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Rows per block whose partial sum is formed independently. Blocks are fixed by the data, not by
/// the thread count, and their partials are added in block order, so the result is bitwise the same
/// for any number of threads. A caller splitting `Y` across machines keeps its splits at multiples
/// of this, so that [`gram_blocks`] of the pieces, concatenated, are the blocks of the whole.
pub const GRAM_BLOCK_ROWS: usize = 4096;
/// Rows summed in the factor type before the partial is added into the f64 block sum.
const INNER_ROWS: usize = 64;

/// `Y^T Y` (k x k, row-major, full symmetric) of a row-major `n x k` matrix, accumulated in f64:
/// the sum of its [`gram_blocks`] in order.
pub fn gram<T: Real>(y: &[T], k: usize, interrupt: &Interrupt) -> Result<Vec<f64>> {
    Ok(gram_sum(
        gram_blocks(y, k, interrupt)?.iter().map(Vec::as_slice),
        k,
    ))
}

/// The Gram matrix of each [`GRAM_BLOCK_ROWS`]-row block of `y` (k x k, full symmetric), in
/// block order.
pub fn gram_blocks<T: Real>(y: &[T], k: usize, interrupt: &Interrupt) -> Result<Vec<Vec<f64>>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    y.par_chunks(GRAM_BLOCK_ROWS * k)
        .map(|block| {
            interrupt.check()?;
            let mut upper = dispatch(BlockGram { block, k });
            mirror_upper(&mut upper, k);
            Ok(upper)
        })
        .collect()
}

/// The sum of Gram blocks (each `k x k`) in the order given (zeros when there are none). Any
/// sequence of slices: a caller holding the blocks stacked in one array passes its chunks, with
/// no copy.
pub fn gram_sum<'a>(blocks: impl IntoIterator<Item = &'a [f64]>, k: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; k * k];
    for block in blocks {
        for (t, &b) in total.iter_mut().zip(block) {
            *t += b;
        }
    }
    total
}

/// Blocks are computed right of each diagonal entry's block; this copies the strict upper
/// triangle down.
fn mirror_upper(m: &mut [f64], k: usize) {
    for i in 0..k {
        for j in 0..i {
            m[i * k + j] = m[j * k + i];
        }
    }
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
    fn run<A: Arith>(self, _: A) -> Vec<f64> {
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
            let g = gram(&y, k, &Interrupt::new()).unwrap();
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
                .install(|| gram(&y, k, &Interrupt::new()).unwrap())
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn blocks_of_aligned_pieces_sum_to_the_whole() {
        let k = 6;
        let n = 2 * GRAM_BLOCK_ROWS + 100;
        let y: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32) / 1013.0 - 0.5)
            .collect();
        let stop = Interrupt::new();
        let (head, tail) = y.split_at(GRAM_BLOCK_ROWS * k);
        let mut pieces = gram_blocks(head, k, &stop).unwrap();
        pieces.extend(gram_blocks(tail, k, &stop).unwrap());
        assert_eq!(pieces, gram_blocks(&y, k, &stop).unwrap());
        let summed = gram_sum(pieces.iter().map(Vec::as_slice), k);
        assert_eq!(summed, gram(&y, k, &stop).unwrap());
        for block in &pieces {
            for a in 0..k {
                for b in 0..k {
                    assert_eq!(block[a * k + b], block[b * k + a]);
                }
            }
        }
    }

    #[test]
    fn stops_when_interrupted() {
        let stop = Interrupt::new();
        stop.request();
        assert_eq!(gram(&[1.0f32; 8], 2, &stop), Err(crate::Error::Interrupted));
    }
}
