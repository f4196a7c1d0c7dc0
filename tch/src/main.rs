//! `runner-tch`: the whole command line with the engine, libtorch included, in process. The
//! libtorch build's `runner` (feature `delegate`) execs it for what trains, measures, checks
//! the machine or reads weights (`runner::cli::engine`); it answers every other command too.

// The crate is linked for its build script's DEP_TCH_LIBTORCH_LIB only.
use torch_sys as _;

fn main() -> std::process::ExitCode {
    runner::cli::main::<runner::cli::InProcess>()
}
