//! `runner launch --slurm`: a batch script that runs `runner run` on every node through
//! `srun`, written into the run directory and handed to `sbatch`.
//!
//! Slurm schedules; runner does not. The script asks for `hardware.nnodes` nodes with
//! `nproc_per_node` tasks each (and as many GPUs per node on CUDA), exports `MASTER_ADDR` (the
//! job's first node) and `MASTER_PORT`, and starts one `runner run` per task with the
//! experiment, profiles and overrides `launch` was given, plus `--output-dir` fixed to this run
//! directory. Each task finds its rank in Slurm's variables (`dist::contract`); `srun
//! --kill-on-bad-exit=1` ends the step when any task fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::Resolved;
use crate::config::layers::LayerKind;
use crate::host::absolute;

/// The sbatch options `runner launch` takes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// More `#SBATCH` lines, verbatim (`--mem=64G`, `--constraint=a100`).
    pub extra: Vec<String>,
}

/// What the tasks run: the `runner` binary and the arguments `runner run` gets.
pub struct Invocation {
    pub runner: PathBuf,
    pub experiment: PathBuf,
    pub profiles: Vec<String>,
    pub overrides: Vec<String>,
    pub seed: Option<u64>,
    /// `-m KEY=V1,V2` sweep axes.
    pub multirun: Vec<String>,
    /// A sweep: the cells to run, one array task each, at most `max_parallel` at once.
    pub array: Option<Array>,
}

/// A Slurm job array over a sweep's cells.
pub struct Array {
    /// The cells' names (`runner run --sweep-cell NAME`), by array index.
    pub cells: Vec<String>,
    pub max_parallel: u32,
}

pub const SCRIPT: &str = "slurm.sbatch";

/// `s` quoted for the shell (shlex's POSIX rules). Arguments and paths cannot hold the nul
/// byte, the one thing shlex refuses; were one there, it is dropped rather than cut the word.
fn quote(s: &str) -> String {
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| quote(&s.replace('\0', "")))
}

/// A `#SBATCH` option's value: sbatch reads these lines itself (no shell expands `%j` or `=`
/// there), so only a value with spaces or quotes needs quoting, which sbatch undoes.
fn directive(v: &str) -> String {
    if v.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        quote(v)
    } else {
        v.to_string()
    }
}

/// The batch script for `resolved`, training into `run_dir`.
pub fn script(resolved: &Resolved, run_dir: &Path, inv: &Invocation, opts: &Options) -> String {
    let exp = &resolved.experiment;
    let hw = &exp.hardware;
    let run_dir = absolute(run_dir);
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# Written by `runner launch --slurm` (runner {}); submit again with `sbatch {}`.\n",
        env!("CARGO_PKG_VERSION"),
        run_dir.join(SCRIPT).display()
    );
    let mut sbatch = |line: String| s.push_str(&format!("#SBATCH {line}\n"));
    sbatch(format!("--job-name={}", directive(&exp.name)));
    sbatch(format!("--nodes={}", hw.nnodes));
    sbatch(format!("--ntasks-per-node={}", hw.nproc_per_node));
    if hw.device.is_cuda() {
        sbatch(format!("--gpus-per-node={}", hw.nproc_per_node));
    }
    if let Some(c) = opts.cpus_per_task {
        sbatch(format!("--cpus-per-task={c}"));
    }
    for (flag, v) in [
        ("partition", &opts.partition),
        ("time", &opts.time),
        ("account", &opts.account),
        ("qos", &opts.qos),
    ] {
        if let Some(v) = v {
            sbatch(format!("--{flag}={}", directive(v)));
        }
    }
    let log = match &inv.array {
        Some(a) => {
            sbatch(format!(
                "--array=0-{}%{}",
                a.cells.len().saturating_sub(1),
                a.max_parallel.max(1)
            ));
            "slurm-%A_%a.out"
        }
        None => "slurm-%j.out",
    };
    sbatch(format!(
        "--output={}",
        directive(&run_dir.join(log).display().to_string())
    ));
    for e in &opts.extra {
        sbatch(e.clone());
    }
    s += "\nset -euo pipefail\n";
    // The configuration's RUNNER_* variables, so that submitting the script again trains the
    // same configuration.
    for layer in resolved.layers.layers() {
        if let LayerKind::Env { var } = &layer.kind
            && let Ok(value) = std::env::var(var)
        {
            s += &format!("export {var}={}\n", quote(&value));
        }
    }
    s += "# Rank 0 serves the rendezvous on the job's first node.\n";
    s += "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n";
    s += &format!("export MASTER_PORT={}\n", hw.master_port);
    if !hw.device.is_cuda() {
        // As torchrun does for CPU workers: share the cores instead of oversubscribing them.
        s += "export OMP_NUM_THREADS=\"${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}\"\n";
    }
    if let Some(a) = &inv.array {
        // By name, not by index: a cell is its values, whatever the files list by the time
        // a task starts.
        s += "# The sweep's cells, one per array task.\ncells=(\n";
        for c in &a.cells {
            s += &format!("    {}\n", quote(c));
        }
        s += ")\n";
    }
    let mut cmd = vec![format!(
        "srun --kill-on-bad-exit=1 {} run {}",
        quote(&absolute(&inv.runner).display().to_string()),
        quote(&absolute(&inv.experiment).display().to_string())
    )];
    for p in &inv.profiles {
        // A profile given as a file path must still be found from the compute nodes.
        let p = if Path::new(p).is_file() {
            absolute(Path::new(p)).display().to_string()
        } else {
            p.clone()
        };
        cmd.push(format!("--profile {}", quote(&p)));
    }
    if let Some(seed) = inv.seed {
        cmd.push(format!("--seed {seed}"));
    }
    for o in &inv.overrides {
        cmd.push(format!("--set {}", quote(o)));
    }
    for m in &inv.multirun {
        cmd.push(format!("-m {}", quote(m)));
    }
    if inv.array.is_some() {
        cmd.push("--sweep-cell \"${cells[$SLURM_ARRAY_TASK_ID]}\"".into());
    }
    cmd.push(format!(
        "--output-dir {}",
        quote(&run_dir.display().to_string())
    ));
    s += &cmd.join(" \\\n    ");
    s += "\n";
    s
}

/// The options a script this module wrote was submitted with (its `#SBATCH` lines, less
/// those the configuration decides), for `runner rerun` of a Slurm run.
pub fn options_from_script(text: &str) -> Options {
    let mut o = Options::default();
    for line in text.lines() {
        let Some(opt) = line.strip_prefix("#SBATCH ") else {
            continue;
        };
        let (flag, value) = opt.split_once('=').unwrap_or((opt, ""));
        let value = shlex::split(value)
            .and_then(|v| v.into_iter().next())
            .unwrap_or_else(|| value.to_string());
        match flag {
            "--job-name" | "--nodes" | "--ntasks-per-node" | "--gpus-per-node" | "--output"
            | "--array" => {}
            "--partition" => o.partition = Some(value),
            "--time" => o.time = Some(value),
            "--account" => o.account = Some(value),
            "--qos" => o.qos = Some(value),
            "--cpus-per-task" => o.cpus_per_task = value.parse().ok(),
            _ => o.extra.push(opt.to_string()),
        }
    }
    o
}

/// Submits `script` with `sbatch`; the job id.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "`sbatch` is not on PATH: submit from a Slurm login node, or write the \
                     script only with `runner launch --slurm --print`"
                )
            } else {
                anyhow::anyhow!("cannot run sbatch: {e}")
            }
        })?;
    if !out.status.success() {
        bail!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints "jobid" or "jobid;cluster".
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch printed no job id (it said {:?})", text.trim());
    }
    Ok(id)
}

/// Writes the script into `run_dir` (created if need be); its path.
pub fn write(run_dir: &Path, text: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run directory `{}`", run_dir.display()))?;
    let path = run_dir.join(SCRIPT);
    crate::durable::write(&path, text.as_bytes())?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make `{}` executable", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_options_read_back() {
        let o = options_from_script(
            "#SBATCH --job-name=x\n#SBATCH --nodes=2\n#SBATCH --time=10\n#SBATCH --partition='gpu a'\n#SBATCH --mem=64G\n#SBATCH --cpus-per-task=4\n",
        );
        assert_eq!(o.time.as_deref(), Some("10"));
        assert_eq!(o.partition.as_deref(), Some("gpu a"));
        assert_eq!(o.cpus_per_task, Some(4));
        assert_eq!(o.extra, ["--mem=64G"]);
    }

    #[test]
    fn quoting_keeps_plain_words_and_protects_the_rest() {
        assert_eq!(quote("/runs/mnli-8xA100/x.out"), "/runs/mnli-8xA100/x.out");
        assert_eq!(directive("/runs/x/slurm-%j.out"), "/runs/x/slurm-%j.out");
        assert_eq!(directive("a b"), "'a b'");
        for word in ["optimizer.betas=[0.9, 0.95]", "it's", "", "a\"b $HOME `x`"] {
            let quoted = quote(word);
            assert_ne!(quoted, word, "{word:?} needs quotes");
            assert_eq!(
                shlex::split(&quoted),
                Some(vec![word.to_string()]),
                "{quoted}"
            );
        }
        // shlex quotes `=` too (a shell could read a first word with it as an assignment).
        assert_eq!(
            shlex::split(&quote("train.epochs=3")),
            Some(vec!["train.epochs=3".into()])
        );
    }
}
