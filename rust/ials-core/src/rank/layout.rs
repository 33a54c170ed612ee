//! How items and queries are laid out for the ranking kernels: strips of [`STRIP`] items and
//! groups of [`MICRO`] queries, both factor-major, so the micro-kernel reads two contiguous
//! streams.

use rayon::prelude::*;

use crate::Real;

/// Queries scored together against one strip (6 x 2 accumulator registers of 8 lanes: enough
/// independent FMA chains to cover the FMA latency at full throughput).
pub(crate) const MICRO: usize = 6;
/// Items per packed strip: the width of one micro-kernel pass.
pub(crate) const STRIP: usize = 16;
/// Item rows scored together where they lie (see `rank::rows`): sixteen FMA chains, two vectors
/// of eight lanes.
pub(crate) const ROWS: usize = 16;

/// Scores of one group against one strip (`scores.0[m][j]`: query m, item j), aligned so that
/// the kernel's vector stores never straddle cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct StripScores<T>(pub(crate) [[T; STRIP]; MICRO]);

impl<T: Real> Default for StripScores<T> {
    fn default() -> Self {
        Self([[T::ZERO; STRIP]; MICRO])
    }
}

/// One factor of a strip's items, aligned to 32 bytes so that no 32-byte load of the
/// micro-kernel straddles two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Column<T>([T; STRIP]);

/// Candidate item rows packed strip by strip, factor-major: strip s holds `k x STRIP` values
/// with item `candidate_ids[s * STRIP + j]` in column j (zero beyond the last candidate).
pub(crate) struct PackedStrips<T> {
    columns: Vec<Column<T>>,
    k: usize,
}

impl<T: Real> PackedStrips<T> {
    pub(crate) fn new(items: &[T], k: usize, candidate_ids: &[i32]) -> Self {
        // STRIP values of 4 or 8 bytes fill whole 32-byte blocks: the columns are contiguous.
        assert_eq!(
            std::mem::size_of::<Column<T>>(),
            STRIP * std::mem::size_of::<T>()
        );
        let n_strips = candidate_ids.len().div_ceil(STRIP);
        let mut columns = vec![Column([T::ZERO; STRIP]); n_strips * k];
        columns
            .par_chunks_mut(k.max(1))
            .zip(candidate_ids.par_chunks(STRIP))
            .for_each(|(strip, ids)| {
                for (j, &id) in ids.iter().enumerate() {
                    let row = &items[id as usize * k..(id as usize + 1) * k];
                    for (column, &v) in strip.iter_mut().zip(row) {
                        column.0[j] = v;
                    }
                }
            });
        Self { columns, k }
    }

    /// Strip `s`: `k x STRIP` values, factor-major.
    pub(crate) fn strip(&self, s: usize) -> &[T] {
        let columns = &self.columns[s * self.k..(s + 1) * self.k];
        // SAFETY: `Column<T>` is `repr(C)` around `[T; STRIP]` with no padding (asserted in
        // `new`), so `columns` is `columns.len() * STRIP` initialised values of `T`.
        unsafe { std::slice::from_raw_parts(columns.as_ptr().cast::<T>(), columns.len() * STRIP) }
    }
}

/// The query rows (each `k` long) in groups of `MICRO`, factor-major (`group[d * MICRO + m]`),
/// the last group zero-padded.
pub(crate) fn pack_groups<'a, T: Real>(
    rows: impl ExactSizeIterator<Item = &'a [T]>,
    k: usize,
) -> Vec<T> {
    let mut groups = vec![T::ZERO; rows.len().div_ceil(MICRO) * MICRO * k];
    for (q, row) in rows.enumerate() {
        let group = &mut groups[(q / MICRO) * MICRO * k..];
        for (d, &v) in row.iter().enumerate() {
            group[d * MICRO + q % MICRO] = v;
        }
    }
    groups
}
