//! The command line's definitions: their doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Request;
use crate::config::render::Format;
use crate::config::types::JobKind;

/// Declarative YAML/TOML experiment files in, reproducible deep-learning training runs out.
///
/// Values are merged from five layers, lowest to highest: built-in defaults → profiles
/// (--profile, presets/) → the experiment file → RUNNER_<SECTION>__<KEY> environment
/// variables → the command line (--set key=value, bare key=value, --seed, --output-dir).
#[derive(Debug, Parser)]
#[command(name = "runner", version = env!("RUNNER_VERSION_LINE"), max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// No live progress bar; training reports one log line per `train.log_every_steps`
    /// (as it does whenever stderr is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log lines as human-readable text or as JSON objects (one per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an experiment: a one-line summary, or every problem at once (exit 2).
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also check this machine: data paths exist, the backend is compiled in, the device
        /// exists (what `run` checks before starting).
        #[arg(long)]
        strict: bool,
    },
    /// Print the fully resolved configuration and its derived values. Given a run directory,
    /// print its recorded configuration (`--explain`: its recorded provenance).
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Yaml)]
        format: OutputFormat,
        /// Name, beside each value, the layer that set it (file:line:column, variable, flag).
        #[arg(long)]
        explain: bool,
    },
    /// Print every key whose resolved value differs between two experiments or run
    /// directories (`derived` included), with both values and where each came from.
    ///
    /// Exit 0 when they are the same, 1 when they differ, 2 on a configuration error, as
    /// `diff` does. Profiles and overrides apply to both sides; `--a-set` and `--b-set` to one.
    Diff(DiffArgs),
    /// Resolve, validate, check the machine, create the run directory and train.
    ///
    /// With `hardware.nnodes × nproc_per_node` > 1 (the tch backend), trains data-parallel: this
    /// command starts the machine's `nproc_per_node` workers itself, as torchrun does. Started
    /// by a launcher (torchrun's RANK, WORLD_SIZE, … or srun's SLURM_PROCID, …), it is one of
    /// those workers instead. On several machines without Slurm, run it on each with
    /// `--set hardware.node_rank=N` and node 0's `hardware.master_addr`.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Stop after writing the run directory (config.resolved.yaml, provenance.yaml,
        /// meta.json); train nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run one cell of the experiment's sweep: its index or its name, as `runner sweep
        /// --dry-run` lists them (what `runner sweep` and a Slurm job array run).
        #[arg(long, value_name = "INDEX|NAME")]
        sweep_cell: Option<String>,
    },
    /// Run every cell of an experiment's sweep (its `sweep:` section and `-m KEY=V1,V2`),
    /// each in its own run directory under the experiment's `output_dir`.
    ///
    /// Every cell is resolved and validated before any runs. Run again, the sweep skips
    /// completed cells, resumes interrupted ones and runs new ones; a cell whose directory
    /// holds another configuration is reported and left alone. Exit 0 when every cell
    /// completed, 1 when one failed, 2 on a configuration error, 130/143 after a signal.
    Sweep(SweepArgs),
    /// A table of runs: status, the configuration keys whose values differ between them,
    /// final loss, the best and last value of each evaluation metric, steps and duration. A
    /// sweep's best cell is marked `*`.
    Runs {
        /// Run directories, sweep directories, or folders holding them (default: runs).
        #[arg(value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Best first by this: `final_loss`, an evaluation metric (`dev_matched.accuracy`,
        /// by its best value), `steps`, `seconds`, or a numeric configuration key.
        #[arg(long, value_name = "METRIC")]
        sort: Option<String>,
        /// Evaluation metrics the table shows (repeatable; default: the runs'
        /// `eval.metric_for_best`, else every one). CSV and JSON hold them all.
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RunsFormat::Table)]
        format: RunsFormat,
    },
    /// Draw the curves of several runs in one PNG: the training loss (or `lr`, `grad_norm`,
    /// an evaluation metric such as `dev_matched.accuracy`), each run labelled by the keys
    /// whose values differ between them. A sweep directory plots its cells.
    Plot {
        /// Run directories, sweep directories, or folders holding them.
        #[arg(value_name = "RUN_DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// The curve: `loss`, `lr`, `grad_norm`, `samples_per_s`, or `<set>.<metric>`.
        #[arg(long, default_value = "loss")]
        metric: String,
        /// The PNG to write (replaced if it exists).
        #[arg(long, short = 'o', value_name = "FILE", default_value = "curves.png")]
        output: PathBuf,
    },
    /// Train a run's recorded configuration again, into a new directory, after comparing its
    /// record with now: the code (commit, uncommitted changes), the build (runner, Cargo.lock,
    /// burn, libtorch, CUDA) and the data (content fingerprints). Any difference stops it
    /// unless `--allow-drift`.
    Rerun {
        /// The run directory to repeat.
        run_dir: PathBuf,
        /// Where the new run goes (default: RUN_DIR-rerun-<timestamp>).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<String>,
        /// Only compare and print: exit 0 when nothing differs, 1 when something does.
        #[arg(long, conflicts_with = "allow_drift")]
        check: bool,
        /// Rerun despite differences; they are recorded in the new run's drift.json.
        #[arg(long)]
        allow_drift: bool,
    },
    /// What a run will cost before it runs: steps, evaluations and checkpoints, parameters and
    /// FLOPs, memory per rank (weights, gradients, optimizer state, activations with and
    /// without gradient checkpointing) against the device, disk against the free space, a time
    /// estimate and the learning rate at every step. Counts the data without decoding it
    /// (`data.num_examples` stands in where it is not here); trains nothing unless `--measure`.
    Plan {
        #[command(flatten)]
        config: ConfigArgs,
        /// `text`, a report read in ten seconds, or `json`, every number.
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Also draw the learning-rate curve (warmup end marked) into this PNG.
        #[arg(long, value_name = "PNG")]
        plot: Option<PathBuf>,
        /// Also train four real steps on this machine (one rank, nothing written to the run
        /// directory) and time the last three: the measured step time and the run's time at
        /// it, and the process's peak memory.
        #[arg(long)]
        measure: bool,
    },
    /// Write a Slurm batch script into a new run directory and submit it with sbatch: it runs
    /// `runner run` on every node through srun, each task one data-parallel rank.
    Launch {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Write a finished run's weights for use elsewhere: for `mae`, under the reference
    /// implementation's names (models_mae.py / timm), in safetensors.
    Export {
        /// The run directory (holds config.resolved.yaml and model.safetensors).
        run_dir: PathBuf,
        /// Only the encoder (patch embedding, class token, position embedding, blocks, norm),
        /// as MAE's fine-tuning loads it.
        #[arg(long)]
        encoder_only: bool,
        /// Weights to export instead of the run's final model.safetensors: a checkpoint
        /// directory (`RUN_DIR/checkpoints/step-N`) or a safetensors file.
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// Output file (default: RUN_DIR/export/encoder.safetensors, or mae.safetensors).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the experiment JSON Schema (generated from runner's config types).
    Schema {
        /// Print the schema of one job's experiments and bases (mae, text_classification or
        /// causal_vae: its `model` and `data` keys in place, none required), which editors
        /// complete from in YAML and TOML alike.
        #[arg(long, value_name = "JOB", value_parser = parse_job, conflicts_with_all = ["check", "write", "profile", "base"])]
        job: Option<JobKind>,
        /// Print the profile schema (same keys, none required) instead.
        #[arg(long, conflicts_with_all = ["check", "write", "base"])]
        profile: bool,
        /// Print the schema of base files (`extends`; same keys, none required) instead.
        #[arg(long, conflicts_with_all = ["check", "write"])]
        base: bool,
        /// Fail (exit 1) when a committed schema under schema/ or docs/reference.md is stale.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Write every schema under schema/ (runner for any job, one per job, profile, base)
        /// and docs/reference.md.
        #[arg(long)]
        write: bool,
        /// Repository root holding `schema/`.
        #[arg(long, default_value = ".", value_name = "DIR")]
        root: PathBuf,
    },
    /// List the available profiles with their descriptions.
    Profiles,
    /// Document configuration keys: every key with no argument, a section's keys
    /// (`runner config train`), or one key (`runner config train.epochs`): its type, range,
    /// default, the seed tools' names for it and its documentation (as docs/reference.md).
    Config {
        /// A key (`optimizer.lr`), a section (`optimizer`), or a seed tool's name for a key
        /// (`learning_rate`, `--accum_iter`).
        #[arg(allow_hyphen_values = true)]
        key: Option<String>,
    },
    /// Write a commented starter experiment listing every key of a job, or (with
    /// `--from-command`) the experiment a training command you already have describes.
    ///
    /// The command may be MAE's `main_pretrain.py` or `submitit_pretrain.py`, Hugging Face's
    /// `run_glue.py` (also under `xla_spawn.py`), Megatron/MindSpeed's `pretrain_*.py` or
    /// Open-Sora-Plan's `train_causalvae.py`, with `torchrun` or `python -m
    /// torch.distributed.launch` in front and `export NAME=VALUE` lines before it. Each flag
    /// becomes its key, with the flag in a comment; flags with no counterpart are listed at the
    /// top with the reason. The file is checked at once: exit 2 names what must still be added
    /// (a data path, say).
    Init {
        /// mae, text_classification or causal_vae (with a command, only where its script does
        /// not say it; otherwise this argument is the PATH).
        job: Option<String>,
        /// Where to write it (default: standard output). An existing file is never overwritten.
        path: Option<PathBuf>,
        /// The training command, quoted as one argument (or give it after `--`).
        #[arg(long, value_name = "COMMAND")]
        from_command: Option<String>,
        /// The training command, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the cells (values, global batch, lr, steps, and whether each would run) and
    /// run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Cells run at once (default: the sweep's `max_parallel`, else 1): they share the CPU
    /// cores, or the GPUs (`CUDA_VISIBLE_DEVICES` per cell).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
    /// Stop the other cells (they can resume) when one fails; by default the rest go on.
    #[arg(long)]
    pub fail_fast: bool,
}

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// Launch through Slurm (`sbatch` + `srun`), the scheduler runner writes scripts for.
    #[arg(long, required = true)]
    pub slurm: bool,
    /// Only write the script (RUN_DIR/slurm.sbatch) and print it; submit nothing.
    #[arg(long)]
    pub print: bool,
    /// sbatch --partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// sbatch --time, e.g. 2-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// sbatch --account.
    #[arg(long)]
    pub account: Option<String>,
    /// sbatch --qos.
    #[arg(long)]
    pub qos: Option<String>,
    /// sbatch --cpus-per-task (CPU workers also get that many OpenMP threads).
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Another #SBATCH option, verbatim, e.g. `--sbatch=--mem=64G`. Repeatable.
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first experiment file or run directory.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second experiment file or run directory.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Profile for both sides (as for `show`). Repeatable.
    #[arg(long = "profile", short = 'p', value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Override for both sides, e.g. `--set train.epochs=1`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Override for side A only. Repeatable.
    #[arg(long = "a-set", value_name = "KEY=VALUE")]
    pub a_set: Vec<String>,
    /// Override for side B only. Repeatable.
    #[arg(long = "b-set", value_name = "KEY=VALUE")]
    pub b_set: Vec<String>,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Overrides for both sides, as with --set: `train.epochs=1`.
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunsFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Toml,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Yaml => Format::Yaml,
            OutputFormat::Toml => Format::Toml,
            OutputFormat::Json => Format::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Experiment file (.yaml, .yml or .toml).
    #[arg(value_name = "EXPERIMENT")]
    pub experiment: PathBuf,
    /// Profile: a name from ./presets, $RUNNER_PRESETS or the built-in presets, or a file
    /// path. Repeatable; applied left to right, below the experiment file. Replaces the
    /// experiment's own `profile` list.
    #[arg(long = "profile", short = 'p', value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Override one key with a YAML value, e.g. `--set optimizer.betas=[0.9,0.95]`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Override `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override `output_dir`.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<String>,
    /// Sweep a key over values (Hydra's multirun), e.g. `-m optimizer.lr=1e-4,3e-4`:
    /// combined with every other axis, replacing the file's `sweep.grid` axis of that key.
    /// Repeatable. The experiment becomes a sweep (`runner sweep`).
    #[arg(long = "multirun", short = 'm', value_name = "KEY=V1,V2,…")]
    pub multirun: Vec<String>,
    /// Overrides after the experiment file, as with --set: `train.epochs=1`.
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// The overrides in the order they apply: `--set`s, then the bare ones.
    pub fn overrides(&self) -> Vec<String> {
        self.set.iter().chain(&self.overrides).cloned().collect()
    }

    /// What to resolve: these arguments and this process's environment.
    pub fn request(&self) -> Request {
        Request {
            experiment: self.experiment.clone(),
            profiles: self.profiles.clone(),
            overrides: self.overrides(),
            seed: self.seed,
            output_dir: self.output_dir.clone(),
            env: Vec::new(),
            multirun: self.multirun.clone(),
            cell: None,
        }
        .with_process_env()
    }
}

/// A job's name on the command line (`--job`), with the list when it is not one.
fn parse_job(s: &str) -> Result<JobKind, String> {
    JobKind::parse(s).ok_or_else(|| {
        let names: Vec<&str> = JobKind::ALL.iter().map(|j| j.as_str()).collect();
        format!("unknown job `{s}`: one of {}", names.join(", "))
    })
}
