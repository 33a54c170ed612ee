//! Zeroed `f64` buffers of a call's lifetime, mapped from the operating system when large.
//!
//! A large buffer that one thread of the pool allocates and frees once per call (the exact
//! solve's transformed items, tens of megabytes) would otherwise come from that thread's glibc
//! arena from the second call on: glibc raises its mmap threshold to the size of each large block
//! freed, and `malloc_trim` releases only the main arena's top, not a worker thread's. Whichever
//! worker ran a call kept the block's pages, so at 16 threads a 3-iteration exact fit on gowalla
//! peaked at 212 MiB against 128 MiB on one thread. Pages mapped here go back to the system when
//! the buffer is dropped, whatever thread ran the call.

use std::ops::{Deref, DerefMut};

/// Buffers of at least this many bytes are mapped; smaller ones come from the allocator, for
/// which a block this size is not worth a system call.
const MAP_FROM: usize = 1 << 20;

/// `len` zeroed `f64`s: mapped pages from [`MAP_FROM`] bytes on (on Unix, where the mapping
/// succeeds), else a `Vec`.
pub(crate) struct ZeroedF64 {
    storage: Storage,
}

enum Storage {
    Heap(Vec<f64>),
    #[cfg(unix)]
    Mapped {
        ptr: std::ptr::NonNull<f64>,
        len: usize,
    },
}

// SAFETY: a mapped buffer is owned by this value alone, like a `Box<[f64]>`: the pointer is never
// shared outside the borrows `Deref` / `DerefMut` hand out.
unsafe impl Send for ZeroedF64 {}
// SAFETY: as above; `&ZeroedF64` gives only shared access to the `f64`s.
unsafe impl Sync for ZeroedF64 {}

impl ZeroedF64 {
    /// None when neither the system nor the allocator has `len` f64s to give, where `vec!` would
    /// abort the process: a caller with a way to do without the buffer takes it instead.
    pub(crate) fn try_new(len: usize) -> Option<Self> {
        #[cfg(unix)]
        if let Some(bytes) = len.checked_mul(std::mem::size_of::<f64>()) {
            if bytes >= MAP_FROM {
                if let Some(ptr) = map(bytes) {
                    return Some(Self {
                        storage: Storage::Mapped { ptr, len },
                    });
                }
            }
        }
        let mut values = Vec::new();
        values.try_reserve_exact(len).ok()?;
        values.resize(len, 0.0);
        Some(Self {
            storage: Storage::Heap(values),
        })
    }
}

/// `bytes` of fresh zeroed pages, readable and writable; None when the system refuses.
#[cfg(unix)]
fn map(bytes: usize) -> Option<std::ptr::NonNull<f64>> {
    // SAFETY: an anonymous private mapping at an address of the system's choosing touches no
    // existing memory; the result is checked before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    // Page-aligned, hence aligned for f64; anonymous pages read as zeros, which are 0.0.
    std::ptr::NonNull::new(ptr.cast::<f64>())
}

impl Drop for ZeroedF64 {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Storage::Mapped { ptr, len } = self.storage {
            // SAFETY: the mapping of `len` f64s made in `try_new`, unmapped once, here; no borrow of
            // it outlives `self`.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), len * std::mem::size_of::<f64>());
            }
        }
    }
}

impl Deref for ZeroedF64 {
    type Target = [f64];

    fn deref(&self) -> &[f64] {
        match &self.storage {
            Storage::Heap(values) => values,
            #[cfg(unix)]
            // SAFETY: `len` initialised (zeroed) f64s, valid while `self` lives.
            Storage::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl DerefMut for ZeroedF64 {
    fn deref_mut(&mut self) -> &mut [f64] {
        match &mut self.storage {
            Storage::Heap(values) => values,
            #[cfg(unix)]
            // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
            Storage::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_start_zeroed_and_keep_what_is_written() {
        for len in [0, 1, 1000, MAP_FROM / 8, MAP_FROM / 8 + 3, 3 * MAP_FROM / 8] {
            let mut buffer = ZeroedF64::try_new(len).unwrap();
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&x| x.to_bits() == 0));
            for (i, x) in buffer.iter_mut().enumerate() {
                *x = i as f64 + 0.5;
            }
            assert!(buffer.iter().enumerate().all(|(i, &x)| x == i as f64 + 0.5));
        }
    }

    #[cfg(unix)]
    #[test]
    fn buffers_from_the_threshold_on_are_mapped() {
        let mapped = |len: usize| {
            matches!(
                ZeroedF64::try_new(len).unwrap().storage,
                Storage::Mapped { .. }
            )
        };
        assert!(!mapped(MAP_FROM / 8 - 1));
        assert!(mapped(MAP_FROM / 8));
    }

    #[test]
    fn a_buffer_larger_than_any_memory_is_refused_not_an_abort() {
        // 2^60 bytes: no system maps or allocates that much; past usize, the size overflows.
        assert!(ZeroedF64::try_new(1 << 57).is_none());
        assert!(ZeroedF64::try_new(usize::MAX / 4).is_none());
    }
}
