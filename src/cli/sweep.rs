//! `runner sweep`: every cell resolved and validated before any runs (`config::loader::
//! resolve_sweep`), judged against its directory (`sweep::judge`), recorded (`sweep.yaml`,
//! `cells.json`), then run (`sweep::exec`). Also the cell check `validate` and `show` make
//! of an experiment with a sweep.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use comfy_table::{Table, presets::NOTHING};

use super::args::SweepArgs;
use super::{ConfigArgs, EXIT_CONFIG, LogFormat, refuse, report};
use crate::config::Request;
use crate::config::loader::{SweepPlan, Swept, resolve_sweep};
use crate::config::sweep::compact;
use crate::rundir;
use crate::sweep::{self, State, exec};

/// The sweep of `req`'s experiment with every cell valid (or the experiment alone, when it
/// has no sweep); the exit code once every problem (of the experiment, the sweep, each
/// cell) is printed.
pub fn checked(req: &Request, what: &Path) -> Result<Swept, ExitCode> {
    with_cells_checked(resolve_sweep(req), what)
}

/// [`checked`] for `show`: what the engine cannot train is a warning there.
pub fn checked_for_show(req: &Request, what: &Path) -> Result<Swept, ExitCode> {
    with_cells_checked(crate::config::loader::resolve_sweep_for_show(req), what)
}

fn with_cells_checked(
    plan: Result<Swept, crate::config::Diagnostics>,
    what: &Path,
) -> Result<Swept, ExitCode> {
    let plan = match plan {
        Ok(Swept::Sweep(p)) => p,
        Ok(one) => return Ok(one),
        Err(d) => return Err(report(&d, what)),
    };
    let mut bad = 0;
    for (cell, r) in plan.sweep.cells.iter().zip(&plan.cells) {
        if let Err(d) = r {
            bad += 1;
            eprintln!(
                "cell {} `{}` ({}):\n{}\n",
                cell.index,
                cell.name,
                cell.describe(),
                d.render()
            );
        }
    }
    if bad > 0 {
        eprintln!(
            "error: {bad} of the {} cells of `{}` have configuration problems; nothing was run",
            plan.cells.len(),
            what.display()
        );
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(Swept::Sweep(plan))
}

/// An experiment ready to launch: one run, or a sweep resolved into its directory.
pub enum Planned {
    One(crate::config::Resolved),
    Sweep(Box<Request>, SweepPlan, PathBuf),
}

/// The sweep of `config`'s experiment resolved into its directory (with `{timestamp}`
/// filled once, so that every cell, and every later run of the sweep given this directory,
/// works in the same place); the request its cells are resolved from.
pub fn planned(config: &ConfigArgs) -> Result<Planned, ExitCode> {
    let mut req = config.request();
    let plan = match checked(&req, &config.experiment)? {
        Swept::Sweep(plan) => plan,
        Swept::One(resolved) => return Ok(Planned::One(resolved)),
    };
    let dir = rundir::run_dir_path(&plan.base, chrono::Utc::now());
    if dir.display().to_string() == plan.base.derived.output_dir {
        return Ok(Planned::Sweep(Box::new(req), plan, dir));
    }
    req.output_dir = Some(dir.display().to_string());
    match checked(&req, &config.experiment)? {
        Swept::Sweep(plan) => Ok(Planned::Sweep(Box::new(req), plan, dir)),
        Swept::One(_) => unreachable!("the sweep was there a moment ago"),
    }
}

/// Says which cells a sweep leaves alone and why.
pub fn warn_skipped(judged: &[sweep::Judged]) {
    for j in judged {
        match j.state {
            State::Changed => eprintln!(
                "warning: cell `{}` is not run: `{}` holds a run of another configuration (the \
                 experiment or a file it builds on changed since); it is left as it is. Move it \
                 away to run the cell again, or give the sweep another --output-dir",
                j.cell.name,
                j.dir.display()
            ),
            State::Live => eprintln!(
                "warning: cell `{}` is being trained by another process; this sweep leaves it alone",
                j.cell.name
            ),
            _ => {}
        }
    }
}

pub fn sweep(args: &SweepArgs, log_format: LogFormat) -> Result<ExitCode> {
    let config = &args.config;
    let (req, plan, dir) = match planned(config) {
        Ok(Planned::Sweep(req, plan, dir)) => (*req, plan, dir),
        Ok(Planned::One(_)) => {
            return Ok(refuse(&format!(
                "`{}` has no sweep: add a `sweep:` section (`grid`, `zip`, `seeds`) or give \
                 `-m KEY=V1,V2,…`",
                config.experiment.display()
            )));
        }
        Err(code) => return Ok(code),
    };
    if !args.dry_run
        && let Err(code) = machine_checked(&plan, &config.experiment)
    {
        return Ok(code);
    }
    let judged = sweep::judge(&plan);
    if args.dry_run {
        print_cells(&plan, &judged);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &plan.base.warnings {
        eprintln!("{}\n", w.render());
    }
    warn_skipped(&judged);
    let changed = judged.iter().filter(|j| j.state == State::Changed).count();
    let live = judged.iter().filter(|j| j.state == State::Live).count();
    sweep::write_record(&dir, &req, &plan, &judged)?;
    let todo: Vec<exec::Job> = judged
        .iter()
        .filter(|j| j.state.runs())
        .map(|j| exec::Job {
            name: j.cell.name.clone(),
            index: j.cell.index,
        })
        .collect();
    let done = judged.iter().filter(|j| j.state == State::Done).count();
    let parallel = args
        .parallel
        .map_or(plan.sweep.max_parallel as usize, usize::from)
        .clamp(1, todo.len().max(1));
    eprintln!(
        "sweep {}: {} cells; {} to run ({} at a time), {done} already completed",
        dir.display(),
        judged.len(),
        todo.len(),
        parallel
    );
    let cuda = plan.base.experiment.hardware.device.is_cuda();
    let exec = exec::Exec {
        exe: std::env::current_exe()?,
        args: cell_args(config, &dir, log_format),
        log_dir: dir.join("logs"),
        parallel,
        fail_fast: args.fail_fast,
        slot_env: exec::slot_env(parallel, cuda, crate::run::facts().devices.cuda_devices),
        total: judged.len(),
    };
    let report = exec::run(&exec, todo)?;
    let failed: Vec<&exec::Ended> = report.ended.iter().filter(|e| !e.succeeded()).collect();
    let completed = report.ended.len() - failed.len();
    if let Some(sig) = report.signal {
        eprintln!(
            "sweep stopped by {}: {completed} cell(s) completed in this run, {} stopped, {} not started; run the same command again to continue",
            crate::run::signals::name(sig),
            failed.len(),
            report.not_started.len()
        );
        return Ok(ExitCode::from(crate::run::signals::exit_code(sig) as u8));
    }
    for f in &failed {
        eprintln!("error: cell `{}` failed (log {}):", f.name, f.log.display());
        for line in exec::error_lines(&f.log) {
            eprintln!("    {line}");
        }
    }
    println!(
        "sweep {}: {} of {} cells completed ({completed} now, {done} before){}{}{}\nrunner runs {} lists them",
        dir.display(),
        completed + done,
        judged.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; {} failed", failed.len())
        },
        if changed == 0 {
            String::new()
        } else {
            format!("; {changed} changed, not run")
        },
        if report.not_started.is_empty() {
            String::new()
        } else {
            format!("; {} not started", report.not_started.len())
        },
        dir.display()
    );
    Ok(
        if failed.is_empty() && changed == 0 && live == 0 && report.not_started.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// What `run` checks of this machine (data paths, backend, devices), for every cell before
/// any runs; one report per distinct problem, naming the cells it concerns.
fn machine_checked(plan: &SweepPlan, what: &Path) -> Result<(), ExitCode> {
    let mut seen: Vec<(String, Vec<&str>)> = Vec::new();
    for r in plan.cells.iter().flatten() {
        let problems = crate::run::machine_problems(r);
        if !problems.has_errors() {
            continue;
        }
        let text = problems.render();
        let cell = r.cell.as_ref().map_or("?", |c| c.name.as_str());
        match seen.iter_mut().find(|(t, _)| *t == text) {
            Some((_, cells)) => cells.push(cell),
            None => seen.push((text, vec![cell])),
        }
    }
    if seen.is_empty() {
        return Ok(());
    }
    for (text, cells) in &seen {
        eprintln!("cells {}:\n{text}\n", cells.join(", "));
    }
    eprintln!(
        "error: this machine cannot run some cells of `{}` (see above); nothing was run",
        what.display()
    );
    Err(ExitCode::from(EXIT_CONFIG))
}

/// The arguments of every cell's `runner run`: the sweep's own (experiment, profiles,
/// overrides, axes) with the sweep directory as `--output-dir`.
fn cell_args(config: &ConfigArgs, dir: &Path, log_format: LogFormat) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--quiet".into(), "--log-format".into()];
    a.push(match log_format {
        LogFormat::Text => "text".into(),
        LogFormat::Json => "json".into(),
    });
    a.push("run".into());
    a.push(config.experiment.clone().into());
    for p in &config.profiles {
        a.extend(["--profile".into(), p.into()]);
    }
    for o in config.overrides() {
        a.extend(["--set".into(), o.into()]);
    }
    for m in &config.multirun {
        a.extend(["-m".into(), m.into()]);
    }
    if let Some(seed) = config.seed {
        a.extend(["--seed".into(), seed.to_string().into()]);
    }
    a.extend(["--output-dir".into(), dir.as_os_str().to_owned()]);
    a
}

/// `--dry-run`: one row per cell with its values and what they make.
fn print_cells(plan: &SweepPlan, judged: &[sweep::Judged]) {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    let mut header = vec!["#".to_string(), "cell".into(), "state".into()];
    header.extend(plan.sweep.keys.iter().cloned());
    header.extend(["global batch".into(), "lr".into(), "steps".into()]);
    table.set_header(header);
    for j in judged {
        let d = &j.resolved.derived;
        let e = &j.resolved.experiment;
        let mut row = vec![
            j.cell.index.to_string(),
            j.cell.name.clone(),
            j.state.as_str().into(),
        ];
        row.extend(j.cell.values.iter().map(|(_, v)| compact(v)));
        row.push(d.global_batch_size.to_string());
        row.push(
            d.lr.map(|lr| format!("{lr:e}"))
                .unwrap_or_else(|| "?".into()),
        );
        row.push(match d.total_steps {
            Some(n) => n.to_string(),
            None => format!("{} epochs", e.train.epochs),
        });
        table.add_row(row);
    }
    println!("{table}");
    println!(
        "{} cells in {} (dry run: nothing was written)",
        judged.len(),
        plan.base.derived.output_dir
    );
}

/// What `validate` and `show` say of a sweep whose cells are all valid.
pub fn summary_line(plan: &SweepPlan) -> String {
    format!(
        "sweep of {} cells over {}, every cell valid",
        plan.sweep.cells.len(),
        plan.sweep.keys.join(", ")
    )
}
