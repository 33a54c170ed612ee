//! Alternating least squares for implicit feedback: the objective, the Gram matrix, the row
//! solves (conjugate gradient and exact) and the training loss.

pub mod basis;
pub(crate) mod block;
pub(crate) mod cg;
pub(crate) mod data_term;
pub(crate) mod exact;
pub mod gram;
pub mod loss;
pub(crate) mod low_rank;
pub mod objective;
pub mod solve;

pub use basis::{rotate_rows, turning_pays, TurnedBasis};
pub use exact::row_normal_equations;
pub use gram::{gram, gram_blocks, gram_sum, GRAM_BLOCK_ROWS};
pub use loss::{loss_terms, penalty, LossTerms};
pub use objective::Objective;
pub use solve::{solve_rows, Solver};
