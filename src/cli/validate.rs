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
    let sweep = if resolved.experiment.sweep.is_some() || !config.multirun.is_empty() {
        match super::sweep::checked(&config.request(), &config.experiment) {
            Ok(crate::config::loader::Swept::Sweep(p)) => {
                Some(format!("; {}", super::sweep::summary_line(&p)))
            }
            Ok(_) => None,
            Err(code) => return Ok(code),
        }
    } else {
        None
    };
    println!(
        "ok: {}: {}{}",
        config.experiment.display(),
        summary(&resolved),
        sweep.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
