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

use std::sync::Once;

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
