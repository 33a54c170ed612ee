//! Implicit-feedback matrix factorisation (Hu, Koren & Volinsky, ICDM 2008) trained by alternating
//! least squares whose row solves are a few warm-started conjugate-gradient steps (Takacs, Pilaszy
//! & Tikk, RecSys 2011).
//!
//! Pure Rust, no Python: functions take borrowed slices, write into caller-provided buffers, run
//! on the current Rayon pool (see [`with_threads`]) and report bad input as [`Error`], never by
//! panicking. Results are bitwise identical for any number of threads.

mod als;
mod check;
mod csr;
mod error;
mod linalg;
mod parallel;
mod rank;
mod real;
mod simd;

pub use als::{
    gram, gram_blocks, gram_sum, loss, loss_terms, penalty, row_normal_equations, solve_rows,
    LossTerms, Objective, Solver, GRAM_BLOCK_ROWS,
};
pub use csr::CsrView;
pub use error::{Error, Result};
pub use parallel::{resolve_threads, thread_pool, with_threads, Interrupt, MAX_THREADS};
pub use rank::{ranking_metrics, top_k, Exclusions, ItemIndex, Ranking, UserMetrics};
pub use real::Real;
pub use simd::{simd_level, SimdLevel};
