//! `runner validate`: a one-line summary, or every problem at once (exit 2).

use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, report, resolve_or_report};
use crate::run::{machine_problems, summary};

pub fn validate(config: &ConfigArgs, strict: bool) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    crate::config::print_warnings(&resolved);
    if strict {
        let problems = machine_problems(&resolved);
        if problems.has_errors() {
            return Ok(report(&problems, &config.experiment));
        }
    }
    println!(
        "ok: {}: {}",
        config.experiment.display(),
        summary(&resolved)
    );
    Ok(ExitCode::SUCCESS)
}
