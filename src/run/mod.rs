//! The path of `runner run`, top to bottom:
//!
//! resolve → machine checks → role → (launch the workers | dry run) → device → join the ranks
//! → prepare the job's data → agree on the run directory (and the checkpoint to resume) →
//! write the run directory → train → finish the record.
//!
//! Everything that can be known before training is checked before anything is written: the
//! configuration, the machine, the data, the run directory's state and the checkpoint to
//! resume. The command (`cli::run`) only prints what this returns.

pub mod signals;

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::capability::Facts;
use crate::config::{Diagnostics, Request, Resolved, machine, resolve};
use crate::dist::contract::{self, Role};
use crate::dist::ranks::{Created, Ranks, Ready};
use crate::error::fail;
use crate::jobs;
use crate::rundir::{self, End, Existing, Status};
use crate::train::backend;
use crate::train::checkpoint::{self, Loaded};
use crate::train::trainer::{Ended, Settings, Summary};

/// How `run` is asked to go.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Stop after writing the run directory's configuration files.
    pub dry_run: bool,
    /// Draw a live progress bar (a terminal, not `--quiet`, text logs).
    pub live_bar: bool,
}

/// How a run went, for the command to report.
pub enum Outcome {
    /// The configuration, the machine or the run directory is refused: exit 2.
    Refused(Refusal),
    /// `--dry-run`: the run directory holds the configuration.
    Prepared { dir: PathBuf, summary: String },
    /// Training finished (rank 0's view; `summary` is what summary.json holds).
    Trained { dir: PathBuf, summary: Summary },
    /// A signal stopped training at a step boundary: exit 128 + the signal.
    Interrupted {
        dir: PathBuf,
        signal: i32,
        summary: Summary,
    },
    /// `resume=auto` on a run that already completed: nothing was touched.
    AlreadyComplete { dir: PathBuf },
    /// This process started the machine's workers; their exit code.
    Launched(ExitCode),
    /// A rank other than 0 finished its part.
    RankDone,
}

/// What makes a run refuse to start (exit 2).
pub enum Refusal {
    /// Diagnostics about the configuration or this machine.
    Config(Diagnostics),
    /// Anything else about the set-up: a launcher's variables, the run directory.
    Message(String),
}

/// The one-line summary logged at the start and printed by `validate`.
pub fn summary(resolved: &Resolved) -> String {
    let e = &resolved.experiment;
    let d = &resolved.derived;
    let profiles = if resolved.profiles.is_empty() {
        "none".to_string()
    } else {
        resolved.profiles.join(", ")
    };
    let lr =
        d.lr.map(|lr| format!("{lr:e}"))
            .unwrap_or_else(|| "?".into());
    format!(
        "{} `{}`: profiles {profiles}; {} on {}; global batch {} = {} per device × {} accumulation × {} data-parallel; lr {lr}",
        e.job,
        e.name,
        e.hardware.backend.as_str(),
        e.hardware.device,
        d.global_batch_size,
        e.train.per_device_batch_size,
        d.grad_accum_steps,
        d.data_parallel_size,
    )
}

/// What this binary and machine offer, for the capability table's machine rows.
pub fn facts() -> Facts {
    Facts {
        devices: backend::facts(),
        process_groups: crate::dist::process_groups(),
    }
}

/// Every problem this machine has with `resolved` (`validate --strict` and `run`).
pub fn machine_problems(resolved: &Resolved) -> Diagnostics {
    Diagnostics(machine::machine_checks(
        &resolved.experiment,
        &resolved.layers,
        &facts(),
        &jobs::missing_tool,
    ))
}

/// `runner run`.
pub fn run(req: &Request, opts: Options) -> Result<Outcome> {
    // --- the configuration
    let resolved = match resolve(req) {
        Ok(r) => r,
        Err(d) => return Ok(Outcome::Refused(Refusal::Config(d))),
    };
    if resolved.cell.is_none() && (resolved.experiment.sweep.is_some() || !req.multirun.is_empty())
    {
        return Ok(Outcome::Refused(Refusal::Message(format!(
            "`{}` is a sweep (it has a `sweep:` section or `-m` axes): run its cells with \
             `runner sweep {}` (`--dry-run` lists them), or one of them with `runner run … \
             --sweep-cell INDEX`",
            req.experiment.display(),
            req.experiment.display()
        ))));
    }
    let role = match contract::role(&resolved.experiment.hardware, &|k| std::env::var(k).ok()) {
        Ok(role) => role,
        Err(e) => return Ok(Outcome::Refused(Refusal::Message(e))),
    };
    let layout = match &role {
        Role::Worker(layout) => Some(layout.clone()),
        _ => None,
    };
    // Every rank has checked the same configuration; one copy of the warnings is enough.
    if layout.as_ref().is_none_or(|l| l.rank == 0) {
        crate::config::print_warnings(&resolved);
    }
    // --- this machine (each machine checks its own paths, programs and devices)
    let problems = machine_problems(&resolved);
    if problems.has_errors() {
        return Ok(Outcome::Refused(Refusal::Config(problems)));
    }
    let now = chrono::Utc::now();
    // --- a launcher starts the workers, which come back here as ranks
    if let (Role::Launch { .. }, false) = (&role, opts.dry_run) {
        return crate::dist::spawn::launch(&role, &resolved.experiment.hardware)
            .map(Outcome::Launched);
    }
    if opts.dry_run {
        return dry_run(&resolved, layout.as_ref().is_some_and(|l| l.rank != 0), now);
    }
    // --- the device and the other ranks
    let hw = &resolved.experiment.hardware;
    let device = backend::training_device(hw, layout.as_ref().map_or(0, |l| l.local_rank))?;
    let ranks = Ranks::join(layout.as_ref(), hw)?;
    let outcome = as_rank(&resolved, &ranks, &device, now, opts);
    ranks.finish(
        outcome
            .as_ref()
            .err()
            .map(crate::error::one_line)
            .as_deref(),
    );
    outcome
}

/// `--dry-run`: the run directory with the configuration files, and nothing trained.
fn dry_run(
    resolved: &Resolved,
    other_rank: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Outcome> {
    if other_rank {
        return Ok(Outcome::RankDone);
    }
    let dir = rundir::run_dir_path(resolved, now);
    let existing = rundir::inspect(&dir);
    let resume = resolved.experiment.resume.as_deref();
    if let (Existing::Completed(_), Some("auto")) = (&existing, resume) {
        return Ok(Outcome::AlreadyComplete { dir });
    }
    if let Err(refusal) = existing.check(&dir, resume.is_some()) {
        return Ok(Outcome::Refused(Refusal::Message(refusal.0)));
    }
    rundir::prepare(resolved, &dir, Status::Prepared, now)?;
    Ok(Outcome::Prepared {
        dir,
        summary: summary(resolved),
    })
}

/// One rank's run (rank 0 of 1 when training alone): read the data, agree on the run
/// directory, train, record how it went.
fn as_rank(
    resolved: &Resolved,
    ranks: &Ranks,
    device: &burn::tensor::Device,
    now: chrono::DateTime<chrono::Utc>,
    opts: Options,
) -> Result<Outcome> {
    let exp = &resolved.experiment;
    let main = ranks.is_main();
    // --- the data, read on every rank before the run directory exists: bad input leaves
    // nothing behind
    let prepared = jobs::prepare(exp).and_then(|job| {
        let steps = resolved
            .derived
            .steps(exp, job.train_len())
            .map_err(|h| fail(h.message, h.help))?;
        Ok((job, steps))
    });
    // Every rank read the same data, so every rank refuses alike.
    if let (Ok((job, _)), Some(metric)) = (&prepared, &exp.eval.metric_for_best)
        && let Some(d) = unknown_metric(resolved, metric, &job.metrics())
    {
        return Ok(Outcome::Refused(Refusal::Config(d)));
    }
    // --- rank 0 judges the run directory and picks the checkpoint; every rank says whether
    // it is ready
    let dir = rundir::run_dir_path(resolved, now);
    let claimed = match &prepared {
        Ok((_, steps)) if main => claim(&dir, exp.resume.as_deref(), exp.job.as_str(), steps),
        _ => Ok(Ready::Ready {
            dir: None,
            resume: None,
        }),
    };
    let mine = match (&prepared, &claimed) {
        (Err(e), _) | (_, Err(e)) => Ready::Failed {
            error: crate::error::one_line(e),
        },
        (Ok(_), Ok(ready)) => ready.clone(),
    };
    let all = ranks.ready(&mine)?;
    // This rank's own failure with its whole chain and fix; the others' as they told it.
    let (job, steps) = prepared?;
    claimed?;
    let mut resume_dir = None;
    for (r, said) in all.iter().enumerate() {
        match said {
            Ready::Failed { error } => {
                anyhow::bail!("{} could not start: {error}", ranks.describe(r))
            }
            Ready::Refused { why } => return Ok(Outcome::Refused(Refusal::Message(why.clone()))),
            Ready::Complete { dir } => {
                if main {
                    return Ok(Outcome::AlreadyComplete { dir: dir.clone() });
                }
                return Ok(Outcome::RankDone);
            }
            Ready::Ready { resume, .. } if r == 0 => resume_dir = resume.clone(),
            Ready::Ready { .. } => {}
        }
    }
    // Every rank reads the checkpoint rank 0 picked (it was checked whole there).
    let resume = resume_dir
        .map(|d| checkpoint::read(&d, exp.job.as_str()))
        .transpose()?;

    // --- the run directory (rank 0 writes it; the others log into it)
    let record = if main {
        let record = rundir::prepare(resolved, &dir, Status::Running, now);
        ranks.created(if record.is_ok() {
            Created::Yes
        } else {
            Created::No
        })?;
        let record = record?;
        let on_fatal = record.clone();
        ranks.on_fatal(Box::new(move |why| {
            let _ = on_fatal.finish(End::Failed(why.to_string()));
        }));
        tracing::info!("{}", summary(resolved));
        tracing::info!("run directory: {}", dir.display());
        Some(record)
    } else {
        if ranks.created(Created::Yes)? == Created::No {
            anyhow::bail!(
                "rank 0 could not create the run directory {}",
                dir.display()
            );
        }
        ranks.log_into(&dir)?;
        ranks.on_fatal(Box::new(|_| {}));
        tracing::info!(
            "{} (of {} ranks): {}",
            ranks.describe(ranks.collective().rank()),
            ranks.collective().world(),
            summary(resolved)
        );
        None
    };
    let _heartbeat = record.as_ref().map(|r| r.keep_alive());

    // --- train (a signal stops a run training alone at the next step boundary)
    let stop = if ranks.alone() {
        Some(signals::Stop::install()?)
    } else {
        None
    };
    let asked = || stop.as_ref().and_then(signals::Stop::requested).is_some();
    let settings = Settings {
        exp,
        derived: &resolved.derived,
        steps: &steps,
        run_dir: &dir,
        live_bar: opts.live_bar,
        collective: ranks.collective(),
        resume: resume.as_ref(),
        stop: &asked,
    };
    let trained = job.train(&settings, device);

    // --- finish the record
    drop(_heartbeat);
    let Some(record) = record else {
        return trained.map(|_| Outcome::RankDone);
    };
    match trained {
        Ok(summary) if summary.status == Ended::Interrupted => {
            let signal = stop
                .as_ref()
                .and_then(signals::Stop::requested)
                .unwrap_or(0);
            record.finish(End::Interrupted(signals::name(signal)))?;
            Ok(Outcome::Interrupted {
                dir,
                signal,
                summary,
            })
        }
        Ok(summary) => {
            if let Some(why) = &summary.stopped_early {
                record.update(|m| m.stopped_early = Some(why.clone()))?;
            }
            record.finish(End::Completed)?;
            Ok(Outcome::Trained { dir, summary })
        }
        Err(e) => {
            let _ = record.finish(End::Failed(crate::error::one_line(&e)));
            Err(e.context(format!("training failed (run directory {})", dir.display())))
        }
    }
}

/// `eval.metric_for_best` when the job reports no such metric (it knows its held-out sets'
/// names only once the data is read).
fn unknown_metric(resolved: &Resolved, metric: &str, reported: &[String]) -> Option<Diagnostics> {
    if reported.iter().any(|m| m == metric) {
        return None;
    }
    let close = crate::config::suggest::closest_value(metric, reported)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    let d = crate::config::Diagnostic::error(
        "unknown-metric",
        format!("eval.metric_for_best `{metric}` is not a metric this job's evaluations report"),
    )
    .help(format!(
        "{close}they report: {}",
        crate::train::checkpoint::list_or_none(
            &reported.iter().map(String::as_str).collect::<Vec<_>>()
        )
    ));
    Some(Diagnostics::from(
        resolved.layers.diag_at("eval.metric_for_best", d),
    ))
}

/// Rank 0's judgement of the run directory before anything is written: whether it may be
/// used, and the checkpoint to continue from (an error: no checkpoint to resume reads back
/// whole, or it was written under another plan).
fn claim(
    dir: &Path,
    resume: Option<&str>,
    job: &str,
    steps: &crate::config::derived::Steps,
) -> Result<Ready> {
    let existing = rundir::inspect(dir);
    if let (Existing::Completed(_), Some("auto")) = (&existing, resume) {
        return Ok(Ready::Complete {
            dir: dir.to_path_buf(),
        });
    }
    if let Err(r) = existing.check(dir, resume.is_some()) {
        return Ok(Ready::Refused { why: r.0 });
    }
    let Some(resume) = resume else {
        return Ok(Ready::Ready {
            dir: Some(dir.to_path_buf()),
            resume: None,
        });
    };
    let loaded: Option<Loaded> = checkpoint::pick(resume, dir, job)?;
    if let Some(l) = &loaded {
        l.fits(steps)?;
    }
    Ok(Ready::Ready {
        dir: Some(dir.to_path_buf()),
        resume: loaded.map(|l| l.dir),
    })
}

/// For commands other than `run` that need a resolved run directory's configuration.
pub fn resolve_run_dir(run_dir: &Path) -> Result<std::result::Result<Resolved, Diagnostics>> {
    if !rundir::is_run_dir(run_dir) {
        return Err(fail(
            format!(
                "`{}` is not a run directory: it has no {}",
                run_dir.display(),
                rundir::RESOLVED_CONFIG
            ),
            "give the directory `runner run` printed",
        ));
    }
    let request = rundir::recorded_request(run_dir, Request::default().with_process_env());
    Ok(resolve(&request))
}
