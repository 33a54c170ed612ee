//! Rayon thread pools, one per (process, thread count), built on first use, and the interrupt
//! flag that long calls poll between blocks of rows.
//!
//! The global pool is never touched: its size would be fixed at first use, and a library should
//! not take over its host's. A forked child sees the parent's pools without their threads, so the
//! cache is keyed by process id and a child builds its own. At most [`CACHED_POOLS`] pools are
//! kept, so a caller cycling through thread counts does not pile up idle threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// The largest thread count a caller may ask for. Threads start one at a time, so an absurd count
/// would stall the call for minutes before any work is done.
pub const MAX_THREADS: usize = 1024;

/// Pools kept alive for reuse; the least recently used one is dropped beyond this.
const CACHED_POOLS: usize = 4;

/// (process id, threads, pool), most recently used last.
type Pools = Vec<(u32, usize, Arc<ThreadPool>)>;

static POOLS: Mutex<Pools> = Mutex::new(Vec::new());

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

/// The pool of `num_threads` threads (0: all cores), built on first use.
pub fn thread_pool(num_threads: usize) -> Result<Arc<ThreadPool>> {
    if num_threads > MAX_THREADS {
        return Err(Error::InvalidParameter(format!(
            "num_threads must be at most {MAX_THREADS}, got {num_threads}"
        )));
    }
    let threads = resolve_threads(num_threads);
    let pid = std::process::id();
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if pools.iter().any(|&(owner, _, _)| owner != pid) {
        // Pools inherited over fork(): their threads do not exist here. Dropping one would wait
        // for those threads, so they are leaked instead.
        for (_, _, inherited) in pools.drain(..) {
            std::mem::forget(inherited);
        }
    }
    if let Some(at) = pools.iter().position(|&(_, size, _)| size == threads) {
        let entry = pools.remove(at);
        let pool = entry.2.clone();
        pools.push(entry);
        return Ok(pool);
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ials-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let built = Arc::new(built);
    if pools.len() == CACHED_POOLS {
        // A call still running on the evicted pool holds its own reference; the threads end
        // once that call returns.
        pools.remove(0);
    }
    pools.push((pid, threads, built.clone()));
    Ok(built)
}

/// Runs `work` on a pool of `num_threads` threads (0: all cores).
pub fn with_threads<R: Send>(num_threads: usize, work: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(thread_pool(num_threads)?.install(work))
}

/// A request to stop a long call early, set from another thread (the bindings set it when
/// Ctrl-C arrives). Calls poll it between blocks of rows and return [`Error::Interrupted`].
#[derive(Debug, Default)]
pub struct Interrupt(AtomicBool);

impl Interrupt {
    pub const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Asks the call polling this flag to stop at its next check.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once a stop was requested.
    pub fn check(&self) -> Result<()> {
        if self.is_requested() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_absurd_thread_counts() {
        assert!(matches!(
            thread_pool(MAX_THREADS + 1),
            Err(Error::InvalidParameter(_))
        ));
    }

    #[test]
    fn keeps_a_bounded_number_of_pools() {
        for threads in 1..=CACHED_POOLS + 3 {
            assert_eq!(thread_pool(threads).unwrap().current_num_threads(), threads);
        }
        assert!(POOLS.lock().unwrap().len() <= CACHED_POOLS);
        // The most recent pool is reused, not rebuilt.
        let again = thread_pool(CACHED_POOLS + 3).unwrap();
        assert!(Arc::ptr_eq(&again, &thread_pool(CACHED_POOLS + 3).unwrap()));
    }

    #[test]
    fn interrupt_is_reported_once_requested() {
        let flag = Interrupt::new();
        assert!(flag.check().is_ok());
        flag.request();
        assert_eq!(flag.check(), Err(Error::Interrupted));
    }
}
