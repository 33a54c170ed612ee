//! The Gram matrix `Y^T Y` of the fixed side, computed once per half-sweep.

use rayon::prelude::*;

use crate::error::Result;
use crate::linalg::panels::PANEL;
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
/// the sum of its [`gram_blocks`] in order. The blocks are formed a wave of one per thread at a
/// time and added as each wave ends, so at most `threads` of them are held at once, not all of
/// them (88 MB at 1024 factors for gowalla's 41k items).
pub fn gram<T: Real>(y: &[T], k: usize, interrupt: &Interrupt) -> Result<Vec<f64>> {
    let mut total = vec![0.0f64; k * k];
    if k == 0 {
        return Ok(total);
    }
    let wave = rayon::current_num_threads().max(1) * GRAM_BLOCK_ROWS * k;
    for rows in y.chunks(wave) {
        for block in gram_blocks(rows, k, interrupt)? {
            add_block(&mut total, &block);
        }
    }
    Ok(total)
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
        add_block(&mut total, block);
    }
    total
}

fn add_block(total: &mut [f64], block: &[f64]) {
    for (t, &b) in total.iter_mut().zip(block) {
        *t += b;
    }
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
    /// in L1) stream past; only then is it added to the f64 sum. With f32 vectors and `k` a
    /// multiple of the panel width, the same sums go through the panel kernel (`wide`).
    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> Vec<f64> {
        let k = self.k;
        #[cfg(target_arch = "x86_64")]
        if k.is_multiple_of(PANEL) {
            use crate::simd::Vectors;
            if let (Some(vectors), Some(block)) =
                (crate::simd::vectors(arith), crate::simd::as_f32(self.block))
            {
                return match vectors {
                    Vectors::V4(s) => wide::block_gram::<_, 8>(s, block, k),
                    Vectors::V3(s) => wide::block_gram::<_, 4>(s, block, k),
                };
            }
        }
        let _ = arith;
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

/// The f32 block Gram through the panel micro-kernel, the same sums as the generic body: each
/// entry is, for each run of `INNER_ROWS` rows, one FMA chain over the rows in order from zero,
/// added to the f64 sum run by run. So the bits are the same as the generic body's.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::INNER_ROWS;
    use crate::linalg::panels::wide::accumulate_tile;
    use crate::linalg::panels::{pack_panels, PANEL};
    use crate::simd::F32Vectors;

    /// The upper triangle (by tiles of `R` rows and two vectors of columns) of `Y_b^T Y_b` for
    /// the row-major `block` (`k` columns, a multiple of `PANEL`). Each run of rows is packed in
    /// column panels first, so that a tile reads both its factor columns from L1.
    #[inline(always)]
    pub(super) fn block_gram<S: F32Vectors, const R: usize>(
        s: S,
        block: &[f32],
        k: usize,
    ) -> Vec<f64> {
        let (lanes, stripe) = (S::LANES, 2 * S::LANES);
        assert!(
            k.is_multiple_of(PANEL) && PANEL.is_multiple_of(stripe) && stripe.is_multiple_of(R)
        );
        let mut sum = vec![0.0f64; k * k];
        let mut packed = Vec::with_capacity(INNER_ROWS * k);
        let mut tile = [0.0f32; PANEL];
        for rows in block.chunks(INNER_ROWS * k) {
            let n = rows.len() / k;
            packed.clear();
            pack_panels(rows, k, PANEL, &mut packed);
            // Column `c` of the run's row 0; its row `j` is `j * PANEL` further.
            let column = |c: usize| {
                // SAFETY: `c < k`, so the offset is inside `packed` (`n * k` values).
                unsafe { packed.as_ptr().add((c / PANEL) * n * PANEL + c % PANEL) }
            };
            for a in (0..k).step_by(R) {
                for b in (a - a % stripe..k).step_by(stripe) {
                    let mut acc = [s.zero(); 16];
                    // SAFETY: `b` is a multiple of `stripe` and `a` of `R`, both dividing `PANEL`,
                    // so for each of the `n` rows the stripe's two vectors at `column(b)` and the
                    // `R` values at `column(a)` lie inside one panel row.
                    unsafe { accumulate_tile::<S, R>(s, column(b), column(a), PANEL, n, &mut acc) };
                    for r in 0..R {
                        // SAFETY: `tile` holds `PANEL >= 2 * lanes` values.
                        unsafe {
                            s.store(tile.as_mut_ptr(), acc[2 * r]);
                            s.store(tile.as_mut_ptr().add(lanes), acc[2 * r + 1]);
                        }
                        let sums = &mut sum[(a + r) * k + b..][..stripe];
                        for (total, &t) in sums.iter_mut().zip(&tile) {
                            *total += f64::from(t);
                        }
                    }
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

    /// The panel bodies against the generic one: every run of rows (whole and partial), every
    /// level the CPU has.
    fn check_level<A: Arith>(arith: A) {
        use crate::simd::testing::generic_fused;
        for k in [32, 64, 96] {
            let n = 2 * INNER_ROWS + 13;
            let y: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919 % 1013) as f32) / 1013.0 - 0.5)
                .collect();
            let generic = BlockGram { block: &y, k }.run(generic_fused());
            let wide = BlockGram { block: &y, k }.run(arith);
            for a in 0..k {
                for b in a..k {
                    assert_eq!(
                        wide[a * k + b].to_bits(),
                        generic[a * k + b].to_bits(),
                        "k={k} ({a}, {b})"
                    );
                }
            }
        }
    }

    #[test]
    fn avx2_panel_gram_is_the_generic_one_bit_for_bit() {
        use crate::simd::testing::{avx2_or_skip, fused};
        if avx2_or_skip("avx2_panel_gram_is_the_generic_one_bit_for_bit").is_some() {
            check_level(fused().expect("the CPU has AVX2"));
        }
    }

    #[test]
    fn avx512_panel_gram_is_the_generic_one_bit_for_bit() {
        use crate::simd::testing::{avx512_or_skip, fused_avx512};
        if avx512_or_skip("avx512_panel_gram_is_the_generic_one_bit_for_bit").is_some() {
            check_level(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    #[test]
    fn stops_when_interrupted() {
        let stop = Interrupt::new();
        stop.request();
        assert_eq!(gram(&[1.0f32; 8], 2, &stop), Err(crate::Error::Interrupted));
    }
}
