//! Core errors as Python exceptions, the type chosen by what went wrong.

use ials_core::Error;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// A core error on its way to Python (a newtype: neither `Error` nor `PyErr` is this crate's).
pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl From<CoreError> for PyErr {
    /// Bad arguments are `ValueError`; a pool that could not start is the machine's fault, not
    /// the caller's values, so `RuntimeError`; a failed read or write is `OSError`; a stop requested by Ctrl-C is `KeyboardInterrupt`.
    fn from(CoreError(error): CoreError) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidCsr(_)
            | Error::ShapeMismatch(_)
            | Error::InvalidParameter(_)
            | Error::NonFinite(_)
            | Error::Singular { .. }
            | Error::InvalidFile(_) => PyValueError::new_err(message),
            Error::Io(_) => PyOSError::new_err(message),
            Error::ThreadPool(_) => PyRuntimeError::new_err(message),
            Error::Interrupted => PyKeyboardInterrupt::new_err(message),
        }
    }
}
