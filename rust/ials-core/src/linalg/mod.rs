//! Dense linear algebra on factor rows and small `k x k` matrices: dot products, symmetric
//! matrix-vector products, Cholesky. Generic bodies with their AVX2 twins beside them.

pub mod cholesky;
pub mod symv;
pub mod vector;

pub use symv::{symv, symv_rows};
pub use vector::{axpy, dot};
