//! The Gram product of a whole block of CG rows, `out_r = M v_r` for every row `r`, as the small
//! matrix product it is: `M` is packed once per half-sweep into contiguous column panels, and
//! each panel serves every row of the block from cache before the next one is read, the way GEMM
//! libraries block their loops. Row by row, [`symv`](super::symv) streams the whole `k x k` matrix
//! from L2 or memory for each CG step of each row: at 1024 factors that is 4 MB per row-step.
//!
//! Each output is the FMA chain of [`symv`](super::symv) over the rows of `M` in order, so the
//! results are the same bits as row by row, at every level. [`symv_packed`] does the same for
//! the generic body (f64 matrices) on panels of `LANES` columns.

use crate::simd::Arith;
use crate::Real;

use super::symv::{columns, symv_rows, Block};
use super::vector::{tile_height, LANES};

/// Columns per panel: two AVX-512 vectors, four AVX2 ones.
pub const PANEL: usize = 32;

/// A symmetric `k x k` matrix (`k` a multiple of [`PANEL`]) as `k / PANEL` column panels, each
/// panel's `k` rows of `PANEL` values contiguous.
pub struct PanelMatrix {
    packed: Vec<f32>,
    k: usize,
}

impl PanelMatrix {
    /// Packs the row-major `k x k` matrix `m`; `None` unless `k` is a positive multiple of
    /// [`PANEL`] (other sizes keep to the row-major kernels).
    pub fn new(m: &[f32], k: usize) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(PANEL) || m.len() != k * k {
            return None;
        }
        let mut packed = Vec::with_capacity(k * k);
        pack_panels(m, k, PANEL, &mut packed);
        Some(Self { packed, k })
    }
}

/// Appends the row-major `rows` (`k` columns) to `packed` as column panels of `width` columns
/// (the last one narrower where `width` does not divide `k`): for each panel in turn, every
/// row's values of it, row after row. The panel of the columns from `first` then starts at
/// `first * rows.len() / k` in what was appended.
pub(crate) fn pack_panels<T: Copy>(rows: &[T], k: usize, width: usize, packed: &mut Vec<T>) {
    for first in (0..k).step_by(width) {
        let end = k.min(first + width);
        for row in rows.chunks_exact(k) {
            packed.extend_from_slice(&row[first..end]);
        }
    }
}

/// `out_r = M v_r` for each row as [`symv_rows`]' generic body computes it (any `T`, the exact
/// solve's f64 `B^{-1}`), with `M` packed by [`pack_panels`] in panels of [`LANES`] columns: each
/// block of columns is contiguous, so it streams from L2 into the registers with the hardware
/// prefetcher's help, where row-major columns of a large matrix are `8 k` bytes apart (a new page
/// per row at 512 factors in f64). Same bits as [`symv`](super::symv::symv) on the row-major
/// matrix.
#[inline(always)]
pub(crate) fn symv_packed<T: Real, A: Arith>(
    arith: A,
    packed: &[T],
    k: usize,
    vs: &[T],
    outs: &mut [T],
) {
    assert!(packed.len() >= k * k && vs.len() == outs.len());
    if k == 0 {
        return;
    }
    assert!(vs.len().is_multiple_of(k), "whole rows of k values");
    let height = tile_height(arith);
    for start in (0..k).step_by(LANES) {
        let width = LANES.min(k - start);
        let block = Block {
            m: &packed[start * k..(start + width) * k],
            stride: width,
            offset: 0,
        };
        columns::<T, A>(height, block, start, width, k, vs, outs);
    }
}

/// `out_r = M v_r` for each `k`-long row `v_r` of `vs`, bit for bit as [`symv`](super::symv) row
/// by row, with `M` both row-major (`m`) and packed (`panels`). Groups of rows as wide as the
/// registers allow go through the panels; rows left over, and machines without AVX2, use `m`.
/// `scratch` holds the groups' vectors interleaved.
#[inline(always)]
pub fn symv_panels<A: Arith>(
    arith: A,
    m: &[f32],
    panels: &PanelMatrix,
    vs: &[f32],
    outs: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let k = panels.k;
    assert!(m.len() == k * k && vs.len() == outs.len() && vs.len().is_multiple_of(k));
    #[cfg(target_arch = "x86_64")]
    let done = {
        use crate::simd::Vectors;
        let rows = vs.len() / k;
        match crate::simd::vectors(arith) {
            Some(Vectors::V4(s)) => wide::symv_groups::<_, 8>(s, panels, rows, vs, outs, scratch),
            Some(Vectors::V3(s)) => wide::symv_groups::<_, 4>(s, panels, rows, vs, outs, scratch),
            None => 0,
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    symv_rows(arith, m, k, &vs[done * k..], &mut outs[done * k..]);
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod wide {
    use super::{PanelMatrix, PANEL};
    use crate::simd::F32Vectors;

    /// The register tile of every panel product: `acc[2 r + h] += v_r[j] * stripe_j[h]` for
    /// `j` in `0..n` in order, where `stripe_j` is the two vectors at `panel + j * PANEL` and
    /// `v_r[j]` is at `v + j * v_stride + r`. Each accumulator is one FMA chain over `j`.
    ///
    /// # Safety
    /// For every `j < n`: `panel + j * PANEL` must have two vectors readable, and
    /// `v + j * v_stride` `R` values.
    #[inline(always)]
    pub(crate) unsafe fn accumulate_tile<S: F32Vectors, const R: usize>(
        s: S,
        panel: *const f32,
        v: *const f32,
        v_stride: usize,
        n: usize,
        acc: &mut [S::V; 16],
    ) {
        const { assert!(R <= 8) };
        // SAFETY: the caller's guarantee.
        unsafe {
            for j in 0..n {
                let row = panel.add(j * PANEL);
                let (lo, hi) = (s.load(row), s.load(row.add(S::LANES)));
                let vj = v.add(j * v_stride);
                for r in 0..R {
                    let q = s.splat(*vj.add(r));
                    acc[2 * r] = s.fma(q, lo, acc[2 * r]);
                    acc[2 * r + 1] = s.fma(q, hi, acc[2 * r + 1]);
                }
            }
        }
    }

    /// The whole groups of `R` rows among the first `rows` of `vs` through every panel: for each
    /// stripe of two vectors of a panel, each group keeps `2 R` accumulators in registers while
    /// the stripe's `k` rows stream past (each loaded once per group, from L1 or L2). Returns how
    /// many rows it did.
    ///
    /// A group's vectors are first interleaved (`v_0[j], ..., v_{R-1}[j]` side by side for each
    /// `j`): read in place they would be `R` streams `4 k` bytes apart, which at 512 and 1024
    /// factors all fall in the same few L1 sets and evict each other.
    #[inline(always)]
    pub(super) fn symv_groups<S: F32Vectors, const R: usize>(
        s: S,
        panels: &PanelMatrix,
        rows: usize,
        vs: &[f32],
        outs: &mut [f32],
        interleaved: &mut Vec<f32>,
    ) -> usize {
        const { assert!(R <= 8) };
        let (k, lanes) = (panels.k, S::LANES);
        let stripe = 2 * lanes;
        let grouped = rows - rows % R;
        assert!(PANEL.is_multiple_of(stripe) && panels.packed.len() == k * k);
        assert!(vs.len() >= grouped * k && outs.len() >= grouped * k);
        interleaved.clear();
        for group in vs[..grouped * k].chunks_exact(R * k) {
            for j in 0..k {
                interleaved.extend((0..R).map(|r| group[r * k + j]));
            }
        }
        let (pm, pv, po) = (
            panels.packed.as_ptr(),
            interleaved.as_ptr(),
            outs.as_mut_ptr(),
        );
        // SAFETY: panel `p` occupies `packed[p * k * PANEL..][..k * PANEL]` (p < k / PANEL), and
        // loads read `stripe` values at `j * PANEL + column` with j < k and
        // `column + stripe <= PANEL`: inside the asserted `k * k`. Reads of `interleaved` are at
        // `group * k + j * R + r` below its `grouped * k`; writes of `outs` at `row * k + ...`
        // below `grouped * k`, with offsets below `k`.
        unsafe {
            for panel in 0..k / PANEL {
                let base = pm.add(panel * k * PANEL);
                for column in (0..PANEL).step_by(stripe) {
                    let first_output = panel * PANEL + column;
                    for group in (0..grouped).step_by(R) {
                        let mut acc = [s.zero(); 16];
                        let v = pv.add(group * k);
                        accumulate_tile::<S, R>(s, base.add(column), v, R, k, &mut acc);
                        for r in 0..R {
                            let out = po.add((group + r) * k + first_output);
                            s.store(out, acc[2 * r]);
                            s.store(out.add(lanes), acc[2 * r + 1]);
                        }
                    }
                }
            }
        }
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::symv::symv;
    use crate::linalg::vector::tests::{bits, vector};
    use crate::simd::testing::{avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused};
    use crate::simd::Unfused;

    fn symmetric(k: usize) -> Vec<f32> {
        (0..k * k)
            .map(|ij| {
                let (i, j) = (ij / k, ij % k);
                ((i * j * 7 + i + j) % 23) as f32 / 23.0 - 0.45
            })
            .collect()
    }

    #[test]
    fn only_positive_multiples_of_the_panel_are_packed() {
        for k in [0, 1, 16, 31, 33, 48] {
            assert!(PanelMatrix::new(&symmetric(k), k).is_none(), "k={k}");
        }
        assert!(PanelMatrix::new(&symmetric(32), 64).is_none());
        assert!(PanelMatrix::new(&symmetric(64), 64).is_some());
    }

    #[test]
    fn packing_keeps_every_entry_in_its_panel() {
        let k = 64;
        let m = symmetric(k);
        let panels = PanelMatrix::new(&m, k).unwrap();
        for i in 0..k {
            for j in 0..k {
                let (panel, column) = (j / PANEL, j % PANEL);
                assert_eq!(
                    panels.packed[(panel * k + i) * PANEL + column],
                    m[i * k + j]
                );
            }
        }
    }

    /// Every count of rows (whole groups of 4 and 8, and leftovers): the same bits as `symv` one
    /// row at a time with the same arithmetic.
    fn check_rows<A: Arith>(arith: A) {
        for k in [32, 64, 96, 160] {
            let m = symmetric(k);
            let panels = PanelMatrix::new(&m, k).unwrap();
            for rows in [1, 3, 4, 7, 8, 9, 16, 21, 32] {
                let vs: Vec<f32> = (0..rows * k)
                    .map(|i| (i % 13) as f32 / 13.0 - 0.4)
                    .collect();
                let mut together = vec![f32::NAN; rows * k];
                symv_panels(arith, &m, &panels, &vs, &mut together, &mut Vec::new());
                for (v, out) in vs.chunks_exact(k).zip(together.chunks_exact(k)) {
                    let mut alone = vec![f32::NAN; k];
                    symv(arith, &m, v, &mut alone);
                    assert_eq!(bits(&alone), bits(out), "k={k} rows={rows}");
                }
            }
        }
    }

    #[test]
    fn portable_panels_are_symv_row_by_row() {
        check_rows(Unfused);
        check_rows(generic_fused());
    }

    #[test]
    fn avx2_panels_are_symv_row_by_row_bit_for_bit() {
        if avx2_or_skip("avx2_panels_are_symv_row_by_row_bit_for_bit").is_some() {
            check_rows(fused().expect("the CPU has AVX2"));
        }
    }

    #[test]
    fn avx512_panels_are_symv_row_by_row_bit_for_bit() {
        if avx512_or_skip("avx512_panels_are_symv_row_by_row_bit_for_bit").is_some() {
            check_rows(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    /// Packed in panels of `LANES` columns (the last narrower), `M` gives the bits of the
    /// row-major product, for any number of rows, at every level.
    #[test]
    fn packed_products_are_row_major_products_bit_for_bit() {
        fn check<A: Arith>(arith: A, m: &[f64], packed: &[f64], k: usize, rows: usize) {
            let vs = vector(rows * k, 4);
            let (mut row_major, mut from_panels) = (vec![f64::NAN; rows * k], vec![0.0; rows * k]);
            symv_rows(arith, m, k, &vs, &mut row_major);
            symv_packed(arith, packed, k, &vs, &mut from_panels);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&from_panels), bits(&row_major), "k={k} rows={rows}");
        }
        for k in [1, 5, 7, 8, 16, 24, 33, 64, 100, 136] {
            let a = vector(k * k, 3);
            let m: Vec<f64> = (0..k * k)
                .map(|ij| a[ij] + a[(ij % k) * k + ij / k])
                .collect();
            let mut packed = Vec::new();
            pack_panels(&m, k, LANES, &mut packed);
            for rows in 1..=9 {
                check(Unfused, &m, &packed, k, rows);
                check(generic_fused(), &m, &packed, k, rows);
                for level in [fused(), fused_avx512()].into_iter().flatten() {
                    check(level, &m, &packed, k, rows);
                }
            }
        }
    }
}
