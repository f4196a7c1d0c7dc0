//! `runner completions`: a shell completion script from the clap definitions.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;

use super::Cli;

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "runner", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
