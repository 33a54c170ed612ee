//! Implicit-feedback matrix factorisation (Hu, Koren & Volinsky, ICDM 2008) trained by alternating
//! least squares whose row solves are a few warm-started conjugate-gradient steps (Takacs, Pilaszy
//! & Tikk, RecSys 2011).
//!
//! Pure Rust, no Python: functions take borrowed slices, write into caller-provided buffers, run
//! on the current Rayon pool (see [`with_threads`]) and report bad input as [`Error`], never by
//! panicking. Results are bitwise identical for any number of threads.

mod cholesky;
mod csr;
mod error;
mod gram;
mod kernels;
mod loss;
mod metrics;
mod objective;
mod parallel;
mod real;
mod simd;
mod solve;
mod topk;

pub use csr::CsrView;
pub use error::{Error, Result};
pub use gram::{gram, gram_blocks, gram_sum, GRAM_BLOCK_ROWS};
pub use loss::{loss, loss_terms, penalty, LossTerms};
pub use metrics::{ranking_metrics, Ranking, UserMetrics};
pub use objective::Objective;
pub use parallel::{resolve_threads, thread_pool, with_threads, Interrupt, MAX_THREADS};
pub use real::Real;
pub use simd::{simd_level, SimdLevel};
pub use solve::{row_normal_equations, solve_rows, Solver};
pub use topk::{top_k, Exclusions, ItemIndex};
