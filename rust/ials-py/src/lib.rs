//! `ials._core`: the PyO3 bindings of `ials-core`.
//!
//! Bindings only: [`convert`] borrows the numpy and scipy values Python has already validated and
//! normalised, [`detached`] runs the core without the GIL on the requested pool (stoppable by
//! Ctrl-C), and [`errors`] maps core errors to Python exceptions. Each function accepts float32
//! or float64 factors and dispatches once to the core's generic code.

mod convert;
mod detached;
mod errors;

use ials_core::{Exclusions, Real, Solver};
use numpy::ndarray::{Array2, Array3};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArray3, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArray3, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use convert::{
    mixed_dtypes, slice, slice_mut, width, Csr, CsrParts, Factors, FactorsMut, Objective, Reduction,
};
use detached::{run, run_and_trim};
use errors::CoreError;

/// The parts of the training objective over a block of rows (see `ials_core::LossTerms`).
#[pyclass(frozen, module = "ials._core", name = "LossTerms")]
struct LossTerms {
    #[pyo3(get)]
    error: f64,
    #[pyo3(get)]
    weight: f64,
    #[pyo3(get)]
    row_penalty: f64,
    #[pyo3(get)]
    column_penalty: f64,
}

impl From<ials_core::LossTerms> for LossTerms {
    fn from(t: ials_core::LossTerms) -> Self {
        Self::new(t.error, t.weight, t.row_penalty, t.column_penalty)
    }
}

#[pymethods]
impl LossTerms {
    /// Parts added up by the caller (a distributed fit sums them over blocks of rows).
    #[new]
    fn new(error: f64, weight: f64, row_penalty: f64, column_penalty: f64) -> Self {
        Self {
            error,
            weight,
            row_penalty,
            column_penalty,
        }
    }

    /// Pickled as its constructor call, so it travels back from Dask workers.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduction<'py>> {
        let t = slf.get();
        let arguments = (t.error, t.weight, t.row_penalty, t.column_penalty);
        Ok((slf.get_type().into_any(), arguments))
    }

    /// The objective normalised by the total weight, as implicit reports it.
    fn normalised(&self) -> f64 {
        ials_core::LossTerms {
            error: self.error,
            weight: self.weight,
            row_penalty: self.row_penalty,
            column_penalty: self.column_penalty,
        }
        .normalised()
    }
}

/// How each row's least-squares problem is solved (see `ials_core::Solver`).
#[pyclass(frozen, from_py_object, module = "ials._core", name = "Solver")]
#[derive(Clone)]
struct RowSolver(Solver);

#[pymethods]
impl RowSolver {
    /// `steps` warm-started conjugate-gradient steps per row.
    #[staticmethod]
    fn cg(steps: usize) -> PyResult<Self> {
        if steps == 0 {
            return Err(PyValueError::new_err("cg_steps must be >= 1, got 0"));
        }
        Ok(Self(Solver::ConjugateGradient { steps }))
    }

    /// Each row's system factored exactly (Cholesky, f64).
    #[staticmethod]
    fn cholesky() -> Self {
        Self(Solver::Cholesky)
    }

    /// `sweeps` passes of block coordinate descent over blocks of `size` coordinates (iALS++).
    #[staticmethod]
    fn block(size: usize, sweeps: usize) -> PyResult<Self> {
        if size == 0 || sweeps == 0 {
            return Err(PyValueError::new_err(format!(
                "block_size and block_sweeps must be >= 1, got {size} and {sweeps}"
            )));
        }
        Ok(Self(Solver::Block { size, sweeps }))
    }

    fn __repr__(&self) -> String {
        match self.0 {
            Solver::ConjugateGradient { steps } => format!("Solver.cg({steps})"),
            Solver::Cholesky => "Solver.cholesky()".into(),
            Solver::Block { size, sweeps } => format!("Solver.block({size}, {sweeps})"),
        }
    }
}

/// The bytes of `len` f64 values, saturating.
fn f64_bytes(len: usize) -> usize {
    len.saturating_mul(std::mem::size_of::<f64>())
}

/// One half-sweep: solves every row of `x` against the fixed `y`, in place.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn solve_rows(
    py: Python<'_>,
    rows: Csr<'_>,
    x: FactorsMut<'_>,
    y: Factors<'_>,
    gram: PyReadonlyArray2<'_, f64>,
    objective: Objective,
    solver: RowSolver,
    num_threads: usize,
) -> PyResult<()> {
    fn typed<T: Real + Element>(
        py: Python<'_>,
        rows: &Csr<'_>,
        mut x: PyReadwriteArray2<'_, T>,
        y: PyReadonlyArray2<'_, T>,
        gram: &[f64],
        objective: &ials_core::Objective,
        solver: Solver,
        num_threads: usize,
    ) -> PyResult<()> {
        let rows = rows.parts()?;
        let k = width(&y);
        let y = slice(&y, "y")?;
        let x = slice_mut(&mut x, "x")?;
        // The exact solve's transformed items (one f64 row per item of `y`) are mapped pages,
        // returned when it ends; the k x k buffers come from the allocator.
        let buffer = k.saturating_mul(k);
        run_and_trim(py, num_threads, f64_bytes(buffer), |stop| {
            ials_core::solve_rows(&rows.view()?, x, y, k, gram, objective, solver, stop)
        })
    }
    let solver = solver.0;
    let gram = slice(&gram, "gram")?;
    let o = &objective.core();
    match (x, y) {
        (FactorsMut::F32(x), Factors::F32(y)) => {
            typed(py, &rows, x, y, gram, o, solver, num_threads)
        }
        (FactorsMut::F64(x), Factors::F64(y)) => {
            typed(py, &rows, x, y, gram, o, solver, num_threads)
        }
        _ => Err(mixed_dtypes()),
    }
}

/// A row's normal equations `(A, b)`.
type System<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>);

/// `(A, b)` of one row's normal equations (both float64), the row given by its item `indices`
/// and `data`.
#[pyfunction]
fn normal_equations<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray1<'py, i32>,
    data: PyReadonlyArray1<'py, f32>,
    y: Factors<'py>,
    gram: PyReadonlyArray2<'py, f64>,
    objective: Objective,
) -> PyResult<System<'py>> {
    fn typed<T: Real + Element>(
        indices: &[i32],
        data: &[f32],
        y: &PyReadonlyArray2<'_, T>,
        gram: &[f64],
        objective: &ials_core::Objective,
    ) -> PyResult<(Vec<f64>, Vec<f64>, usize)> {
        let k = width(y);
        let (a, b) =
            ials_core::row_normal_equations(indices, data, slice(y, "y")?, k, gram, objective)
                .map_err(CoreError)?;
        Ok((a, b, k))
    }
    let (indices, data) = (slice(&indices, "indices")?, slice(&data, "data")?);
    let gram = slice(&gram, "gram")?;
    let (a, b, k) = match &y {
        Factors::F32(y) => typed(indices, data, y, gram, &objective.core())?,
        Factors::F64(y) => typed(indices, data, y, gram, &objective.core())?,
    };
    let a = Array2::from_shape_vec((k, k), a).expect("k x k system");
    Ok((a.into_pyarray(py), b.into_pyarray(py)))
}

/// `y.T @ y` in f64 as the solvers use it: the Gram matrices of `y`'s `GRAM_BLOCK_ROWS`-row
/// blocks added in block order (bitwise [`gram_sum`] of [`gram_blocks`], for any thread count),
/// without holding every block at once.
#[pyfunction]
fn gram<'py>(
    py: Python<'py>,
    y: Factors<'py>,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    fn typed<T: Real + Element>(
        py: Python<'_>,
        y: &PyReadonlyArray2<'_, T>,
        num_threads: usize,
    ) -> PyResult<(Vec<f64>, usize)> {
        let k = width(y);
        let y = slice(y, "y")?;
        Ok((
            run_and_trim(py, num_threads, f64_bytes(k.saturating_mul(k)), |stop| {
                ials_core::gram(y, k, stop)
            })?,
            k,
        ))
    }
    let (total, k) = match &y {
        Factors::F32(y) => typed(py, y, num_threads)?,
        Factors::F64(y) => typed(py, y, num_threads)?,
    };
    let total = Array2::from_shape_vec((k, k), total).expect("k x k");
    Ok(total.into_pyarray(py))
}

/// The Gram matrix of each `GRAM_BLOCK_ROWS`-row block of `y`, stacked in block order; their
/// sum in that order ([`gram_sum`]) is `y.T @ y` as the solvers use it.
#[pyfunction]
fn gram_blocks<'py>(
    py: Python<'py>,
    y: Factors<'py>,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    fn typed<T: Real + Element>(
        py: Python<'_>,
        y: &PyReadonlyArray2<'_, T>,
        num_threads: usize,
    ) -> PyResult<(Vec<Vec<f64>>, usize)> {
        let k = width(y);
        let y = slice(y, "y")?;
        Ok((
            run(py, num_threads, |stop| ials_core::gram_blocks(y, k, stop))?,
            k,
        ))
    }
    let (blocks, k) = match &y {
        Factors::F32(y) => typed(py, y, num_threads)?,
        Factors::F64(y) => typed(py, y, num_threads)?,
    };
    let n_blocks = blocks.len();
    let flat = blocks.concat();
    let stacked = Array3::from_shape_vec((n_blocks, k, k), flat).expect("blocks of k x k");
    Ok(stacked.into_pyarray(py))
}

/// The product of the bases a fit has turned its factors to (`ials_core::TurnedBasis`). Each
/// call turns all it turns or nothing: a Ctrl-C meanwhile is raised once the call is done, so the
/// factors never sit in two bases.
#[pyclass(module = "ials._core", name = "TurnedBasis")]
#[derive(Default)]
struct TurnedBasis(ials_core::TurnedBasis);

#[pymethods]
impl TurnedBasis {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Turns `x` and `y` (in place) to the basis in which `gram`, the Gram matrix of `y`, is
    /// tridiagonal; returns that tridiagonal matrix (float64).
    fn reduce<'py>(
        &mut self,
        py: Python<'py>,
        gram: PyReadonlyArray2<'py, f64>,
        x: FactorsMut<'py>,
        y: FactorsMut<'py>,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        fn typed<T: Real + Element>(
            py: Python<'_>,
            basis: &mut ials_core::TurnedBasis,
            gram: &[f64],
            mut x: PyReadwriteArray2<'_, T>,
            mut y: PyReadwriteArray2<'_, T>,
            k: usize,
            num_threads: usize,
        ) -> PyResult<Vec<f64>> {
            same_width(k, x.shape()[1], y.shape()[1])?;
            let (x, y) = (slice_mut(&mut x, "x")?, slice_mut(&mut y, "y")?);
            run(py, num_threads, |_| basis.reduce(gram, x, y, k))
        }
        let k = gram.shape()[0];
        let g = slice(&gram, "gram")?;
        let basis = &mut self.0;
        let t = match (x, y) {
            (FactorsMut::F32(x), FactorsMut::F32(y)) => typed(py, basis, g, x, y, k, num_threads)?,
            (FactorsMut::F64(x), FactorsMut::F64(y)) => typed(py, basis, g, x, y, k, num_threads)?,
            _ => return Err(mixed_dtypes()),
        };
        let t = Array2::from_shape_vec((k, k), t).expect("k x k");
        Ok(t.into_pyarray(py))
    }

    /// Turns `x` and `y` back to the basis they were in before the first `reduce`.
    fn restore(
        &mut self,
        py: Python<'_>,
        x: FactorsMut<'_>,
        y: FactorsMut<'_>,
        num_threads: usize,
    ) -> PyResult<()> {
        fn typed<T: Real + Element>(
            py: Python<'_>,
            basis: &mut ials_core::TurnedBasis,
            mut x: PyReadwriteArray2<'_, T>,
            mut y: PyReadwriteArray2<'_, T>,
            num_threads: usize,
        ) -> PyResult<()> {
            let k = x.shape()[1];
            same_width(k, k, y.shape()[1])?;
            let (x, y) = (slice_mut(&mut x, "x")?, slice_mut(&mut y, "y")?);
            run(py, num_threads, |_| basis.restore(x, y, k))
        }
        let basis = &mut self.0;
        match (x, y) {
            (FactorsMut::F32(x), FactorsMut::F32(y)) => typed(py, basis, x, y, num_threads),
            (FactorsMut::F64(x), FactorsMut::F64(y)) => typed(py, basis, x, y, num_threads),
            _ => Err(mixed_dtypes()),
        }
    }
}

/// `x` and `y` must both have the basis' `k` columns.
fn same_width(k: usize, x: usize, y: usize) -> PyResult<()> {
    if x == k && y == k {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "x and y must have the basis' {k} columns, got {x} and {y}"
        )))
    }
}

/// Whether a half-sweep of `solver` over `n_rows` rows against `n_fixed` fixed ones, `k`
/// factors, turns the factors to the tridiagonal basis (the core's rule).
#[pyfunction]
fn turning_pays(solver: RowSolver, n_rows: usize, n_fixed: usize, k: usize) -> bool {
    ials_core::turning_pays(solver.0, n_rows, n_fixed, k)
}

/// The sum of stacked Gram blocks (`n_blocks x k x k`) in block order.
#[pyfunction]
fn gram_sum<'py>(
    py: Python<'py>,
    blocks: PyReadonlyArray3<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let shape = blocks.shape();
    let (n_blocks, k) = (shape[0], shape[1]);
    if shape[2] != k {
        return Err(PyValueError::new_err(format!(
            "Gram blocks must be square, got {k} x {}",
            shape[2]
        )));
    }
    let flat = slice(&blocks, "blocks")?;
    // `max(1)`: with k = 0 there is nothing to sum, and a chunk size of 0 is not allowed.
    let total = ials_core::gram_sum(flat.chunks_exact((k * k).max(1)).take(n_blocks), k);
    let total = Array2::from_shape_vec((k, k), total).expect("k x k");
    Ok(total.into_pyarray(py))
}

/// The parts of the training objective of `rows` (see `LossTerms`).
#[pyfunction]
fn loss_terms(
    py: Python<'_>,
    rows: Csr<'_>,
    x: Factors<'_>,
    y: Factors<'_>,
    objective: Objective,
    num_threads: usize,
) -> PyResult<LossTerms> {
    fn typed<T: Real + Element>(
        py: Python<'_>,
        rows: &Csr<'_>,
        x: &PyReadonlyArray2<'_, T>,
        y: &PyReadonlyArray2<'_, T>,
        objective: &ials_core::Objective,
        num_threads: usize,
    ) -> PyResult<ials_core::LossTerms> {
        let rows = rows.parts()?;
        let k = width(y);
        let (x, y) = (slice(x, "x")?, slice(y, "y")?);
        run(py, num_threads, |stop| {
            ials_core::loss_terms(&rows.view()?, x, y, k, objective, stop)
        })
    }
    let terms = match (&x, &y) {
        (Factors::F32(x), Factors::F32(y)) => {
            typed(py, &rows, x, y, &objective.core(), num_threads)
        }
        (Factors::F64(x), Factors::F64(y)) => {
            typed(py, &rows, x, y, &objective.core(), num_threads)
        }
        _ => Err(mixed_dtypes()),
    }?;
    Ok(terms.into())
}

/// `sum_u lambda_u |x_u|^2` over the rows of `x`, `lambda_u` by the length of row u of `rows`.
#[pyfunction]
fn penalty(rows: Csr<'_>, x: Factors<'_>, objective: Objective) -> PyResult<f64> {
    let view = rows.view()?;
    let result = match &x {
        Factors::F32(x) => ials_core::penalty(&view, slice(x, "x")?, width(x), &objective.core()),
        Factors::F64(x) => ials_core::penalty(&view, slice(x, "x")?, width(x), &objective.core()),
    };
    Ok(result.map_err(CoreError)?)
}

/// The ids and scores of the best `n` items per query row (`n_queries x n`, padded with -1 and
/// -inf). Rows of `liked` (a CSR, queries x items) and items marked in `blocked` are never
/// returned; only `candidates` (ascending ids) are ranked when given.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn top_k<'py>(
    py: Python<'py>,
    queries: Factors<'py>,
    items: Factors<'py>,
    n: usize,
    liked: Option<Csr<'py>>,
    blocked: Option<PyReadonlyArray1<'py, bool>>,
    candidates: Option<PyReadonlyArray1<'py, i32>>,
    num_threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    #[allow(clippy::too_many_arguments)]
    fn typed<'py, T: Real + Element>(
        py: Python<'py>,
        queries: &PyReadonlyArray2<'py, T>,
        items: &PyReadonlyArray2<'py, T>,
        n: usize,
        liked: Option<&Csr<'py>>,
        blocked: Option<&[bool]>,
        candidates: Option<&[i32]>,
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let k = width(items);
        if width(queries) != k {
            return Err(PyValueError::new_err(format!(
                "the query factors have {} columns but the item factors have {k}",
                width(queries)
            )));
        }
        let n_queries = queries.shape()[0];
        let liked = liked.map(Csr::parts).transpose()?;
        let (queries, items) = (slice(queries, "queries")?, slice(items, "items")?);
        let mut ids = vec![0i32; n_queries * n];
        let mut scores = vec![T::default(); n_queries * n];
        run(py, num_threads, |stop| {
            let exclusions = Exclusions {
                per_query: liked.map(CsrParts::view).transpose()?,
                global: blocked,
            };
            ials_core::top_k(
                queries,
                items,
                k,
                candidates,
                &exclusions,
                n,
                &mut ids,
                &mut scores,
                stop,
            )
        })?;
        ranked(py, n_queries, n, ids, scores)
    }
    let blocked = blocked.as_ref().map(|b| slice(b, "blocked")).transpose()?;
    let candidates = candidates
        .as_ref()
        .map(|c| slice(c, "candidates"))
        .transpose()?;
    let liked = liked.as_ref();
    match (&queries, &items) {
        (Factors::F32(q), Factors::F32(i)) => {
            typed(py, q, i, n, liked, blocked, candidates, num_threads)
        }
        (Factors::F64(q), Factors::F64(i)) => {
            typed(py, q, i, n, liked, blocked, candidates, num_threads)
        }
        _ => Err(mixed_dtypes()),
    }
}

/// Item factors prepared once for many top-K calls (see `ials_core::ItemIndex`): checked,
/// ordered by norm and packed; a copy, so it must be rebuilt when the factors change.
#[pyclass(frozen, module = "ials._core", name = "ItemIndex")]
struct ItemIndex(PreparedItems);

enum PreparedItems {
    F32(ials_core::ItemIndex<f32>),
    F64(ials_core::ItemIndex<f64>),
}

#[pymethods]
impl ItemIndex {
    #[new]
    fn new(py: Python<'_>, items: Factors<'_>, num_threads: usize) -> PyResult<Self> {
        fn typed<T: Real + Element>(
            py: Python<'_>,
            items: &PyReadonlyArray2<'_, T>,
            num_threads: usize,
        ) -> PyResult<ials_core::ItemIndex<T>> {
            let k = width(items);
            let items = slice(items, "items")?;
            run(py, num_threads, |_| ials_core::ItemIndex::new(items, k))
        }
        Ok(Self(match &items {
            Factors::F32(items) => PreparedItems::F32(typed(py, items, num_threads)?),
            Factors::F64(items) => PreparedItems::F64(typed(py, items, num_threads)?),
        }))
    }

    /// `(n_items, factors)` of the factors it was built from.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        match &self.0 {
            PreparedItems::F32(index) => (index.n_items(), index.k()),
            PreparedItems::F64(index) => (index.n_items(), index.k()),
        }
    }

    /// As `top_k` over every item (no `candidates`): the same ids and scores.
    fn top_k<'py>(
        &self,
        py: Python<'py>,
        queries: Factors<'py>,
        n: usize,
        liked: Option<Csr<'py>>,
        blocked: Option<PyReadonlyArray1<'py, bool>>,
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        #[allow(clippy::too_many_arguments)]
        fn typed<'py, T: Real + Element>(
            py: Python<'py>,
            index: &ials_core::ItemIndex<T>,
            queries: &PyReadonlyArray2<'py, T>,
            n: usize,
            liked: Option<&Csr<'py>>,
            blocked: Option<&[bool]>,
            num_threads: usize,
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
            let liked = liked.map(Csr::parts).transpose()?;
            let n_queries = queries.shape()[0];
            let queries = slice(queries, "queries")?;
            let mut ids = vec![0i32; n_queries * n];
            let mut scores = vec![T::default(); n_queries * n];
            run(py, num_threads, |stop| {
                let exclusions = Exclusions {
                    per_query: liked.map(CsrParts::view).transpose()?,
                    global: blocked,
                };
                index.top_k(queries, &exclusions, n, &mut ids, &mut scores, stop)
            })?;
            ranked(py, n_queries, n, ids, scores)
        }
        let blocked = blocked.as_ref().map(|b| slice(b, "blocked")).transpose()?;
        let liked = liked.as_ref();
        match (&self.0, &queries) {
            (PreparedItems::F32(index), Factors::F32(q)) => {
                typed(py, index, q, n, liked, blocked, num_threads)
            }
            (PreparedItems::F64(index), Factors::F64(q)) => {
                typed(py, index, q, n, liked, blocked, num_threads)
            }
            _ => Err(mixed_dtypes()),
        }
    }
}

/// Ids and scores of `n_queries x n` ranked items, handed to numpy without a copy.
fn ranked<'py, T: Element>(
    py: Python<'py>,
    n_queries: usize,
    n: usize,
    ids: Vec<i32>,
    scores: Vec<T>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let ids = Array2::from_shape_vec((n_queries, n), ids).expect("n_queries x n ids");
    let scores = Array2::from_shape_vec((n_queries, n), scores).expect("n_queries x n");
    Ok((
        ids.into_pyarray(py).into_any(),
        scores.into_pyarray(py).into_any(),
    ))
}

/// Per-user ranking metrics at cutoff `cutoff`: an `n_users x 6` float64 array with columns
/// n_test, hits, ndcg, average precision, auc, percentile rank. Without `full_ranking` only each
/// user's top K is found, and the last two columns are NaN.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn ranking_metrics<'py>(
    py: Python<'py>,
    users: Factors<'py>,
    items: Factors<'py>,
    train: Csr<'py>,
    test: Csr<'py>,
    cutoff: usize,
    full_ranking: bool,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    #[allow(clippy::too_many_arguments)]
    fn typed<T: Real + Element>(
        py: Python<'_>,
        users: &PyReadonlyArray2<'_, T>,
        items: &PyReadonlyArray2<'_, T>,
        train: &Csr<'_>,
        test: &Csr<'_>,
        cutoff: usize,
        ranks: ials_core::Ranking,
        num_threads: usize,
    ) -> PyResult<Vec<ials_core::UserMetrics>> {
        let k = width(items);
        let (train, test) = (train.parts()?, test.parts()?);
        let (users, items) = (slice(users, "users")?, slice(items, "items")?);
        run(py, num_threads, |stop| {
            let (train, test) = (train.view()?, test.view()?);
            ials_core::ranking_metrics(users, items, k, &train, &test, cutoff, ranks, stop)
        })
    }
    let ranks = if full_ranking {
        ials_core::Ranking::Full
    } else {
        ials_core::Ranking::TopK
    };
    let per_user = match (&users, &items) {
        (Factors::F32(u), Factors::F32(i)) => {
            typed(py, u, i, &train, &test, cutoff, ranks, num_threads)
        }
        (Factors::F64(u), Factors::F64(i)) => {
            typed(py, u, i, &train, &test, cutoff, ranks, num_threads)
        }
        _ => Err(mixed_dtypes()),
    }?;
    let table: Vec<f64> = per_user
        .iter()
        .flat_map(|m| {
            [
                m.n_test as f64,
                m.hits as f64,
                m.ndcg,
                m.average_precision,
                m.auc,
                m.percentile_rank,
            ]
        })
        .collect();
    let table = Array2::from_shape_vec((per_user.len(), 6), table).expect("6 columns");
    Ok(table.into_pyarray(py))
}

/// The instruction set the kernels run with: "avx512", "avx2+fma" or "portable".
#[pyfunction]
fn simd_level() -> &'static str {
    ials_core::simd_level().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Objective>()?;
    m.add_class::<LossTerms>()?;
    m.add_class::<ItemIndex>()?;
    m.add_class::<RowSolver>()?;
    m.add("GRAM_BLOCK_ROWS", ials_core::GRAM_BLOCK_ROWS)?;
    m.add("MAX_THREADS", ials_core::MAX_THREADS)?;
    m.add_function(wrap_pyfunction!(solve_rows, m)?)?;
    m.add_function(wrap_pyfunction!(normal_equations, m)?)?;
    m.add_function(wrap_pyfunction!(gram, m)?)?;
    m.add_function(wrap_pyfunction!(gram_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(gram_sum, m)?)?;
    m.add_class::<TurnedBasis>()?;
    m.add_function(wrap_pyfunction!(turning_pays, m)?)?;
    m.add_function(wrap_pyfunction!(loss_terms, m)?)?;
    m.add_function(wrap_pyfunction!(penalty, m)?)?;
    m.add_function(wrap_pyfunction!(top_k, m)?)?;
    m.add_function(wrap_pyfunction!(ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    Ok(())
}
