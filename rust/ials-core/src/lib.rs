#![doc = include_str!("../README.md")]

mod als;
mod check;
mod csr;
mod error;
mod linalg;
mod model;
mod pages;
mod parallel;
mod rank;
mod real;
mod simd;

pub use als::{
    gram, gram_blocks, gram_sum, loss_terms, penalty, rotate_rows, row_normal_equations,
    solve_rows, turning_pays, LossTerms, Objective, Solver, TurnedBasis, GRAM_BLOCK_ROWS,
};
pub use csr::{CsrMatrix, CsrView};
pub use error::{Error, Result};
pub use model::{Model, Settings};
pub use parallel::{resolve_threads, thread_pool, with_threads, Interrupt, MAX_THREADS};
pub use rank::{ranking_metrics, top_k, Exclusions, ItemIndex, Ranking, UserMetrics};
pub use real::Real;
pub use simd::{simd_level, SimdLevel};
