//! The one way the bindings run core work: without the GIL, on the requested pool, stoppable by
//! Ctrl-C, with core errors mapped to Python exceptions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ials_core::Interrupt;
use pyo3::prelude::*;

use crate::errors::CoreError;

/// How often the calling thread looks for a pending signal while the pool works.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// Runs `work` on a pool of `num_threads` threads (0: all cores) with the GIL released. Meanwhile
/// the calling thread checks for pending signals; when a handler raises (Ctrl-C's
/// `KeyboardInterrupt`), the work is asked to stop at its next block of rows and that exception
/// is returned.
pub fn run<R: Send>(
    py: Python<'_>,
    num_threads: usize,
    work: impl FnOnce(&Interrupt) -> ials_core::Result<R> + Send,
) -> PyResult<R> {
    let pool = ials_core::thread_pool(num_threads).map_err(CoreError)?;
    let interrupt = Interrupt::new();
    let mut raised: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let finished = AtomicBool::new(false);
        let caller = std::thread::current();
        let mut outcome = None;
        pool.in_place_scope(|scope| {
            scope.spawn(|_| {
                outcome = Some(work(&interrupt));
                finished.store(true, Ordering::Release);
                caller.unpark();
            });
            while !finished.load(Ordering::Acquire) {
                std::thread::park_timeout(SIGNAL_POLL);
                if raised.is_none() && !finished.load(Ordering::Acquire) {
                    if let Err(signal) = Python::attach(|py| py.check_signals()) {
                        raised = Some(signal);
                        interrupt.request();
                    }
                }
            }
        });
        outcome
    });
    if let Some(signal) = raised {
        return Err(signal);
    }
    match outcome {
        Some(result) => result.map_err(|e| CoreError(e).into()),
        // The spawned job always runs before the scope ends; a panic in it would have
        // propagated out of `in_place_scope` instead of reaching here.
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the core call did not run",
        )),
    }
}

/// A call's largest temporary buffer from this size (bytes) on is worth trimming after it: 1 MiB,
/// a Gram matrix of 363 factors.
const TRIM_FROM: usize = 1 << 20;

/// [`run`] for a training call whose largest temporary buffer takes `buffer_bytes`, then (still
/// without the GIL) the allocator's free memory handed back to the system.
pub fn run_and_trim<R: Send>(
    py: Python<'_>,
    num_threads: usize,
    buffer_bytes: usize,
    work: impl FnOnce(&Interrupt) -> ials_core::Result<R> + Send,
) -> PyResult<R> {
    run(py, num_threads, |stop| {
        let outcome = work(stop);
        release_free_memory(buffer_bytes);
        outcome
    })
}

/// Hands the allocator's free memory back to the system after a training call whose largest
/// temporary buffer took `buffer_bytes`.
///
/// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), so from
/// the second half-sweep on the k x k buffers come from the heap and the worker threads' arenas
/// and stay there when freed: at 1024 factors a fit kept about 50 MiB it no longer used, and a
/// second fit in the same process peaked 4% above implicit's. Trimming keeps the footprint to what
/// is in use; below `TRIM_FROM` the buffers are too small to matter and the calls too short to pay
/// for it.
fn release_free_memory(buffer_bytes: usize) {
    if buffer_bytes < TRIM_FROM {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` only returns free heap pages to the system; it takes
        // the allocator's locks itself and may be called from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}
