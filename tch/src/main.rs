//! `runner-tch`: the whole command line with the engine, libtorch included, in process. The
//! libtorch build's `runner` (feature `delegate`) execs it for what trains, measures, checks
//! the machine or reads weights (`runner::cli::engine`); it answers every other command too.

// The crate is linked for its build script's DEP_TCH_LIBTORCH_LIB only.
use torch_sys as _;

/// As `runner`'s: counts what is in use for runs on the embedded backend.
#[global_allocator]
static ALLOCATOR: runner::train::memory::CountingAllocator =
    runner::train::memory::CountingAllocator;

fn main() -> std::process::ExitCode {
    runner::cli::main::<runner::cli::InProcess>()
}
