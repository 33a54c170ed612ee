//! `ials._core`: the PyO3 bindings of `ials-core`.
//!
//! Bindings only: each function takes numpy arrays as slices (a non-contiguous array is an error,
//! never a silent copy), releases the GIL, runs the core on a Rayon pool of the requested size and
//! maps core errors to `ValueError`. Validation with friendly names and dtype normalisation live in
//! the Python package; the core re-checks every invariant it relies on.

use ials_core::{CsrView, Exclusions, Objective, Solver};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn value_error(e: ials_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn contiguous<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    // `as_slice` also accepts Fortran-ordered arrays, whose memory is not in row order.
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be a C-contiguous array"
        )));
    }
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous array")))
}

/// A CSR matrix passed as its three arrays.
struct Csr<'py> {
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i32>,
    data: PyReadonlyArray1<'py, f32>,
    n_cols: usize,
}

impl<'py> Csr<'py> {
    fn view(&self) -> PyResult<CsrView<'_>> {
        CsrView::new(
            contiguous(&self.indptr, "indptr")?,
            contiguous(&self.indices, "indices")?,
            contiguous(&self.data, "data")?,
            self.n_cols,
        )
        .map_err(value_error)
    }
}

fn objective(
    regularization: f64,
    alpha: f32,
    regularization_exponent: f64,
    unobserved_weight: f64,
) -> Objective {
    Objective {
        regularization,
        alpha,
        regularization_exponent,
        unobserved_weight,
    }
}

fn factors_of<T: numpy::Element>(array: &PyReadonlyArray2<'_, T>) -> usize {
    array.shape()[1]
}

/// A score matrix of ids and scores, handed to numpy without a copy.
type Ranked<'py, T> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<T>>);

macro_rules! typed_functions {
    ($t:ty, $solve:ident, $gram:ident, $loss:ident, $top_k:ident, $normal:ident, $metrics:ident) => {
        /// Per-user ranking metrics at cutoff `k`: an `n_users x 6` float64 array with columns
        /// n_test, hits, ndcg, average precision, auc, percentile rank. Without `full_ranking`
        /// only each user's top K is found, and the last two columns are NaN.
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $metrics<'py>(
            py: Python<'py>,
            users: PyReadonlyArray2<'py, $t>,
            items: PyReadonlyArray2<'py, $t>,
            train: (
                PyReadonlyArray1<'py, i64>,
                PyReadonlyArray1<'py, i32>,
                PyReadonlyArray1<'py, f32>,
            ),
            test: (
                PyReadonlyArray1<'py, i64>,
                PyReadonlyArray1<'py, i32>,
                PyReadonlyArray1<'py, f32>,
            ),
            cutoff: usize,
            full_ranking: bool,
            num_threads: usize,
        ) -> PyResult<Bound<'py, PyArray2<f64>>> {
            let k = factors_of(&items);
            let n_items = items.shape()[0];
            let train = Csr {
                indptr: train.0,
                indices: train.1,
                data: train.2,
                n_cols: n_items,
            };
            let test = Csr {
                indptr: test.0,
                indices: test.1,
                data: test.2,
                n_cols: n_items,
            };
            let (train, test) = (train.view()?, test.view()?);
            let users = contiguous(&users, "users")?;
            let items = contiguous(&items, "items")?;
            let per_user = py
                .detach(|| {
                    ials_core::with_threads(num_threads, || {
                        let ranks = if full_ranking {
                            ials_core::Ranking::Full
                        } else {
                            ials_core::Ranking::TopK
                        };
                        ials_core::ranking_metrics(users, items, k, &train, &test, cutoff, ranks)
                    })
                    .and_then(|result| result)
                })
                .map_err(value_error)?;
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

        /// `(A, b)` of one row's normal equations, both float64.
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $normal<'py>(
            py: Python<'py>,
            indices: PyReadonlyArray1<'py, i32>,
            data: PyReadonlyArray1<'py, f32>,
            y: PyReadonlyArray2<'py, $t>,
            gram: PyReadonlyArray2<'py, f64>,
            regularization: f64,
            alpha: f32,
            regularization_exponent: f64,
            unobserved_weight: f64,
        ) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, numpy::PyArray1<f64>>)> {
            let k = factors_of(&y);
            let objective = objective(
                regularization,
                alpha,
                regularization_exponent,
                unobserved_weight,
            );
            let (a, b) = ials_core::row_normal_equations(
                contiguous(&indices, "indices")?,
                contiguous(&data, "data")?,
                contiguous(&y, "y")?,
                k,
                contiguous(&gram, "gram")?,
                &objective,
            )
            .map_err(value_error)?;
            let a = Array2::from_shape_vec((k, k), a).expect("k x k system");
            Ok((a.into_pyarray(py), b.into_pyarray(py)))
        }

        /// One half-sweep: solves every row of `x` against the fixed `y`, in place.
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $solve(
            py: Python<'_>,
            indptr: PyReadonlyArray1<'_, i64>,
            indices: PyReadonlyArray1<'_, i32>,
            data: PyReadonlyArray1<'_, f32>,
            n_cols: usize,
            mut x: PyReadwriteArray2<'_, $t>,
            y: PyReadonlyArray2<'_, $t>,
            gram: PyReadonlyArray2<'_, f64>,
            regularization: f64,
            alpha: f32,
            regularization_exponent: f64,
            unobserved_weight: f64,
            use_cg: bool,
            cg_steps: usize,
            num_threads: usize,
        ) -> PyResult<()> {
            let csr = Csr {
                indptr,
                indices,
                data,
                n_cols,
            };
            let rows = csr.view()?;
            let k = factors_of(&y);
            let y = contiguous(&y, "y")?;
            let gram = contiguous(&gram, "gram")?;
            if !x.is_c_contiguous() {
                return Err(PyValueError::new_err("x must be a C-contiguous array"));
            }
            let x = x
                .as_slice_mut()
                .map_err(|_| PyValueError::new_err("x must be a C-contiguous array"))?;
            let objective = objective(
                regularization,
                alpha,
                regularization_exponent,
                unobserved_weight,
            );
            let solver = if use_cg {
                Solver::ConjugateGradient { steps: cg_steps }
            } else {
                Solver::Cholesky
            };
            py.detach(|| {
                ials_core::with_threads(num_threads, || {
                    ials_core::solve_rows(&rows, x, y, k, gram, &objective, solver)
                })
                .and_then(|result| result)
            })
            .map_err(value_error)
        }

        /// `y.T @ y` accumulated in float64.
        #[pyfunction]
        fn $gram<'py>(
            py: Python<'py>,
            y: PyReadonlyArray2<'py, $t>,
            num_threads: usize,
        ) -> PyResult<Bound<'py, PyArray2<f64>>> {
            let k = factors_of(&y);
            let slice = contiguous(&y, "y")?;
            let g = py
                .detach(|| ials_core::with_threads(num_threads, || ials_core::gram(slice, k)))
                .map_err(value_error)?;
            let g = Array2::from_shape_vec((k, k), g).expect("gram returns k x k entries");
            Ok(g.into_pyarray(py))
        }

        /// The normalised training objective.
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $loss(
            py: Python<'_>,
            indptr: PyReadonlyArray1<'_, i64>,
            indices: PyReadonlyArray1<'_, i32>,
            data: PyReadonlyArray1<'_, f32>,
            n_cols: usize,
            x: PyReadonlyArray2<'_, $t>,
            y: PyReadonlyArray2<'_, $t>,
            regularization: f64,
            alpha: f32,
            regularization_exponent: f64,
            unobserved_weight: f64,
            num_threads: usize,
        ) -> PyResult<f64> {
            let csr = Csr {
                indptr,
                indices,
                data,
                n_cols,
            };
            let rows = csr.view()?;
            let k = factors_of(&y);
            let x = contiguous(&x, "x")?;
            let y = contiguous(&y, "y")?;
            let objective = objective(
                regularization,
                alpha,
                regularization_exponent,
                unobserved_weight,
            );
            py.detach(|| {
                ials_core::with_threads(num_threads, || ials_core::loss(&rows, x, y, k, &objective))
                    .and_then(|result| result)
            })
            .map_err(value_error)
        }

        /// The best `n` items per query row; rows of `liked` (a CSR) and items marked in
        /// `blocked` are never returned, and only `candidates` (ascending ids) are ranked if given.
        #[pyfunction]
        #[allow(clippy::too_many_arguments)]
        fn $top_k<'py>(
            py: Python<'py>,
            queries: PyReadonlyArray2<'py, $t>,
            items: PyReadonlyArray2<'py, $t>,
            n: usize,
            liked: Option<(
                PyReadonlyArray1<'py, i64>,
                PyReadonlyArray1<'py, i32>,
                PyReadonlyArray1<'py, f32>,
            )>,
            blocked: Option<PyReadonlyArray1<'py, bool>>,
            candidates: Option<PyReadonlyArray1<'py, i32>>,
            num_threads: usize,
        ) -> PyResult<Ranked<'py, $t>> {
            let k = factors_of(&items);
            if factors_of(&queries) != k {
                return Err(PyValueError::new_err(format!(
                    "the query factors have {} columns but the item factors have {k}",
                    factors_of(&queries)
                )));
            }
            let n_queries = queries.shape()[0];
            let n_items = items.shape()[0];
            let liked = liked.map(|(indptr, indices, data)| Csr {
                indptr,
                indices,
                data,
                n_cols: n_items,
            });
            let exclusions = Exclusions {
                per_query: liked.as_ref().map(Csr::view).transpose()?,
                global: blocked
                    .as_ref()
                    .map(|b| contiguous(b, "blocked"))
                    .transpose()?,
            };
            let candidates = candidates
                .as_ref()
                .map(|c| contiguous(c, "candidates"))
                .transpose()?;
            let queries = contiguous(&queries, "queries")?;
            let items = contiguous(&items, "items")?;
            let mut ids = vec![0i32; n_queries * n];
            let mut scores = vec![<$t>::default(); n_queries * n];
            py.detach(|| {
                ials_core::with_threads(num_threads, || {
                    ials_core::top_k(
                        queries,
                        items,
                        k,
                        candidates,
                        &exclusions,
                        n,
                        &mut ids,
                        &mut scores,
                    )
                })
                .and_then(|result| result)
            })
            .map_err(value_error)?;
            let ids = Array2::from_shape_vec((n_queries, n), ids).expect("n_queries x n ids");
            let scores =
                Array2::from_shape_vec((n_queries, n), scores).expect("n_queries x n scores");
            Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
        }
    };
}

typed_functions!(
    f32,
    solve_rows_f32,
    gram_f32,
    loss_f32,
    top_k_f32,
    normal_equations_f32,
    ranking_metrics_f32
);
typed_functions!(
    f64,
    solve_rows_f64,
    gram_f64,
    loss_f64,
    top_k_f64,
    normal_equations_f64,
    ranking_metrics_f64
);

/// The instruction set the kernels run with ("avx2+fma" or "portable").
#[pyfunction]
fn simd_level() -> &'static str {
    ials_core::simd_level().name()
}

/// The number of threads `num_threads` means (0: all cores).
#[pyfunction]
fn resolve_threads(num_threads: usize) -> usize {
    ials_core::resolve_threads(num_threads)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(solve_rows_f32, m)?)?;
    m.add_function(wrap_pyfunction!(solve_rows_f64, m)?)?;
    m.add_function(wrap_pyfunction!(gram_f32, m)?)?;
    m.add_function(wrap_pyfunction!(gram_f64, m)?)?;
    m.add_function(wrap_pyfunction!(loss_f32, m)?)?;
    m.add_function(wrap_pyfunction!(loss_f64, m)?)?;
    m.add_function(wrap_pyfunction!(normal_equations_f32, m)?)?;
    m.add_function(wrap_pyfunction!(normal_equations_f64, m)?)?;
    m.add_function(wrap_pyfunction!(ranking_metrics_f32, m)?)?;
    m.add_function(wrap_pyfunction!(ranking_metrics_f64, m)?)?;
    m.add_function(wrap_pyfunction!(top_k_f32, m)?)?;
    m.add_function(wrap_pyfunction!(top_k_f64, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_threads, m)?)?;
    Ok(())
}
