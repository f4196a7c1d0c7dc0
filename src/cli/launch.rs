//! `runner launch --slurm`: a batch script in a new run directory, submitted with sbatch.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::sweep::Planned;
use super::{ConfigArgs, SlurmArgs, refuse};
use crate::{dist, rundir, sweep};

pub fn launch(config: &ConfigArgs, args: &SlurmArgs) -> Result<ExitCode> {
    let resolved = match super::sweep::planned(config) {
        Ok(Planned::Sweep(req, plan, dir)) => return launch_sweep(config, args, &req, &plan, &dir),
        Ok(Planned::One(resolved)) => resolved,
        Err(code) => return Ok(code),
    };
    crate::config::print_warnings(&resolved);
    let dir = rundir::run_dir_path(&resolved, chrono::Utc::now());
    if let Err(refusal) = rundir::check_reusable(&dir, resolved.experiment.resume.is_some()) {
        return Ok(refuse(&refusal.0));
    }
    let invocation = invocation(config, None)?;
    let text = dist::slurm::script(&resolved, &dir, &invocation, &options(args));
    let Some(job) = write_and_submit(args, &dir, &text)? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "submitted batch job {job}: {}\nrun directory: {}\nfollow it: tail -f {}",
        crate::run::summary(&resolved),
        dir.display(),
        dir.join(format!("slurm-{job}.out")).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What every task runs: this binary and `launch`'s own arguments (a sweep's `-m` axes and
/// cells with `array`).
fn invocation(
    config: &ConfigArgs,
    array: Option<dist::slurm::Array>,
) -> Result<dist::slurm::Invocation> {
    Ok(dist::slurm::Invocation {
        runner: std::env::current_exe().context("cannot find the runner executable")?,
        experiment: config.experiment.clone(),
        profiles: config.profiles.clone(),
        overrides: config.overrides(),
        seed: config.seed,
        multirun: config.multirun.clone(),
        array,
    })
}

/// Writes the script into `dir`; with `--print` prints it and submits nothing, else submits
/// it: the job id.
fn write_and_submit(args: &SlurmArgs, dir: &std::path::Path, text: &str) -> Result<Option<String>> {
    let path = dist::slurm::write(dir, text)?;
    if args.print {
        print!("{text}");
        eprintln!("wrote {} (not submitted)", path.display());
        return Ok(None);
    }
    dist::slurm::submit(&path).map(Some)
}

fn options(args: &SlurmArgs) -> dist::slurm::Options {
    dist::slurm::Options {
        partition: args.partition.clone(),
        time: args.time.clone(),
        account: args.account.clone(),
        qos: args.qos.clone(),
        cpus_per_task: args.cpus_per_task,
        extra: args.sbatch.clone(),
    }
}

/// A sweep: one job array over the cells still to run, each task `runner run --sweep-cell`.
fn launch_sweep(
    config: &ConfigArgs,
    args: &SlurmArgs,
    req: &crate::config::Request,
    plan: &crate::config::loader::SweepPlan,
    dir: &std::path::Path,
) -> Result<ExitCode> {
    crate::config::print_warnings(&plan.base);
    // One script asks for one shape of allocation.
    let hw = &plan.base.experiment.hardware;
    for r in plan.cells.iter().flatten() {
        let h = &r.experiment.hardware;
        if (h.nnodes, h.nproc_per_node, &h.device) != (hw.nnodes, hw.nproc_per_node, &hw.device) {
            return Ok(refuse(&format!(
                "the cells of this sweep need different allocations (cell `{}`: {} node(s) × {} on {}; the experiment: {} × {} on {}); a Slurm job array asks for one shape. Sweep the hardware keys in separate launches",
                r.cell.as_ref().map_or("?", |c| c.name.as_str()),
                h.nnodes,
                h.nproc_per_node,
                h.device,
                hw.nnodes,
                hw.nproc_per_node,
                hw.device
            )));
        }
    }
    let judged = sweep::judge(plan);
    super::sweep::warn_skipped(&judged);
    let cells: Vec<String> = judged
        .iter()
        .filter(|j| j.state.runs())
        .map(|j| j.cell.name.clone())
        .collect();
    if cells.is_empty() {
        println!(
            "every cell of the sweep in {} is completed (or left alone); nothing to submit",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    sweep::write_record(dir, req, plan, &judged)?;
    let array = dist::slurm::Array {
        cells: cells.clone(),
        max_parallel: plan.sweep.max_parallel,
    };
    let invocation = invocation(config, Some(array))?;
    let text = dist::slurm::script(&plan.base, dir, &invocation, &options(args));
    let Some(job) = write_and_submit(args, dir, &text)? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "submitted job array {job}: {} cells, at most {} at once\nsweep directory: {}\nrunner runs {} lists them",
        cells.len(),
        plan.sweep.max_parallel,
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
