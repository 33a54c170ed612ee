//! Rayon thread pools, one per (process, thread count), built on first use.
//!
//! The global pool is never touched: its size would be fixed at first use, and a library should
//! not take over its host's. A forked child sees the parent's pools without their threads, so the
//! cache is keyed by process id and a child builds its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use crate::error::{Error, Result};

type Pools = HashMap<(u32, usize), Arc<ThreadPool>>;

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// The number of threads `num_threads` means: 0 is every available core.
pub fn resolve_threads(num_threads: usize) -> usize {
    if num_threads > 0 {
        num_threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

fn pool(num_threads: usize) -> Result<Arc<ThreadPool>> {
    let threads = resolve_threads(num_threads);
    let key = (std::process::id(), threads);
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pools = guard.get_or_insert_with(HashMap::new);
    if pools.keys().any(|&(pid, _)| pid != key.0) {
        // Pools inherited over fork(): their threads do not exist here. Dropping one would wait
        // for those threads, so they are leaked instead.
        for (_, inherited) in pools.drain() {
            std::mem::forget(inherited);
        }
    }
    if let Some(existing) = pools.get(&key) {
        return Ok(existing.clone());
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ials-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let built = Arc::new(built);
    pools.insert(key, built.clone());
    Ok(built)
}

/// Runs `work` on a pool of `num_threads` threads (0: all cores).
pub fn with_threads<R: Send>(num_threads: usize, work: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(pool(num_threads)?.install(work))
}
