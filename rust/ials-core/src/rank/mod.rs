//! Ranking: the best items per query by inner product (top-K, with the norm bound), and ranking
//! metrics, on packed strips of items scored by one micro-kernel.

pub(crate) mod best;
pub(crate) mod bounds;
pub(crate) mod layout;
pub mod metrics;
pub(crate) mod rows;
pub(crate) mod strip;
pub mod topk;

pub use metrics::{ranking_metrics, Ranking, UserMetrics};
pub use topk::{top_k, Exclusions, ItemIndex};
