//! The command line: the clap definitions (`args`), the log set-up (`logging`), and one file
//! per command. Commands are thin: they call library functions (which tests call too) and
//! print what those return. Exit codes: 0 ok, 2 configuration error, 1 runtime failure (130 and
//! 143 after SIGINT and SIGTERM); `diff` exits 0 same, 1 different, 2 trouble.

mod args;
mod completions;
mod config;
mod diff;
pub mod engine;
mod export;
mod init;
mod launch;
mod logging;
mod plan;
mod plot;
mod profiles;
mod rerun;
mod run;
mod runs;
mod schema;
mod show;
mod sweep;
mod validate;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;

pub use args::{
    Cli, Command, ConfigArgs, DiffArgs, DiffFormat, LogFormat, OutputFormat, SlurmArgs,
};
pub use engine::{Delegate, Engine, InProcess};

use crate::config::{Diagnostics, Resolved};
use crate::dist::rank_log;

/// Exit code for configuration errors (runtime failures exit 1).
pub const EXIT_CONFIG: u8 = 2;

/// The command line of a binary whose engine commands run as `E` says: in this process
/// (`engine::InProcess`), or in `runner-tch` beside it (`engine::Delegate`, the libtorch
/// build's `runner`).
pub fn main<E: Engine>() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match dispatch::<E>(cli) {
        Ok(code) => code,
        Err(e) => {
            let text = crate::error::render(&e, &rank_log::tag());
            eprintln!("{text}");
            rank_log::note(&crate::error::render(&e, ""));
            ExitCode::from(1)
        }
    }
}

/// The configuration commands, here; every other command goes to the engine (`E`): what
/// `runner` of the libtorch build answers without `runner-tch`.
fn dispatch<E: Engine>(cli: Cli) -> Result<ExitCode> {
    let Cli {
        command,
        quiet,
        log_format,
    } = cli;
    match command {
        Command::Validate {
            config,
            strict: false,
        } => validate::validate(&config, false),
        Command::Show {
            config,
            format,
            explain,
        } => show::show(&config, format.into(), explain),
        Command::Diff(args) => diff::diff(&args),
        Command::Runs {
            dirs,
            sort,
            metrics,
            format,
        } => runs::runs(&dirs, sort.as_deref(), &metrics, format),
        Command::Plan {
            config,
            format,
            plot,
            measure: false,
        } => plan::plan(&config, format, plot.as_deref(), false),
        Command::Plot {
            dirs,
            metric,
            output,
        } => plot::plot(&dirs, &metric, &output),
        Command::Schema {
            job,
            profile,
            base,
            check,
            write,
            root,
        } => {
            let which = match (job, profile, base) {
                (Some(job), _, _) => schema::Which::Job(job),
                (_, true, _) => schema::Which::Profile,
                (_, _, true) => schema::Which::Base,
                _ => schema::Which::Experiment,
            };
            schema::schema(which, check, write, &root)
        }
        Command::Profiles => profiles::profiles(),
        Command::Config { key } => config::config(key.as_deref()),
        Command::Init {
            job,
            path,
            from_command,
            command,
        } => init::init(job.as_deref(), path.as_deref(), from_command, &command),
        Command::Completions { shell } => completions::completions(shell),
        engine => E::run(engine, quiet, log_format),
    }
}

/// The commands that train, measure, check this machine or read weights, in this process.
fn dispatch_engine(command: Command, quiet: bool, log_format: LogFormat) -> Result<ExitCode> {
    match command {
        Command::Validate { config, strict } => validate::validate(&config, strict),
        Command::Plan {
            config,
            format,
            plot,
            measure,
        } => plan::plan(&config, format, plot.as_deref(), measure),
        Command::Run {
            config,
            dry_run,
            sweep_cell,
        } => run::run(&config, sweep_cell, dry_run, quiet, log_format),
        Command::Rerun {
            run_dir,
            output_dir,
            check,
            allow_drift,
        } => rerun::rerun(
            &run_dir,
            output_dir.as_deref(),
            check,
            allow_drift,
            quiet,
            log_format,
        ),
        Command::Sweep(args) => sweep::sweep(&args, log_format),
        Command::Launch { config, slurm } => launch::launch(&config, &slurm),
        Command::Export {
            run_dir,
            encoder_only,
            checkpoint,
            output,
        } => export::export(
            &run_dir,
            encoder_only,
            checkpoint.as_deref(),
            output.as_deref(),
        ),
        // `dispatch` answers every other command itself.
        other => dispatch::<InProcess>(Cli {
            command: other,
            quiet,
            log_format,
        }),
    }
}

/// Prints diagnostics and the closing line; the exit code for configuration errors.
fn report(diags: &Diagnostics, what: &Path) -> ExitCode {
    eprintln!("{}\n", diags.render());
    let n = diags.errors().count();
    eprintln!(
        "error: {n} problem{} in the configuration of `{}`; nothing was run",
        if n == 1 { "" } else { "s" },
        what.display()
    );
    ExitCode::from(EXIT_CONFIG)
}

/// A refusal that is not about one key (a launcher's variables, a run directory): exit 2.
fn refuse(why: &str) -> ExitCode {
    eprintln!("{}error: {why}", rank_log::tag());
    ExitCode::from(EXIT_CONFIG)
}

/// Refuses (exit 2) any of `dirs` that is not a folder: `runs` and `plot` read run
/// directories, sweep directories and folders holding them.
fn folders_or_refuse(dirs: &[std::path::PathBuf]) -> Result<(), ExitCode> {
    match dirs.iter().find(|d| !d.is_dir()) {
        Some(d) => Err(refuse(&format!(
            "`{}` is not a folder (give run directories, sweep directories or folders holding them)",
            d.display()
        ))),
        None => Ok(()),
    }
}

/// The resolved configuration, or the report of why there is none.
fn resolve_or_report(config: &ConfigArgs) -> Result<Resolved, ExitCode> {
    crate::config::resolve(&config.request()).map_err(|d| report(&d, &config.experiment))
}
