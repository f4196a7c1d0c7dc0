//! `runner launch --slurm`: a batch script in a new run directory, submitted with sbatch.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{ConfigArgs, SlurmArgs, refuse, resolve_or_report};
use crate::{dist, rundir};

pub fn launch(config: &ConfigArgs, args: &SlurmArgs) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    crate::config::print_warnings(&resolved);
    let dir = rundir::run_dir_path(&resolved, chrono::Utc::now());
    if let Err(refusal) = rundir::check_reusable(&dir, resolved.experiment.resume.is_some()) {
        return Ok(refuse(&refusal.0));
    }
    let invocation = dist::slurm::Invocation {
        runner: std::env::current_exe().context("cannot find the runner executable")?,
        experiment: config.experiment.clone(),
        profiles: config.profiles.clone(),
        overrides: config.overrides(),
        seed: config.seed,
    };
    let options = dist::slurm::Options {
        partition: args.partition.clone(),
        time: args.time.clone(),
        account: args.account.clone(),
        qos: args.qos.clone(),
        cpus_per_task: args.cpus_per_task,
        extra: args.sbatch.clone(),
    };
    let text = dist::slurm::script(&resolved, &dir, &invocation, &options);
    let path = dist::slurm::write(&dir, &text)?;
    if args.print {
        print!("{text}");
        eprintln!("wrote {} (not submitted)", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let job = dist::slurm::submit(&path)?;
    println!(
        "submitted batch job {job}: {}\nrun directory: {}\nfollow it: tail -f {}",
        crate::run::summary(&resolved),
        dir.display(),
        dir.join(format!("slurm-{job}.out")).display()
    );
    Ok(ExitCode::SUCCESS)
}
