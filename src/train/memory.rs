//! How the training process keeps its memory: freed tensor buffers stay in the process for
//! the next step's tensors instead of going back to the kernel.
//!
//! burn-flex allocates every op's output afresh. With glibc's defaults, a buffer over its
//! dynamic mmap threshold (128 KiB rising to 32 MiB) is mapped on allocation and unmapped on
//! free, so the next step's tensor of the same size is mapped again, and the kernel zeroes each
//! of its pages on first touch. bert-mini's step allocates gigabytes that way: the `perf`
//! profile of issue 21 put a fifth of a flex step into page faults and zeroing, and products
//! whose output is large against their inner dimension (`[4096, 256] × [256, 1024]`) ran at
//! half their speed. Serving such buffers from the heap, and keeping the freed heap, is what
//! PyTorch's caching allocator does for its tensors.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest threshold glibc accepts (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit): buffers up
/// to 32 MiB (8 Mi `f32`s, a 30,522 × 256 embedding) come from the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Freed memory at the top of the heap is returned to the kernel only beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Keeps freed buffers in the process (glibc's `mallopt`; other C libraries keep their
/// defaults). Called once, before the first training device is made; the process's resident
/// memory then stays near its peak, as a PyTorch process's does.
pub fn keep_freed_buffers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; called before the buffers it
        // concerns exist and from one thread (`Once`).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}

/// The system allocator, counting the bytes it has handed out and not yet been given back,
/// and their high-water mark: what `summary.json` reports as `peak_allocated` (as
/// `torch.cuda.max_memory_allocated` reports a PyTorch process's), free of what the allocator
/// keeps besides (the freed buffers above, fragmentation), which the resident set includes.
/// Both executables install it (`src/main.rs`, `tch/src/main.rs`); the trainer reports its
/// figures for runs on burn-flex only, since libtorch's tensors come from libtorch's own
/// allocator, which this does not see. Where it is not installed (tests), [`allocated`] is
/// `None`.
pub struct CountingAllocator;

static IN_USE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

impl CountingAllocator {
    fn grew(by: usize) {
        let now = IN_USE.fetch_add(by as u64, Ordering::Relaxed) + by as u64;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        IN_USE.fetch_sub(by as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`, with `System::realloc`'s contract for `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::shrank(layout.size());
            Self::grew(new_size);
        }
        p
    }
}

/// Bytes in use now and the most in use since the last [`reset_peak`] (or the start), when
/// [`CountingAllocator`] is the process's allocator.
pub fn allocated() -> Option<(u64, u64)> {
    let peak = PEAK.load(Ordering::Relaxed);
    (peak > 0).then(|| (IN_USE.load(Ordering::Relaxed), peak))
}

/// Starts the high-water mark afresh from what is in use now.
pub fn reset_peak() {
    PEAK.store(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
}
