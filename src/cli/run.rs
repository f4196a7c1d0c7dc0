//! `runner run`: the run path (`crate::run`), and what it says when it is done.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, LogFormat, refuse, report};
use crate::run::{self, Options, Outcome, Refusal};

pub fn run(
    config: &ConfigArgs,
    sweep_cell: Option<String>,
    dry_run: bool,
    quiet: bool,
    log_format: LogFormat,
) -> Result<ExitCode> {
    let request = crate::config::Request {
        cell: sweep_cell,
        ..config.request()
    };
    execute(&request, dry_run, quiet, log_format)
}

/// Runs `request` (`run`, and `rerun` with a recorded configuration) and says how it went.
pub fn execute(
    request: &crate::config::Request,
    dry_run: bool,
    quiet: bool,
    log_format: LogFormat,
) -> Result<ExitCode> {
    let opts = Options {
        dry_run,
        live_bar: !quiet && log_format == LogFormat::Text && std::io::stderr().is_terminal(),
    };
    Ok(match run::run(request, opts)? {
        Outcome::Refused(Refusal::Config(d)) => report(&d, &request.experiment),
        Outcome::Refused(Refusal::Message(why)) => refuse(&why),
        Outcome::Prepared { dir, summary } => {
            println!("prepared {} (dry run: {summary})", dir.display());
            ExitCode::SUCCESS
        }
        Outcome::Trained { dir, summary } => {
            let eval: Vec<String> = summary
                .eval
                .iter()
                .filter_map(|(set, m)| {
                    m.get("accuracy")
                        .and_then(|a| a.as_f64())
                        .map(|a| format!("{set} accuracy {a:.4}"))
                })
                .collect();
            println!(
                "trained {} steps in {:.1}s ({:.1} samples/s){}{}\nrun directory: {}",
                summary.steps,
                summary.train_seconds,
                summary.samples_per_s,
                summary
                    .final_loss
                    .map(|l| format!(", final loss {l:.4}"))
                    .unwrap_or_default(),
                if eval.is_empty() {
                    String::new()
                } else {
                    format!("; {}", eval.join(", "))
                },
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Outcome::Interrupted {
            dir,
            signal,
            summary,
        } => {
            eprintln!(
                "interrupted by {} after step {} of {}{}; continue with `--set resume=auto`\nrun directory: {}",
                run::signals::name(signal),
                summary.steps,
                summary.total_steps,
                summary
                    .last_checkpoint
                    .as_deref()
                    .map(|c| format!(" (checkpoint {c})"))
                    .unwrap_or_else(|| " (no checkpoint: checkpoint.strategy is no)".into()),
                dir.display()
            );
            ExitCode::from(run::signals::exit_code(signal) as u8)
        }
        Outcome::AlreadyComplete { dir } => {
            println!(
                "{} already completed; nothing to resume (its summary.json says how it went)",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Outcome::Launched(code) => code,
        Outcome::RankDone => {
            tracing::info!("done");
            ExitCode::SUCCESS
        }
    })
}
