//! What burn-flex's matrix products keep between calls, for `runner plan`: gemm (the crate
//! burn-flex and our convolution multiply with) gives every thread that runs a product a
//! packing buffer the size of the L2 cache, allocated at its first product and kept for the
//! thread's life (`gemm_common::gemm::L2_SLAB`). On the 2-core machines this project is
//! measured on that is 3 MiB, a fifth of bert-tiny's whole step, which `plan` missed until
//! `bench/checkpointing.sh` showed the measured peak rising by exactly 1 MiB per thread.

/// Bytes of the packing buffers gemm keeps with this process's threads: one L2-sized buffer
/// on each rayon worker (gemm's and burn-flex's parallel products) and one on the thread that
/// drives the step (products too small to split). With one rayon thread gemm runs its
/// products where it is called, so only that thread's counts. The L2 size is the one gemm
/// reads (CPUID), so the figure holds for this machine, as `plan` on a CPU reads its RAM.
pub fn matmul_workspace() -> usize {
    let l2 = gemm_common::cache::CACHE_INFO[1].cache_bytes;
    l2 * threads_with_buffers(rayon::current_num_threads())
}

fn threads_with_buffers(rayon_threads: usize) -> usize {
    if rayon_threads <= 1 {
        1
    } else {
        rayon_threads + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_buffer_per_worker_and_one_for_the_caller() {
        assert_eq!(threads_with_buffers(1), 1);
        assert_eq!(threads_with_buffers(2), 3);
        assert_eq!(threads_with_buffers(16), 17);
    }

    #[test]
    fn the_buffer_is_the_l2_cache_gemm_reads() {
        let l2 = gemm_common::cache::CACHE_INFO[1].cache_bytes;
        assert!(l2 >= 64 << 10, "gemm read an L2 of {l2} bytes");
        assert_eq!(matmul_workspace() % l2, 0);
    }
}
