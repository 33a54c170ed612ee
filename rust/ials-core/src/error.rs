//! The one error type of the core. Every check on caller input ends here instead of in a panic,
//! because a panic would surface in Python as `PanicException` (or abort a Rayon worker).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A sparse matrix that breaks the CSR invariants.
    InvalidCsr(String),
    /// Arrays whose sizes do not fit together.
    ShapeMismatch(String),
    /// A parameter outside its domain.
    InvalidParameter(String),
    /// A stored value that is NaN or infinite.
    NonFinite(String),
    /// The exact solver met a system that is not positive definite.
    Singular { row: usize },
    /// A thread pool could not be built.
    ThreadPool(String),
    /// A model file that is not one this crate can read (damaged, edited, or another format).
    InvalidFile(String),
    /// Reading or writing a file failed.
    Io(String),
    /// The call was stopped through its [`Interrupt`](crate::Interrupt) before it finished.
    Interrupted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidCsr(m) => write!(f, "invalid sparse matrix: {m}"),
            Error::ShapeMismatch(m) => write!(f, "shape mismatch: {m}"),
            Error::InvalidParameter(m) => write!(f, "{m}"),
            Error::NonFinite(m) => write!(f, "{m}"),
            Error::Singular { row } => write!(
                f,
                "the least-squares system of row {row} is not positive definite; \
                 use regularization > 0"
            ),
            Error::ThreadPool(m) => write!(f, "could not start the thread pool: {m}"),
            Error::InvalidFile(m) => write!(f, "not a valid model file: {m}"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
