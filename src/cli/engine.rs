//! Where the commands that train or measure run: in this process, or in `runner-tch`.
//!
//! The libtorch build (`just build-tch`) makes two executables from two cargo invocations:
//! `runner-tch` (the `tch/` package: this library with the `tch` feature, the whole command
//! line with the engine in process, `InProcess`) and `runner` with the `delegate` feature
//! (no libtorch), which answers the configuration commands itself and hands every command that
//! trains, measures, checks the machine or reads weights to the `runner-tch` beside it by exec
//! (`Delegate`): same process, arguments, environment, signals and exit code. Why two: a binary
//! that links libtorch pays its static initialisers at every start (0.84 s and 505 MiB here,
//! even for `--version`), and `runner show` should cost what it costs in the default build.
//!
//! Why two cargo invocations and not two binaries of one build: cargo links a package's
//! native libraries into every binary of it, and in one binary the linker keeps libtorch
//! however little is reachable (burn-tch registers an `.init_array` entry that references
//! libtorch_cuda, and symbols libtorch shares with the executable are exported, so live).
//! Only an executable built without the `tch` feature is free of it.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;

use super::{Command, LogFormat};

/// How a binary runs the commands that need the engine (those `super::dispatch` does not
/// answer itself).
pub trait Engine {
    fn run(command: Command, quiet: bool, log_format: LogFormat) -> Result<ExitCode>;
}

/// The engine in this process (the default build's `runner`, `runner` built with `tch`, and
/// `runner-tch`).
pub struct InProcess;

impl Engine for InProcess {
    fn run(command: Command, quiet: bool, log_format: LogFormat) -> Result<ExitCode> {
        super::dispatch_engine(command, quiet, log_format)
    }
}

/// The engine in `runner-tch` beside this executable (the libtorch build's `runner`).
pub struct Delegate;

/// The engine executable's name, beside `runner`.
pub const ENGINE_EXE: &str = "runner-tch";

impl Engine for Delegate {
    fn run(_command: Command, _quiet: bool, _log_format: LogFormat) -> Result<ExitCode> {
        let me = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this executable's folder: {e}"))?;
        let engine = me.with_file_name(ENGINE_EXE);
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        use std::os::unix::process::CommandExt as _;
        // exec returns only when it failed.
        let e = std::process::Command::new(&engine).args(&args).exec();
        Err(crate::error::fail(
            format!(
                "this `runner` is the libtorch build's front end: training, measuring and \
                 reading weights run in `{}`, which could not be started: {e}",
                engine.display()
            ),
            "build both with `just build-tch` (`cargo build --release --features delegate` and \
             `cargo build --release -p runner-tch`, libtorch from the torch wheel; see the \
             README's GPU section) and keep `runner-tch` in the same folder as `runner`",
        ))
    }
}
