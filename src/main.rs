//! `runner`. The engine runs in this process, except in the libtorch build's `runner` (feature
//! `delegate` without `tch`), which hands it to `runner-tch` beside it so that configuration
//! commands load no libtorch (`cli::engine`).

/// The system allocator, counting what is in use for `summary.json`'s `peak_allocated` (of
/// runs on the embedded backend, whose tensors it hands out; libtorch's come from its own).
#[global_allocator]
static ALLOCATOR: runner::train::memory::CountingAllocator =
    runner::train::memory::CountingAllocator;

fn main() -> std::process::ExitCode {
    #[cfg(all(feature = "delegate", not(feature = "tch")))]
    {
        runner::cli::main::<runner::cli::Delegate>()
    }
    #[cfg(any(not(feature = "delegate"), feature = "tch"))]
    {
        runner::cli::main::<runner::cli::InProcess>()
    }
}
