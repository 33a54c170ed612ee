//! Python values the bindings accept, and how they become core views. Python normalises every
//! input before it gets here (dtypes, C order, canonical CSR); these types only borrow it.

use ials_core::CsrView;
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::CoreError;

/// A scipy CSR matrix (int64 `indptr`, int32 `indices`, float32 `data`), read through its
/// attributes without a copy.
#[derive(FromPyObject)]
pub struct Csr<'py> {
    #[pyo3(attribute("indptr"))]
    indptr: PyReadonlyArray1<'py, i64>,
    #[pyo3(attribute("indices"))]
    indices: PyReadonlyArray1<'py, i32>,
    #[pyo3(attribute("data"))]
    data: PyReadonlyArray1<'py, f32>,
    #[pyo3(attribute("shape"))]
    shape: (usize, usize),
}

impl Csr<'_> {
    /// The arrays, not yet checked: calls that work on the pool check them there
    /// ([`CsrParts::view`]), in parallel and without the GIL.
    pub fn parts(&self) -> PyResult<CsrParts<'_>> {
        Ok(CsrParts {
            indptr: slice(&self.indptr, "indptr")?,
            indices: slice(&self.indices, "indices")?,
            data: slice(&self.data, "data")?,
            n_cols: self.shape.1,
        })
    }

    /// The checked view, here and now (for calls that stay on the calling thread).
    pub fn view(&self) -> PyResult<CsrView<'_>> {
        Ok(self.parts()?.view().map_err(CoreError)?)
    }
}

/// A CSR's arrays borrowed from Python, which can cross into the pool. At 50M interactions
/// checking them reads 400 MB: with the GIL held that stalled every other Python thread for
/// about 30 ms per half-sweep, serially.
#[derive(Clone, Copy)]
pub struct CsrParts<'a> {
    indptr: &'a [i64],
    indices: &'a [i32],
    data: &'a [f32],
    n_cols: usize,
}

impl<'a> CsrParts<'a> {
    /// The checked view ([`CsrView::new`]).
    pub fn view(self) -> ials_core::Result<CsrView<'a>> {
        CsrView::new(self.indptr, self.indices, self.data, self.n_cols)
    }
}

/// A factor matrix of either float type.
#[derive(FromPyObject)]
pub enum Factors<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// A factor matrix the core writes into.
#[derive(FromPyObject)]
pub enum FactorsMut<'py> {
    F32(PyReadwriteArray2<'py, f32>),
    F64(PyReadwriteArray2<'py, f64>),
}

pub fn mixed_dtypes() -> PyErr {
    PyTypeError::new_err("the factor matrices must all be float32 or all float64")
}

/// The array's memory as a row-major slice; a non-contiguous array is an error, never a silent
/// copy.
pub fn slice<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    // `as_slice` also accepts Fortran-ordered arrays, whose memory is not in row order.
    if !array.is_c_contiguous() {
        return Err(not_contiguous(name));
    }
    array.as_slice().map_err(|_| not_contiguous(name))
}

/// As [`slice`], writable.
pub fn slice_mut<'a, T: numpy::Element>(
    array: &'a mut PyReadwriteArray2<'_, T>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    if !array.is_c_contiguous() {
        return Err(not_contiguous(name));
    }
    array.as_slice_mut().map_err(|_| not_contiguous(name))
}

fn not_contiguous(name: &str) -> PyErr {
    PyValueError::new_err(format!("{name} must be a C-contiguous array"))
}

/// The number of columns (factors) of a factor matrix.
pub fn width<T: numpy::Element>(array: &PyReadonlyArray2<'_, T>) -> usize {
    array.shape()[1]
}

/// What `__reduce__` returns for a class built from four floats: the class and its arguments.
pub type Reduction<'py> = (Bound<'py, PyAny>, (f64, f64, f64, f64));

/// The training objective, checked once when built in Python and then passed to every call.
#[pyclass(frozen, from_py_object, eq, module = "ials._core", name = "Objective")]
#[derive(Clone, PartialEq)]
pub struct Objective {
    #[pyo3(get)]
    regularization: f64,
    #[pyo3(get)]
    alpha: f64,
    #[pyo3(get)]
    regularization_exponent: f64,
    #[pyo3(get)]
    unobserved_weight: f64,
}

impl Objective {
    pub fn core(&self) -> ials_core::Objective {
        ials_core::Objective {
            regularization: self.regularization,
            alpha: self.alpha as f32,
            regularization_exponent: self.regularization_exponent,
            unobserved_weight: self.unobserved_weight,
        }
    }
}

#[pymethods]
impl Objective {
    #[new]
    fn new(
        regularization: f64,
        alpha: f64,
        regularization_exponent: f64,
        unobserved_weight: f64,
    ) -> PyResult<Self> {
        let objective = Self {
            regularization,
            alpha,
            regularization_exponent,
            unobserved_weight,
        };
        objective.core().validate().map_err(CoreError)?;
        Ok(objective)
    }

    /// Pickled as its constructor call, so it travels to Dask workers.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduction<'py>> {
        let o = slf.get();
        let arguments = (
            o.regularization,
            o.alpha,
            o.regularization_exponent,
            o.unobserved_weight,
        );
        Ok((slf.get_type().into_any(), arguments))
    }

    fn __repr__(&self) -> String {
        format!(
            "Objective(regularization={}, alpha={}, regularization_exponent={}, \
             unobserved_weight={})",
            self.regularization, self.alpha, self.regularization_exponent, self.unobserved_weight
        )
    }
}
