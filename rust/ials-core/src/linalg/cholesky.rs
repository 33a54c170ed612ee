//! A small dense Cholesky factorisation in f64 for the exact row solve.

use super::vector::{axpy, dot_generic as dot};
use crate::simd::Arith;

/// Rows factored together: the trailing update subtracts their rank-`PANEL` contribution in
/// one pass, so every load and store of a trailing entry feeds `PANEL` FMAs.
const PANEL: usize = 8;

/// Factors the symmetric positive-definite row-major `k x k` matrix `a` in place into the upper
/// triangular U with `a = U^T U` (U is L^T, so every row of U is contiguous), and in the same
/// pass solves `U^T y = b` in place (`b` becomes `y`; [`solve_back`] then gives `x`). Only the
/// upper triangle of `a` counts: entries below the diagonal may be overwritten with values that
/// mean nothing, and never change the result. Returns false when the matrix is not positive
/// definite (a pivot that is not positive and finite).
///
/// Blocked right-looking: a panel of `PANEL` rows is factored on its own with contiguous `axpy`s,
/// and then subtracted from the trailing rows in register tiles. Each entry of U is the FMA chain
/// of the unblocked algorithm, so every level gives the bits of that one (tested). The forward
/// substitution is column by column: each `y_c` as soon as row `c` of U is final, then
/// `y_c U[c][c+1..]` off the rest of `b`. Its independent `axpy`s fill the wait on each pivot's
/// square root and division, where a separate pass after the factorisation waited on its own
/// chain of `y`s.
#[inline(always)]
pub fn factor<A: Arith>(arith: A, a: &mut [f64], k: usize, b: &mut [f64]) -> bool {
    let wide = arith.avx512().is_some();
    let mut j = 0;
    while j < k {
        let end = (j + PANEL).min(k);
        for c in j..end {
            let pivot = a[c * k + c];
            if !(pivot > 0.0 && pivot.is_finite()) {
                return false;
            }
            let diagonal = pivot.sqrt();
            let inverse = 1.0 / diagonal;
            a[c * k + c] = diagonal;
            for v in &mut a[c * k + c + 1..(c + 1) * k] {
                *v *= inverse;
            }
            let yc = b[c] * inverse;
            b[c] = yc;
            axpy::<f64, A>(-yc, &a[c * k + c + 1..(c + 1) * k], &mut b[c + 1..]);
            let (done, below) = a.split_at_mut((c + 1) * k);
            let u = &done[c * k..];
            for r in c + 1..end {
                let row = &mut below[(r - c - 1) * k + r..(r - c) * k];
                axpy::<f64, A>(-u[r], &u[r..], row);
            }
        }
        let (panel, trailing) = a.split_at_mut(end * k);
        let panel = &panel[j * k..];
        if end - j == PANEL {
            subtract_panel::<A>(wide, panel, trailing, k, end);
        } else {
            for r in end..k {
                let row = &mut trailing[(r - end) * k + r..(r - end + 1) * k];
                for t in 0..end - j {
                    axpy::<f64, A>(-panel[t * k + r], &panel[t * k + r..(t + 1) * k], row);
                }
            }
        }
        j = end;
    }
    true
}

/// Subtracts the factored `panel` (`PANEL` rows of U, row-major with `k` columns) from the
/// `trailing` rows `first..k` of the matrix: `a[r][c] -= sum_t panel[t][r] panel[t][c]` for
/// `c >= r`, each entry one FMA chain over `t` in order, in register tiles of 4 rows (or 1) by `W`
/// columns. A tile may update entries left of its rows' diagonals, whose values never matter.
///
/// While the matrix fits L2, column blocks go outermost: a block's `PANEL x W` panel entries stay
/// in registers while every trailing row that reaches the block passes, each coefficient
/// `panel[t][r]` broadcast from memory where it is used. (Rows outermost, the tile's `4 x PANEL`
/// coefficients are the loop invariants; LLVM kept them in registers and spilled the sums
/// instead: 1.2x-1.5x slower from 64 to 256 factors.) Beyond L2, rows go outermost, four at a
/// time, so that each row streams through memory in order: column blocks outermost hop one row
/// per tile, at 512 factors one page, which the prefetchers do not follow (1.5x-1.9x slower there).
#[inline(always)]
fn subtract_panel<A: Arith>(
    wide: bool,
    panel: &[f64],
    trailing: &mut [f64],
    k: usize,
    first: usize,
) {
    if k * k * std::mem::size_of::<f64>() <= COLUMNS_OUTERMOST_UP_TO {
        subtract_blocks::<A>(wide, panel, trailing, k, first, first..k, first);
    } else {
        for r in (first..k).step_by(4) {
            subtract_blocks::<A>(wide, panel, trailing, k, first, r..(r + 4).min(k), r);
        }
    }
}

/// The size of matrix (bytes) up to which [`subtract_panel`] goes column block by column block:
/// the 1 MiB L2 of the development machine, and of most x86-64 cores of its generation.
const COLUMNS_OUTERMOST_UP_TO: usize = 1 << 20;

/// [`subtract_panel`] on the `rows` (numbered in the whole matrix; `trailing` starts at row
/// `first`) from `column` to the end, in column blocks of 16 (without AVX-512, 8), then 8, 4, 2
/// and 1, each over the rows that reach it.
#[inline(always)]
fn subtract_blocks<A: Arith>(
    wide: bool,
    panel: &[f64],
    trailing: &mut [f64],
    k: usize,
    first: usize,
    rows: std::ops::Range<usize>,
    mut column: usize,
) {
    let rows = &rows;
    if wide {
        column = blocks_of::<A, 16>(panel, trailing, k, first, rows, column);
    }
    column = blocks_of::<A, 8>(panel, trailing, k, first, rows, column);
    column = blocks_of::<A, 4>(panel, trailing, k, first, rows, column);
    column = blocks_of::<A, 2>(panel, trailing, k, first, rows, column);
    blocks_of::<A, 1>(panel, trailing, k, first, rows, column);
}

/// [`subtract_blocks`] on the whole column blocks of width `W` from `column` on, the rows in tiles
/// of 4, then 1; where the next block starts.
#[inline(always)]
fn blocks_of<A: Arith, const W: usize>(
    panel: &[f64],
    trailing: &mut [f64],
    k: usize,
    first: usize,
    rows: &std::ops::Range<usize>,
    mut column: usize,
) -> usize {
    while column + W <= k {
        let block = panel_block::<W>(panel, k, column);
        // Rows from the block's last column on have no entry in it on or right of the diagonal.
        let rows_end = rows.end.min(column + W);
        let mut r = rows.start;
        while r + 4 <= rows_end {
            subtract_tile::<A, 4, W>(panel, &block, trailing, k, first, r, column);
            r += 4;
        }
        for r in r..rows_end {
            subtract_tile::<A, 1, W>(panel, &block, trailing, k, first, r, column);
        }
        column += W;
    }
    column
}

/// The panel's entries at the columns `column..column + W`.
#[inline(always)]
fn panel_block<const W: usize>(panel: &[f64], k: usize, column: usize) -> [[f64; W]; PANEL] {
    let mut block = [[0.0; W]; PANEL];
    for (t, block) in block.iter_mut().enumerate() {
        block.copy_from_slice(&panel[t * k + column..t * k + column + W]);
    }
    block
}

/// The tile of rows `r..r + R` at the columns `column..column + W` (`block` holds the panel's
/// entries there).
#[inline(always)]
fn subtract_tile<A: Arith, const R: usize, const W: usize>(
    panel: &[f64],
    block: &[[f64; W]; PANEL],
    trailing: &mut [f64],
    k: usize,
    first: usize,
    r: usize,
    column: usize,
) {
    let at = |i: usize| (r + i - first) * k + column..(r + i - first) * k + column + W;
    let mut e = [[0.0; W]; R];
    for (i, e) in e.iter_mut().enumerate() {
        e.copy_from_slice(&trailing[at(i)]);
    }
    for (t, ut) in block.iter().enumerate() {
        for (i, e) in e.iter_mut().enumerate() {
            let c = -panel[t * k + r + i];
            for (e, &v) in e.iter_mut().zip(ut) {
                *e = A::fma(c, v, *e);
            }
        }
    }
    for (i, e) in e.iter().enumerate() {
        trailing[at(i)].copy_from_slice(e);
    }
}

/// Solves `U^T y = b` in place (`b` becomes `y`) with U from [`factor`] and the reciprocals of its
/// diagonal in `inverse`: the forward substitution [`factor`] runs as it goes, in the same order
/// (the same bits), for right-hand sides that come after the factorisation.
#[inline(always)]
pub fn solve_forward<A: Arith>(u: &[f64], k: usize, inverse: &[f64], b: &mut [f64]) {
    for c in 0..k {
        let yc = b[c] * inverse[c];
        b[c] = yc;
        axpy::<f64, A>(-yc, &u[c * k + c + 1..(c + 1) * k], &mut b[c + 1..]);
    }
}

/// Rows of the back substitution solved together (see [`solve_back`]).
const SOLVE_BLOCK: usize = 8;

/// Solves `U x = y` in place (`y` becomes `x`) with U and `y` from [`factor`], which together
/// solve `U^T U x = b`.
///
/// In blocks of `SOLVE_BLOCK` rows from the bottom: the block's dot products with the part of `x`
/// already solved are independent, so they overlap, where row by row each waited for the row
/// below. It multiplies by the diagonal's reciprocals, computed a block at a time, so no division
/// sits on the chain from one unknown to the next.
#[inline(always)]
pub fn solve_back<A: Arith>(u: &[f64], k: usize, b: &mut [f64]) {
    let mut end = k;
    while end > 0 {
        let start = end.saturating_sub(SOLVE_BLOCK);
        let inverse = reciprocals(u, k, start..end);
        let (head, solved) = b.split_at_mut(end);
        let block = &mut head[start..];
        for (i, bi) in (start..end).zip(block.iter_mut()) {
            *bi -= dot::<f64, A>(&u[i * k + end..(i + 1) * k], solved);
        }
        for i in (start..end).rev() {
            let xi = block[i - start] * inverse[i - start];
            block[i - start] = xi;
            for j in start..i {
                block[j - start] = A::fma(-u[j * k + i], xi, block[j - start]);
            }
        }
        end = start;
    }
}

/// `1 / U_ii` for the rows `rows` (at most `SOLVE_BLOCK`), from the first slot on.
#[inline(always)]
fn reciprocals(u: &[f64], k: usize, rows: std::ops::Range<usize>) -> [f64; SOLVE_BLOCK] {
    let mut inverse = [1.0; SOLVE_BLOCK];
    for (slot, i) in inverse.iter_mut().zip(rows) {
        *slot = 1.0 / u[i * k + i];
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::testing::{avx512_or_skip, fused, fused_avx512, generic_fused};
    use crate::simd::Unfused;

    /// `B B^T + shift I` for a fixed `k x k` matrix B: symmetric positive definite.
    fn positive_definite(k: usize, seed: usize, shift: f64) -> Vec<f64> {
        let b: Vec<f64> = (0..k * k)
            .map(|i| ((i * seed % 29) as f64) / 29.0 - 0.45)
            .collect();
        let mut a = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                a[i * k + j] = (0..k).map(|t| b[i * k + t] * b[j * k + t]).sum::<f64>()
                    + if i == j { shift } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn solves_by_residual() {
        for k in [1, 2, 7, 8, 9, 16, 33, 64, 70] {
            let a = positive_definite(k, 31, 1.0);
            let rhs: Vec<f64> = (0..k).map(|i| i as f64 - 1.5).collect();
            let mut u = a.clone();
            let mut x = rhs.clone();
            assert!(factor(Unfused, &mut u, k, &mut x));
            solve_back::<Unfused>(&u, k, &mut x);
            for i in 0..k {
                let ax: f64 = (0..k).map(|j| a[i * k + j] * x[j]).sum();
                assert!((ax - rhs[i]).abs() < 1e-9, "k={k} i={i}");
            }
        }
    }

    /// The unblocked right-looking factorisation: row `c` scaled, then `u[c][r] u[c][r..]`
    /// subtracted from each row `r > c` with one FMA per entry. Every entry of `factor`'s result
    /// is the same chain of FMAs over `c`, however its panels and tiles group them.
    fn factor_unblocked<A: Arith>(a: &mut [f64], k: usize) {
        for c in 0..k {
            let diagonal = a[c * k + c].sqrt();
            let inverse = 1.0 / diagonal;
            a[c * k + c] = diagonal;
            for v in &mut a[c * k + c + 1..(c + 1) * k] {
                *v *= inverse;
            }
            for r in c + 1..k {
                let coefficient = -a[c * k + r];
                for col in r..k {
                    a[r * k + col] = A::fma(coefficient, a[c * k + col], a[r * k + col]);
                }
            }
        }
    }

    fn upper_bits(a: &[f64], k: usize) -> Vec<u64> {
        (0..k)
            .flat_map(|r| a[r * k + r..(r + 1) * k].iter().map(|v| v.to_bits()))
            .collect()
    }

    fn check_tiles_keep_each_entrys_chain<A: Arith>(arith: A) {
        // 370: a matrix beyond `COLUMNS_OUTERMOST_UP_TO` (1.04 MiB), whose rows go outermost.
        for k in (1..=21).chain([31, 32, 33, 40, 64, 70, 129, 370]) {
            let mut a = positive_definite(k, 37, 0.5);
            let mut tiled = a.clone();
            let rhs: Vec<f64> = (0..k).map(|i| (i * 7 % 5) as f64 - 1.7).collect();
            let mut y = rhs.clone();
            assert!(factor(arith, &mut tiled, k, &mut y));
            factor_unblocked::<A>(&mut a, k);
            assert_eq!(upper_bits(&tiled, k), upper_bits(&a, k), "k={k}");
            // The fused forward substitution is the column-by-column one after the factorisation.
            let mut want = rhs;
            let inverse: Vec<f64> = (0..k).map(|i| 1.0 / a[i * k + i]).collect();
            solve_forward::<A>(&a, k, &inverse, &mut want);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want), "k={k}: forward substitution");
        }
    }

    #[test]
    fn panels_and_tiles_keep_each_entrys_fma_chain_at_every_level() {
        check_tiles_keep_each_entrys_chain(Unfused);
        check_tiles_keep_each_entrys_chain(generic_fused());
        if let Some(fused) = fused() {
            check_tiles_keep_each_entrys_chain(fused);
        }
        if avx512_or_skip("panels_and_tiles_keep_each_entrys_fma_chain_at_every_level").is_some() {
            check_tiles_keep_each_entrys_chain(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    #[test]
    fn reports_indefinite_matrices() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!factor(Unfused, &mut a, 2, &mut [1.0, 1.0]));
        let mut zero = vec![0.0; 4];
        assert!(!factor(Unfused, &mut zero, 2, &mut [1.0, 1.0]));
    }
}
