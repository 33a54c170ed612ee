//! Dense linear algebra on factor rows and small `k x k` matrices: dot products, symmetric
//! matrix-vector products (one vector, a few, or a packed block of many), Cholesky, the reduction
//! to tridiagonal form. Generic bodies with their AVX2 twins beside them.

pub mod cholesky;
pub mod panels;
pub mod symv;
pub mod tridiagonal;
pub mod vector;

pub use panels::{symv_panels, PanelMatrix};
pub use symv::symv_rows;
pub use tridiagonal::Tridiagonal;
pub use vector::{axpy, dot};
