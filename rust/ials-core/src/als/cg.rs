//! Conjugate-gradient row solves (Takacs, Pilaszy & Tikk 2011): a few warm-started steps per row,
//! which only ever multiply by `A_u`, never form it.

use crate::csr::CsrView;
use crate::linalg::{axpy, dot, symv_panels, symv_rows, PanelMatrix};
use crate::simd::{prefetch, Arith, Kernel};
use crate::Real;

use super::data_term::{add_data_term, add_residual_term, DataTerm};
use super::objective::Objective;

/// How many interactions ahead the first pass over a row's items (the initial residual, which
/// brings them into cache for the CG steps) prefetches item rows, counting on into the following
/// rows, so that a row's first items arrive while the row before it is worked on. Measured
/// against 4 ahead within the row: 5-11% faster at 64 and 128 factors (gowalla, 1 and 2
/// threads); 16 to 64 ahead did about the same.
const PREFETCH_AHEAD: usize = 16;

/// Rows advanced through CG together once the Gram matrix outgrows L1, unless it is packed and
/// large enough for the whole chunk to go together (see `CgRows::run`): four, or eight where
/// AVX-512's 32 registers hold their accumulators (the panel product's group sizes).
const LOCKSTEP: usize = 4;
const LOCKSTEP_WIDE: usize = 8;
/// Gram matrices up to this size (bytes) stay in L1 across rows: one row at a time is faster then.
const GRAM_IN_L1: usize = 32 * 1024;

/// Gram matrices from this size (bytes) on are packed in panels: the panel product reads each
/// entry once per group of rows from contiguous memory, where the row-major mat-vec strides `4k`
/// bytes down a column block. Below it the matrix is served from L1 or L2 row by row about as fast
/// (measured with panels in lock-step groups: 0.95x-1.06x at 128 factors, 1.06x-1.10x at 256 with
/// AVX-512 and 1.03x-1.06x with AVX2; the same bits).
const PANELS_FROM: usize = 256 * 1024;
/// Packed Gram matrices larger than this (bytes) have every row of a chunk go through CG together,
/// so that each panel, read from L2 or beyond, serves 32 rows. Below it the lock-step groups keep
/// their item rows in L1 across CG steps, which 32 rows do not (measured: 7-10% slower with the
/// whole chunk at 64 to 256 factors, 22% faster at 512, 3x at 1024).
const WHOLE_CHUNK_FROM: usize = 512 * 1024;

/// `weighted_gram` packed for [`symv_panels`] where that pays: `T` is f32, `k` a multiple of the
/// panel width and the matrix at least [`PANELS_FROM`].
pub(crate) fn gram_panels<T: Real>(weighted_gram: &[T], k: usize) -> Option<PanelMatrix> {
    if std::mem::size_of_val(weighted_gram) < PANELS_FROM {
        return None;
    }
    crate::simd::as_f32(weighted_gram).and_then(|m| PanelMatrix::new(m, k))
}

/// CG stops once the squared residual norm falls below this (as implicit does).
const CG_TOLERANCE: f64 = 1e-20;

pub(crate) struct CgRows<'a, T> {
    pub(crate) rows: &'a CsrView<'a>,
    pub(crate) first_row: usize,
    pub(crate) x: &'a mut [T],
    pub(crate) y: &'a [T],
    pub(crate) k: usize,
    pub(crate) gram: GramOperator<'a, T>,
    pub(crate) objective: &'a Objective,
    pub(crate) steps: usize,
}

impl<T: Real> Kernel for CgRows<'_, T> {
    type Output = ();

    /// Once the Gram matrix no longer fits L1 (at 128 factors it is 64 KB and streams from L2),
    /// rows go `LOCKSTEP` at a time (`LOCKSTEP_WIDE` with AVX-512, at every size), so each pass
    /// over it serves all of them; with the matrix packed in panels those are the panel product's
    /// groups (see `linalg::panels`), and past [`WHOLE_CHUNK_FROM`] every row of the chunk goes
    /// through CG together, so that each CG step's products `M p_u` form one small matrix product
    /// over the chunk. Each row's arithmetic is unchanged: its result does not depend on the rows
    /// beside it.
    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let CgRows {
            rows,
            first_row,
            x,
            y,
            k,
            gram,
            objective,
            steps,
        } = self;
        let item = |c: i32| &y[c as usize * k..(c as usize + 1) * k];
        let w0 = T::from_f64(objective.unobserved_weight);
        let tolerance = T::from_f64(CG_TOLERANCE);
        // AVX-512 vectors are too wide for one row alone to keep enough FMA chains in flight
        // below 128 factors; the rows' results are the same bits either way.
        let together = match gram {
            // Nothing to share in the Gram product; the groups stay (one, four and eight rows
            // measured level at 128 to 512 factors).
            GramOperator::Tridiagonal { .. } if arith.avx512().is_some() => LOCKSTEP_WIDE,
            GramOperator::Tridiagonal { .. } => LOCKSTEP,
            GramOperator::Dense { matrix, panels } => {
                if panels.is_some() && std::mem::size_of_val(matrix) > WHOLE_CHUNK_FROM {
                    x.len() / k
                } else if arith.avx512().is_some() {
                    LOCKSTEP_WIDE
                } else if std::mem::size_of_val(matrix) > GRAM_IN_L1 {
                    LOCKSTEP
                } else {
                    1
                }
            }
        };
        let mut scratch = vec![T::ZERO; 3 * together * k];
        let (r_all, rest) = scratch.split_at_mut(together * k);
        let (p_all, ap_all) = rest.split_at_mut(together * k);
        // Per lane, `c_ui - alpha0` of each interaction; and scratch for the data term.
        let mut weights = vec![Vec::new(); together];
        let (mut dots, mut targets, mut interleaved) = (Vec::new(), Vec::new(), Vec::new());
        let (mut lambda, mut rs_old) = (vec![T::ZERO; together], vec![T::ZERO; together]);
        let mut active = vec![false; together];
        for (group, xs) in x.chunks_mut(together * k).enumerate() {
            let first = first_row + group * together;
            let lanes = xs.len() / k;
            let (r_all, p_all, ap_all) = (
                &mut r_all[..lanes * k],
                &mut p_all[..lanes * k],
                &mut ap_all[..lanes * k],
            );
            active.fill(false);

            // r = b - A x
            gram_times(arith, gram, k, xs, r_all, &mut interleaved);
            for lane in 0..lanes {
                let (cols, vals) = rows.row(first + lane);
                let x = &mut xs[lane * k..(lane + 1) * k];
                if cols.is_empty() {
                    x.fill(T::ZERO);
                    continue;
                }
                lambda[lane] = T::from_f64(objective.row_regularization(cols.len(), rows.n_cols()));
                let r = &mut r_all[lane * k..(lane + 1) * k];
                for (ri, &xi) in r.iter_mut().zip(x.iter()) {
                    *ri = -A::fma(lambda[lane], xi, *ri);
                }
                let upcoming = rows.columns_from(first + lane);
                weights[lane].clear();
                targets.clear();
                for (j, &v) in vals.iter().enumerate() {
                    if let Some(&ahead) = upcoming.get(j + PREFETCH_AHEAD) {
                        prefetch(item(ahead));
                    }
                    let (confidence, preference) = objective.cell(v);
                    let confidence = T::from_f32(confidence);
                    weights[lane].push(confidence - w0);
                    targets.push(confidence * T::from_f32(preference));
                }
                let term = DataTerm::of_row(rows, first + lane, y, k, &weights[lane]);
                add_residual_term(arith, &term, &targets, x, r, &mut dots);
                p_all[lane * k..(lane + 1) * k].copy_from_slice(r);
                rs_old[lane] = dot(arith, r, r);
                active[lane] = rs_old[lane] >= tolerance;
            }
            for _ in 0..steps {
                if !active.contains(&true) {
                    break;
                }
                // ap = A p
                gram_times(arith, gram, k, p_all, ap_all, &mut interleaved);
                for lane in 0..lanes {
                    if !active[lane] {
                        continue;
                    }
                    let at = lane * k..(lane + 1) * k;
                    let (x, r) = (&mut xs[at.clone()], &mut r_all[at.clone()]);
                    let (p, ap) = (&mut p_all[at.clone()], &mut ap_all[at]);
                    axpy::<T, A>(lambda[lane], p, ap);
                    let term = DataTerm::of_row(rows, first + lane, y, k, &weights[lane]);
                    add_data_term(arith, &term, p, ap, &mut dots);
                    let curvature = dot(arith, p, ap);
                    // Only a singular system (no regularization, no data along p) stops here;
                    // going on would divide by zero and fill the row with NaN.
                    if !(curvature > T::ZERO && curvature.is_finite()) {
                        active[lane] = false;
                        continue;
                    }
                    let step = rs_old[lane] / curvature;
                    axpy::<T, A>(step, p, x);
                    axpy::<T, A>(-step, ap, r);
                    let rs_new = dot(arith, r, r);
                    if rs_new < tolerance {
                        active[lane] = false;
                        continue;
                    }
                    let beta = rs_new / rs_old[lane];
                    for (pi, &ri) in p.iter_mut().zip(r.iter()) {
                        *pi = A::fma(beta, *pi, ri);
                    }
                    rs_old[lane] = rs_new;
                }
            }
        }
    }
}

/// How a CG step multiplies by the weighted Gram matrix `alpha0 Y^T Y`.
#[derive(Clone, Copy)]
pub(crate) enum GramOperator<'a, T> {
    /// Row-major `k x k`, with its packing in panels where that pays ([`gram_panels`]).
    Dense {
        matrix: &'a [T],
        panels: Option<&'a PanelMatrix>,
    },
    /// Zero off its three diagonals, as in the basis of `als::basis`: `3k` operations a product
    /// instead of `k^2`. `diagonal` has `k` entries, `off_diagonal` `k - 1`.
    Tridiagonal {
        diagonal: &'a [T],
        off_diagonal: &'a [T],
    },
}

/// The diagonal and off-diagonal of the row-major `k x k` matrix `m` when every other entry is
/// zero and it is symmetric; `None` otherwise (or for `k < 3`, where there is nothing to save).
pub(crate) fn tridiagonal_parts<T: Real>(m: &[T], k: usize) -> Option<(Vec<T>, Vec<T>)> {
    if k < 3 || m.len() != k * k {
        return None;
    }
    for (i, row) in m.chunks_exact(k).enumerate() {
        let band = i.saturating_sub(1)..(i + 2).min(k);
        if row[..band.start]
            .iter()
            .chain(&row[band.end..])
            .any(|&v| v != T::ZERO)
        {
            return None;
        }
        if i + 1 < k && row[i + 1] != m[(i + 1) * k + i] {
            return None;
        }
    }
    let diagonal = (0..k).map(|i| m[i * k + i]).collect();
    let off_diagonal = (0..k - 1).map(|i| m[i * k + i + 1]).collect();
    Some((diagonal, off_diagonal))
}

/// `outs_r = M vs_r` for every row of the block `vs`: tridiagonal, through the panels where there
/// are any (`T` is f32 then), else row-major. (A function, not a closure: a closure would not be
/// inlined into the caller's instruction set.)
#[inline(always)]
fn gram_times<T: Real, A: Arith>(
    arith: A,
    gram: GramOperator<'_, T>,
    k: usize,
    vs: &[T],
    outs: &mut [T],
    scratch: &mut Vec<f32>,
) {
    let (gram, panels) = match gram {
        GramOperator::Tridiagonal {
            diagonal,
            off_diagonal,
        } => return tridiagonal_times::<T, A>(diagonal, off_diagonal, vs, outs),
        GramOperator::Dense { matrix, panels } => (matrix, panels),
    };
    if let Some(panels) = panels {
        let f32s = (
            crate::simd::as_f32(gram),
            crate::simd::as_f32(vs),
            crate::simd::as_f32_mut(outs),
        );
        if let (Some(m), Some(vs), Some(outs)) = f32s {
            return symv_panels(arith, m, panels, vs, outs, scratch);
        }
    }
    symv_rows(arith, gram, k, vs, outs);
}

/// `out_r = T v_r` for the symmetric tridiagonal `T`: each output the dense product's FMA chain
/// over rows `b - 1`, `b`, `b + 1` of `T` in order (the other rows add exact zeros), so the same
/// bits as [`symv_rows`] on `T` written out, but for the sign of an output that is exactly 0.
#[inline(always)]
fn tridiagonal_times<T: Real, A: Arith>(
    diagonal: &[T],
    off_diagonal: &[T],
    vs: &[T],
    outs: &mut [T],
) {
    let k = diagonal.len();
    assert!(k >= 2 && off_diagonal.len() == k - 1 && vs.len() == outs.len());
    for (v, out) in vs.chunks_exact(k).zip(outs.chunks_exact_mut(k)) {
        out[0] = A::fma(v[1], off_diagonal[0], A::fma(v[0], diagonal[0], T::ZERO));
        for b in 1..k - 1 {
            let below = A::fma(v[b - 1], off_diagonal[b - 1], T::ZERO);
            let centre = A::fma(v[b], diagonal[b], below);
            out[b] = A::fma(v[b + 1], off_diagonal[b], centre);
        }
        out[k - 1] = A::fma(
            v[k - 1],
            diagonal[k - 1],
            A::fma(v[k - 2], off_diagonal[k - 2], T::ZERO),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::bits;
    use crate::simd::testing::{avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused};

    /// Every row of `rows` after three CG steps from `x` against `y`, at `arith`.
    fn three_steps<T: Real, A: Arith>(
        arith: A,
        rows: &crate::csr::CsrMatrix,
        mut x: Vec<T>,
        y: &[T],
        gram: GramOperator<'_, T>,
        objective: &Objective,
    ) -> Vec<T> {
        CgRows {
            rows: &rows.view(),
            first_row: 0,
            k: y.len() / rows.view().n_cols(),
            x: &mut x,
            y,
            gram,
            objective,
            steps: 3,
        }
        .run(arith);
        x
    }

    /// A chunk of rows solved with the Gram matrix packed in panels and without (rows four or
    /// eight at a time, row-major): the same bits, at every level the CPU has. Packed, at 64
    /// factors the panel product's groups go through CG in lock step; at 384 (576 KiB, past
    /// `WHOLE_CHUNK_FROM`) the whole chunk does.
    fn panels_change_no_bit<A: Arith>(arith: A) {
        for k in [64, 384] {
            panels_change_no_bit_at(arith, k);
        }
    }

    fn panels_change_no_bit_at<A: Arith>(arith: A, k: usize) {
        use crate::csr::CsrMatrix;
        let (n_rows, n_cols) = (29, 50);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..n_rows {
            // Row 3 stays empty; the others have 1 to 16 interactions.
            for c in (0..n_cols).filter(|c| r != 3 && (r * 7 + c * 3) % (2 + r % 15) == 0) {
                indices.push(c as i32);
                data.push(1.0 + ((r * c) % 4) as f32);
            }
            indptr.push(indices.len() as i64);
        }
        let rows = CsrMatrix::new(indptr, indices, data, n_cols).unwrap();
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 37 + seed * 11) % 23) as f32 / 23.0 - 0.4)
                .collect()
        };
        let y = values(n_cols * k, 2);
        let gram: Vec<f32> = (0..k * k)
            .map(|ij| {
                let (a, b) = (ij / k, ij % k);
                (0..n_cols)
                    .map(|c| y[c * k + a] * y[c * k + b])
                    .sum::<f32>()
                    * 0.5
            })
            .collect();
        let panels = PanelMatrix::new(&gram, k).unwrap();
        let objective = Objective {
            regularization: 0.1,
            alpha: 2.0,
            regularization_exponent: 1.0,
            unobserved_weight: 0.5,
        };
        let solve = |panels: Option<&PanelMatrix>| {
            let gram = GramOperator::Dense {
                matrix: &gram,
                panels,
            };
            three_steps(arith, &rows, values(n_rows * k, 1), &y, gram, &objective)
        };
        let (packed, row_major) = (solve(Some(&panels)), solve(None));
        assert!(packed.iter().all(|v| v.is_finite()));
        assert_eq!(bits(&packed), bits(&row_major), "k={k}");
        assert_ne!(
            bits(&packed),
            bits(&values(n_rows * k, 1)),
            "the rows moved"
        );
    }

    #[test]
    fn cg_with_panels_is_cg_without_on_every_level() {
        panels_change_no_bit(generic_fused());
        let name = "cg_with_panels_is_cg_without_on_every_level (AVX2)";
        if avx2_or_skip(name).is_some() {
            panels_change_no_bit(fused().expect("the CPU has AVX2"));
        }
        let name = "cg_with_panels_is_cg_without_on_every_level (AVX-512)";
        if avx512_or_skip(name).is_some() {
            panels_change_no_bit(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    /// CG with a tridiagonal Gram matrix applied as such and as the dense matrix it is: the same
    /// bits, at every level (f32 and f64).
    fn tridiagonal_changes_no_bit<T: Real, A: Arith>(arith: A) {
        use crate::csr::CsrMatrix;
        let (n_rows, n_cols, k) = (13, 30, 24);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..n_rows {
            for c in (0..n_cols).filter(|c| r != 2 && (r * 5 + c * 7) % (3 + r % 5) == 0) {
                indices.push(c as i32);
                data.push(1.0 + ((r + c) % 3) as f32);
            }
            indptr.push(indices.len() as i64);
        }
        let rows = CsrMatrix::new(indptr, indices, data, n_cols).unwrap();
        let values = |n: usize, seed: usize| -> Vec<T> {
            (0..n)
                .map(|i| T::from_f64(((i * 29 + seed * 13) % 19) as f64 / 19.0 - 0.45))
                .collect()
        };
        let y = values(n_cols * k, 3);
        let mut dense = vec![T::ZERO; k * k];
        for i in 0..k {
            dense[i * k + i] = T::from_f64(3.0 + (i % 5) as f64);
            if i + 1 < k {
                let e = T::from_f64(0.7 - (i % 4) as f64 * 0.3);
                dense[i * k + i + 1] = e;
                dense[(i + 1) * k + i] = e;
            }
        }
        let (diagonal, off_diagonal) = tridiagonal_parts(&dense, k).expect("tridiagonal");
        let objective = Objective {
            regularization: 0.2,
            alpha: 3.0,
            regularization_exponent: 0.5,
            unobserved_weight: 0.7,
        };
        let solve = |gram: GramOperator<'_, T>| {
            three_steps(arith, &rows, values(n_rows * k, 1), &y, gram, &objective)
        };
        let banded = solve(GramOperator::Tridiagonal {
            diagonal: &diagonal,
            off_diagonal: &off_diagonal,
        });
        let full = solve(GramOperator::Dense {
            matrix: &dense,
            panels: None,
        });
        // f32 widens to f64 exactly, so equal f64 bits are equal bits.
        let bits = |v: &[T]| -> Vec<u64> { v.iter().map(|x| x.to_f64().to_bits()).collect() };
        assert!(banded.iter().all(|v| v.is_finite()));
        assert_eq!(bits(&banded), bits(&full));
        assert_ne!(
            bits(&banded),
            bits(&values(n_rows * k, 1)),
            "the rows moved"
        );
    }

    #[test]
    fn cg_with_a_tridiagonal_gram_is_cg_with_it_dense_on_every_level() {
        tridiagonal_changes_no_bit::<f32, _>(generic_fused());
        tridiagonal_changes_no_bit::<f64, _>(generic_fused());
        let name = "cg_with_a_tridiagonal_gram_is_cg_with_it_dense_on_every_level (AVX2)";
        if avx2_or_skip(name).is_some() {
            tridiagonal_changes_no_bit::<f32, _>(fused().expect("the CPU has AVX2"));
            tridiagonal_changes_no_bit::<f64, _>(fused().expect("the CPU has AVX2"));
        }
        let name = "cg_with_a_tridiagonal_gram_is_cg_with_it_dense_on_every_level (AVX-512)";
        if avx512_or_skip(name).is_some() {
            tridiagonal_changes_no_bit::<f32, _>(fused_avx512().expect("the CPU has AVX-512"));
            tridiagonal_changes_no_bit::<f64, _>(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    #[test]
    fn only_tridiagonal_symmetric_matrices_are_taken_as_such() {
        let k = 5;
        let mut m = vec![0.0f32; k * k];
        for i in 0..k {
            m[i * k + i] = 2.0;
            if i + 1 < k {
                m[i * k + i + 1] = -1.0;
                m[(i + 1) * k + i] = -1.0;
            }
        }
        let (d, e) = tridiagonal_parts(&m, k).expect("tridiagonal");
        assert_eq!((d, e), (vec![2.0; 5], vec![-1.0; 4]));
        let mut wide = m.clone();
        wide[2] = 1e-30;
        assert!(
            tridiagonal_parts(&wide, k).is_none(),
            "an entry two off the diagonal"
        );
        let mut lopsided = m.clone();
        lopsided[k + 2] = -0.5;
        assert!(tridiagonal_parts(&lopsided, k).is_none(), "not symmetric");
        assert!(
            tridiagonal_parts(&m[..4], 2).is_none(),
            "k < 3: nothing to save"
        );
    }

    #[test]
    fn only_large_f32_gram_matrices_are_packed() {
        let zeros = |k: usize| vec![0.0f32; k * k];
        assert!(
            gram_panels(&zeros(224), 224).is_none(),
            "196 KiB stays row-major"
        );
        assert!(gram_panels(&zeros(256), 256).is_some());
        assert!(gram_panels(&zeros(384), 384).is_some());
        assert!(
            gram_panels(&zeros(400), 400).is_none(),
            "not a multiple of the panel"
        );
        assert!(gram_panels(&vec![0.0f64; 384 * 384], 384).is_none(), "f64");
    }
}
