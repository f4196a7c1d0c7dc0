//! The command line: argument definitions and the commands.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::render::{self, Format};
use crate::config::schema::{self, EXPERIMENT_SCHEMA_FILE, PROFILE_SCHEMA_FILE};
use crate::config::types::JobKind;
use crate::config::{Diagnostics, Request, Resolved, machine, presets, resolve, starter};
use crate::dist::{self, contract::Role};
use crate::jobs;
use crate::rundir;
use crate::train::trainer::Settings;

/// Exit code for configuration errors (runtime failures exit 1).
pub const EXIT_CONFIG: u8 = 2;

/// Declarative YAML/TOML experiment files in, reproducible deep-learning training runs out.
///
/// Values are merged from five layers, lowest to highest: built-in defaults → profiles
/// (--profile, presets/) → the experiment file → RUNNER_<SECTION>__<KEY> environment
/// variables → the command line (--set key=value, bare key=value, --seed, --output-dir).
#[derive(Debug, Parser)]
#[command(name = "runner", version, max_term_width = 100)]
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
    /// Print the fully resolved configuration and its derived values.
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
        /// Print the profile schema (same keys, none required) instead.
        #[arg(long, conflicts_with_all = ["check", "write"])]
        profile: bool,
        /// Fail (exit 1) when schema/runner.schema.json or schema/profile.schema.json is stale.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Write schema/runner.schema.json and schema/profile.schema.json.
        #[arg(long)]
        write: bool,
        /// Repository root holding `schema/`.
        #[arg(long, default_value = ".", value_name = "DIR")]
        root: PathBuf,
    },
    /// List the available profiles with their descriptions.
    Profiles,
    /// Write a commented starter experiment listing every key of a job.
    Init {
        /// mae, text_classification or causal_vae.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(JobKind::ALL.map(JobKind::as_str)))]
        job: String,
        /// Where to write it (default: standard output). An existing file is never overwritten.
        path: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
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
    /// Overrides after the experiment file, as with --set: `train.epochs=1`.
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    fn request(&self) -> Request {
        Request {
            experiment: self.experiment.clone(),
            profiles: self.profiles.clone(),
            overrides: self.set.iter().chain(&self.overrides).cloned().collect(),
            seed: self.seed,
            output_dir: self.output_dir.clone(),
            env: Vec::new(),
        }
        .with_process_env()
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}error: {e:#}", logs::tag());
            logs::note(&format!("error: {e:#}"));
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let level = std::env::var("RUNNER_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let rank = crate::dist::contract::rank_from_env();
    logs::set_rank(rank);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(logs::Sink)
        // Ranks other than 0 end up writing to a file.
        .with_ansi(std::io::stderr().is_terminal() && rank.unwrap_or(0) == 0)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Where log lines go: standard error, except that the data-parallel ranks other than 0 write
/// theirs to `RUN_DIR/ranks/rank-N.log` once the run directory exists. Until then they keep
/// their lines for that file and show only warnings and errors (tagged `[rank N]`), so a
/// terminal shows one rank's log, not N interleaved copies.
mod logs {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    static RANK: OnceLock<Option<usize>> = OnceLock::new();
    static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
    /// A rank's lines from before its log file existed.
    static EARLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    pub fn set_rank(rank: Option<usize>) {
        let _ = RANK.set(rank.filter(|&r| r > 0));
    }

    fn rank() -> Option<usize> {
        RANK.get().copied().flatten()
    }

    /// Adds `line` to this rank's log file, if it has one (what is also printed to stderr).
    pub fn note(line: &str) {
        if let Some(f) = FILE.get() {
            let _ = writeln!(f.lock().unwrap_or_else(|p| p.into_inner()), "{line}");
        }
    }

    /// `[rank N] ` on ranks other than 0.
    pub fn tag() -> String {
        rank().map(|r| format!("[rank {r}] ")).unwrap_or_default()
    }

    /// Sends this rank's log lines to `path` from now on, starting with the ones kept so far.
    pub fn to_file(path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut early = EARLY.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&early)?;
        early.clear();
        let _ = FILE.set(Mutex::new(file));
        Ok(())
    }

    pub struct Sink;
    pub struct Writer {
        /// A warning or an error: shown on every rank.
        loud: bool,
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Writer;
        fn make_writer(&'a self) -> Writer {
            Writer { loud: true }
        }
        fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Writer {
            Writer {
                loud: *meta.level() <= tracing::Level::WARN,
            }
        }
    }

    impl Write for Writer {
        // The formatter hands over one whole event per call.
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(f) = FILE.get() {
                f.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf)?;
                if !self.loud {
                    return Ok(buf.len());
                }
            } else if rank().is_some() {
                EARLY
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                if !self.loud {
                    return Ok(buf.len());
                }
            }
            let mut err = std::io::stderr().lock();
            err.write_all(tag().as_bytes())?;
            err.write_all(buf)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            match FILE.get() {
                Some(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
                None => std::io::stderr().flush(),
            }
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { config, strict } => validate(&config, strict),
        Command::Show {
            config,
            format,
            explain,
        } => show(&config, format.into(), explain),
        Command::Run { config, dry_run } => {
            let live_bar =
                !cli.quiet && cli.log_format == LogFormat::Text && std::io::stderr().is_terminal();
            run(&config, dry_run, live_bar)
        }
        Command::Launch { config, slurm } => launch(&config, &slurm),
        Command::Schema {
            profile,
            check,
            write,
            root,
        } => schema_cmd(profile, check, write, &root),
        Command::Export {
            run_dir,
            encoder_only,
            checkpoint,
            output,
        } => export(
            &run_dir,
            encoder_only,
            checkpoint.as_deref(),
            output.as_deref(),
        ),
        Command::Profiles => profiles(),
        Command::Init { job, path } => init(
            JobKind::parse(&job).expect("clap checked the value"),
            path.as_deref(),
        ),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "runner", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints diagnostics and the closing line; the exit code for configuration errors.
fn report(diags: &Diagnostics, what: &Path) -> ExitCode {
    eprintln!("{}\n", diags.render());
    let n = diags.errors().count();
    eprintln!(
        "error: {n} problem{} in the configuration of `{}`; nothing was run",
        if n == 1 { "" } else { "s" },
        what.display()
    );
    ExitCode::from(EXIT_CONFIG)
}

fn print_warnings(resolved: &Resolved) {
    for w in &resolved.warnings {
        eprintln!("{}\n", w.render());
    }
}

fn resolve_or_report(config: &ConfigArgs) -> Result<Resolved, ExitCode> {
    resolve(&config.request()).map_err(|d| report(&d, &config.experiment))
}

fn summary(resolved: &Resolved) -> String {
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

fn validate(config: &ConfigArgs, strict: bool) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_warnings(&resolved);
    if strict {
        let problems = machine::machine_checks(
            &resolved.experiment,
            &resolved.layers,
            &crate::train::backend::check,
            &jobs::missing_tool,
        );
        if !problems.is_empty() {
            return Ok(report(&Diagnostics(problems), &config.experiment));
        }
    }
    println!(
        "ok: {}: {}",
        config.experiment.display(),
        summary(&resolved)
    );
    Ok(ExitCode::SUCCESS)
}

fn show(config: &ConfigArgs, format: Format, explain: bool) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_warnings(&resolved);
    let text = render::render(&resolved, format, explain);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`runner show … | head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}

fn run(config: &ConfigArgs, dry_run: bool, live_bar: bool) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let role = match dist::contract::role(&resolved.experiment.hardware, &|k| std::env::var(k).ok())
    {
        Ok(role) => role,
        Err(e) => {
            eprintln!("{}error: {e}", logs::tag());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let layout = match &role {
        Role::Worker(layout) => Some(layout.clone()),
        _ => None,
    };
    // Every rank has checked the same configuration; one copy of the warnings is enough.
    if layout.as_ref().is_none_or(|l| l.rank == 0) {
        print_warnings(&resolved);
    }
    // Each machine checks its own paths, programs and devices.
    let problems = machine::machine_checks(
        &resolved.experiment,
        &resolved.layers,
        &crate::train::backend::check,
        &jobs::missing_tool,
    );
    if !problems.is_empty() {
        return Ok(report(&Diagnostics(problems), &config.experiment));
    }
    if let (
        Role::Launch {
            first_rank,
            local_world,
            world,
            node_rank,
            master_addr,
            master_port,
        },
        false,
    ) = (&role, dry_run)
    {
        let hw = &resolved.experiment.hardware;
        let omp_threads = (std::env::var_os("OMP_NUM_THREADS").is_none() && !hw.device.is_cuda())
            .then(|| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / local_world).max(1)
            });
        return dist::spawn::run(&dist::spawn::Workers {
            first_rank: *first_rank,
            local_world: *local_world,
            world: *world,
            node_rank: *node_rank,
            master_addr: master_addr.clone(),
            master_port: *master_port,
            omp_threads,
        });
    }
    let now = chrono::Utc::now();
    if dry_run {
        if layout.as_ref().is_some_and(|l| l.rank != 0) {
            return Ok(ExitCode::SUCCESS);
        }
        let dir = rundir::run_dir_path(&resolved, now);
        if let Err(refusal) = rundir::check_reusable(&dir, resolved.experiment.resume.is_some()) {
            eprintln!("error: {refusal}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        rundir::prepare(&resolved, &dir, rundir::Status::Prepared, now)?;
        println!(
            "prepared {} (dry run: {})",
            dir.display(),
            summary(&resolved)
        );
        return Ok(ExitCode::SUCCESS);
    }
    jobs::unsupported_settings(&resolved.experiment).map_err(anyhow::Error::msg)?;
    let local_rank = layout.as_ref().map_or(0, |l| l.local_rank);
    let device = crate::train::backend::training_device(&resolved.experiment.hardware, local_rank)
        .map_err(anyhow::Error::msg)?;
    let ranks = Ranks::join(layout.as_ref(), &resolved)?;
    let coll = ranks.collective();
    let outcome = train_as_rank(&resolved, coll, &ranks, &device, now, live_bar);
    ranks.finish(outcome.as_ref().err().map(|e| format!("{e:#}")).as_deref());
    outcome
}

/// This process's membership of a data-parallel run, or none.
struct Ranks {
    #[cfg(runner_c10d)]
    group: Option<dist::group::Group>,
}

impl Ranks {
    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    fn join(layout: Option<&dist::contract::Layout>, resolved: &Resolved) -> Result<Ranks> {
        let Some(layout) = layout else {
            return Ok(Ranks {
                #[cfg(runner_c10d)]
                group: None,
            });
        };
        #[cfg(runner_c10d)]
        {
            let backend = resolved
                .derived
                .dist_backend
                .unwrap_or(crate::config::types::DistBackend::Gloo);
            let timeout =
                std::time::Duration::from_secs(u64::from(resolved.experiment.hardware.ddp_timeout));
            Ok(Ranks {
                group: Some(dist::group::Group::join(layout, backend, timeout)?),
            })
        }
        #[cfg(not(runner_c10d))]
        anyhow::bail!(
            "rank {} of {}: this runner binary has no data-parallel engine (build it with the \
             `tch` feature: `just setup-tch build-tch`)",
            layout.rank,
            layout.world
        )
    }

    fn collective(&self) -> &dyn crate::train::collective::Collective {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            return g;
        }
        &crate::train::collective::Single
    }

    /// Where a failure the watchdog finds is recorded: the run directory's meta.json on
    /// rank 0, the rank's log on the others.
    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    fn on_fatal(&self, dir: &Path, meta: Option<&rundir::Meta>) {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            let (dir, meta) = (dir.to_path_buf(), meta.cloned());
            g.on_fatal(Box::new(move |why| match &meta {
                Some(meta) => {
                    let _ = rundir::finish(&dir, meta, Some(why.to_string()));
                }
                None => logs::note(&format!("error: {why}")),
            }));
        }
    }

    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    fn finish(&self, error: Option<&str>) {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            g.finish(error);
        }
    }
}

/// One rank's run (rank 0 of 1 when training alone): read the data, agree on the run
/// directory, train, record how it went.
fn train_as_rank(
    resolved: &Resolved,
    coll: &dyn crate::train::collective::Collective,
    ranks: &Ranks,
    device: &burn::tensor::Device,
    now: chrono::DateTime<chrono::Utc>,
    live_bar: bool,
) -> Result<ExitCode> {
    let main = coll.rank() == 0;
    // Data, tokenizer and pretrained files are read (on every rank) before the run directory
    // exists, so a bad input leaves nothing behind.
    let ready = jobs::prepare(&resolved.experiment);
    // Rank 0 proposes the run directory; every rank says whether it is ready.
    let dir = rundir::run_dir_path(resolved, now);
    let mine = match (&ready, main) {
        (Err(e), _) => format!("error {e:#}"),
        (Ok(_), true) => match rundir::check_reusable(&dir, resolved.experiment.resume.is_some()) {
            Ok(()) => format!("dir {}", dir.display()),
            Err(refusal) => format!("refused {refusal}"),
        },
        (Ok(_), false) => "ready".into(),
    };
    let all = coll.exchange("ready", &mine)?;
    let ready = ready?;
    for (r, said) in all.iter().enumerate() {
        if let Some(refusal) = said.strip_prefix("refused ") {
            eprintln!("{}error: {refusal}", logs::tag());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        if let Some(e) = said.strip_prefix("error ") {
            anyhow::bail!("{} could not start: {e}", coll.describe(r));
        }
    }
    let dir = PathBuf::from(all[0].strip_prefix("dir ").unwrap_or_default());
    let meta = if main {
        let meta = rundir::prepare(resolved, &dir, rundir::Status::Running, now);
        coll.exchange("dir", meta.as_ref().map_or("failed", |_| "ok"))?;
        let meta = meta?;
        ranks.on_fatal(&dir, Some(&meta));
        tracing::info!("{}", summary(resolved));
        tracing::info!("run directory: {}", dir.display());
        Some(meta)
    } else {
        if coll.exchange("dir", "ok")?[0] != "ok" {
            anyhow::bail!(
                "rank 0 could not create the run directory {}",
                dir.display()
            );
        }
        let log = dir.join("ranks").join(format!("rank-{}.log", coll.rank()));
        logs::to_file(&log)
            .with_context(|| format!("cannot write this rank's log `{}`", log.display()))?;
        ranks.on_fatal(&dir, None);
        tracing::info!(
            "{} (of {} ranks): {}",
            coll.describe(coll.rank()),
            coll.world(),
            summary(resolved)
        );
        None
    };
    let settings = Settings {
        exp: &resolved.experiment,
        derived: &resolved.derived,
        run_dir: &dir,
        live_bar,
        collective: coll,
    };
    match (ready.train(&settings, device), meta) {
        (Ok(done), Some(meta)) => {
            rundir::finish(&dir, &meta, None)?;
            let eval: Vec<String> = done
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
                done.steps,
                done.train_seconds,
                done.samples_per_s,
                done.final_loss
                    .map(|l| format!(", final loss {l:.4}"))
                    .unwrap_or_default(),
                if eval.is_empty() {
                    String::new()
                } else {
                    format!("; {}", eval.join(", "))
                },
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        (Ok(_), None) => {
            tracing::info!("done");
            Ok(ExitCode::SUCCESS)
        }
        (Err(e), meta) => {
            if let Some(meta) = meta {
                let _ = rundir::finish(&dir, &meta, Some(format!("{e:#}")));
            }
            Err(e.context(format!("training failed (run directory {})", dir.display())))
        }
    }
}

fn launch(config: &ConfigArgs, args: &SlurmArgs) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_warnings(&resolved);
    let dir = rundir::run_dir_path(&resolved, chrono::Utc::now());
    if let Err(refusal) = rundir::check_reusable(&dir, resolved.experiment.resume.is_some()) {
        eprintln!("error: {refusal}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let invocation = dist::slurm::Invocation {
        runner: std::env::current_exe().context("cannot find the runner executable")?,
        experiment: config.experiment.clone(),
        profiles: config.profiles.clone(),
        overrides: config
            .set
            .iter()
            .chain(&config.overrides)
            .cloned()
            .collect(),
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
        summary(&resolved),
        dir.display(),
        dir.join(format!("slurm-{job}.out")).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn export(
    run_dir: &Path,
    encoder_only: bool,
    checkpoint: Option<&Path>,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let config = run_dir.join(rundir::RESOLVED_CONFIG);
    if !config.is_file() {
        anyhow::bail!(
            "`{}` is not a run directory: it has no {} (give the directory `runner run` \
             printed)",
            run_dir.display(),
            rundir::RESOLVED_CONFIG
        );
    }
    // The run's own resolved configuration, without this shell's RUNNER_* variables.
    let request = Request {
        experiment: config.clone(),
        profiles: Vec::new(),
        overrides: Vec::new(),
        seed: None,
        output_dir: None,
        env: Vec::new(),
    };
    let resolved = match resolve(&request) {
        Ok(r) => r,
        Err(d) => return Ok(report(&d, &config)),
    };
    let weights = match checkpoint {
        Some(p) if p.is_dir() => p.join(crate::train::checkpoint::MODEL),
        Some(p) => p.to_path_buf(),
        None => {
            let final_model = run_dir.join(crate::train::trainer::FINAL_WEIGHTS);
            if !final_model.is_file() {
                anyhow::bail!(
                    "`{}` has no model.safetensors (the run has not finished); export a \
                     checkpoint with --checkpoint {}/checkpoints/step-N",
                    run_dir.display(),
                    run_dir.display()
                );
            }
            final_model
        }
    };
    let out = output.map(Path::to_path_buf).unwrap_or_else(|| {
        run_dir.join("export").join(if encoder_only {
            "encoder.safetensors"
        } else {
            "mae.safetensors"
        })
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let done = jobs::export(&resolved.experiment, &weights, encoder_only, &out)?;
    println!(
        "wrote {} ({} tensors, {} parameters) from {}",
        out.display(),
        done.tensors,
        done.parameters,
        weights.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn schema_cmd(profile: bool, check: bool, write: bool, root: &Path) -> Result<ExitCode> {
    let files = [
        (
            root.join(EXPERIMENT_SCHEMA_FILE),
            schema::render(&schema::experiment_schema()),
        ),
        (
            root.join(PROFILE_SCHEMA_FILE),
            schema::render(&schema::profile_schema()),
        ),
    ];
    if check {
        let stale: Vec<String> = files
            .iter()
            .filter(|(path, text)| {
                std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str())
            })
            .map(|(path, _)| path.display().to_string())
            .collect();
        if stale.is_empty() {
            println!(
                "ok: {} and {} are up to date",
                files[0].0.display(),
                files[1].0.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: stale or missing: {}\n  = help: the config types changed; run `cargo run -- schema --write` and commit the result",
            stale.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    if write {
        for (path, text) in &files {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            rundir::write_atomic(path, text.as_bytes())?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", files[usize::from(profile)].1);
    Ok(ExitCode::SUCCESS)
}

fn profiles() -> Result<ExitCode> {
    let env = std::env::var(presets::PRESETS_ENV).ok();
    let all = presets::all(env.as_deref());
    let width = all.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &all {
        let source = match &p.source {
            presets::PresetSource::File(path) => path.display().to_string(),
            presets::PresetSource::Builtin(_) => "built in".to_string(),
        };
        let description = p.description().unwrap_or_else(|| "(no description)".into());
        println!("{:<width$}  {description}  [{source}]", p.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn init(job: JobKind, path: Option<&Path>) -> Result<ExitCode> {
    let target_dir = match path {
        Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::new(),
    };
    let schema_ref = schema_reference(&target_dir);
    let text = starter::starter(job, &schema_ref);
    match path {
        None => print!("{text}"),
        Some(p) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "`{}` already exists; runner init never overwrites a file",
                            p.display()
                        )
                    } else {
                        anyhow::anyhow!("cannot create `{}`: {e}", p.display())
                    }
                })?;
            file.write_all(text.as_bytes())
                .with_context(|| format!("cannot write `{}`", p.display()))?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `$schema` path for a file in `dir`: relative to the nearest `schema/runner.schema.json`
/// above it, else the conventional `../schema/runner.schema.json`.
fn schema_reference(dir: &Path) -> String {
    let start = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    });
    let Ok(start) = start else {
        return format!("../{EXPERIMENT_SCHEMA_FILE}");
    };
    for (ups, ancestor) in start.ancestors().enumerate() {
        if ancestor.join(EXPERIMENT_SCHEMA_FILE).is_file() {
            return format!("{}{EXPERIMENT_SCHEMA_FILE}", "../".repeat(ups));
        }
    }
    format!("../{EXPERIMENT_SCHEMA_FILE}")
}
