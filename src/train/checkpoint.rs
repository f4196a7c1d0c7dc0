//! Checkpoints: `checkpoints/step-00000120/` in the run directory, holding
//!
//! - `model.safetensors`: the weights, under runner's parameter paths;
//! - `optimizer.bpk`: AdamW's moments and step counts (burnpack, keyed by the path-derived
//!   parameter ids of `train::params`);
//! - `state.json`: step, epoch, data position, RNG scheme, schedule and counters, and the
//!   size of each tensor file (written last: a directory without it is not a checkpoint).
//!
//! A checkpoint is written into a hidden temporary directory, each file fsynced, and then
//! renamed into place (and the parent directory fsynced, `crate::durable`): a kill at any
//! moment leaves either the complete directory or none. "Latest" is the highest step whose
//! directory reads back whole ([`pick`]: a checkpoint damaged later, its weights cut short
//! say, is passed over with a warning); leftover temporary directories are removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::WithHelp as _;

pub const DIR: &str = "checkpoints";
/// The weights file inside a checkpoint directory.
pub const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const TMP_PREFIX: &str = ".tmp-";
/// Bumped when the layout or the meaning of `state.json` changes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    pub job: String,
    /// Optimizer steps completed.
    pub step: u64,
    /// Epoch the next step belongs to, and its first micro-batch within that epoch.
    pub epoch: u64,
    pub next_micro_batch: u64,
    /// The plan the data position refers to; a resume under another plan is refused.
    pub steps_per_epoch: u64,
    pub micro_batches_per_epoch: u64,
    pub total_steps: u64,
    /// Samples trained on so far.
    pub samples: u64,
    /// Seed of the run. The RNG (dropout, masking) is re-seeded from `(seed, step)` before
    /// every step, so its state at a step boundary is this pair: nothing else to store.
    pub seed: u64,
    pub rng: String,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Training seconds so far (over all resumed segments).
    pub train_seconds: f64,
    /// fp16 only: the dynamic loss scale to continue with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<super::precision::LossScale>,
    /// Bytes of each tensor file, to tell a whole checkpoint from a damaged one (absent in
    /// checkpoints of earlier runner versions, whose weights' header is checked instead).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, u64>,
    /// `eval.metric_for_best`'s tracker: the kept-best set and the early-stopping counter,
    /// so that a resumed run keeps and stops as an uninterrupted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<super::best::State>,
}

pub fn dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Where the checkpoint of `step` is (or will be) in `run_dir`.
pub fn dir_of(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(DIR).join(dir_name(step))
}

fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Complete checkpoints in `run_dir`, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = run_dir.join(DIR);
    let mut found = Vec::new();
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("cannot list `{}`", root.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(step_of) else {
            continue;
        };
        if entry.path().join(STATE).is_file() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes temporary directories left by a checkpoint write or deletion that was killed.
pub fn remove_partial(run_dir: &Path) -> Result<()> {
    let root = run_dir.join(DIR);
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            fs::remove_dir_all(entry.path()).with_context(|| {
                format!(
                    "cannot remove the partial checkpoint `{}`",
                    entry.path().display()
                )
            })?;
        }
    }
    Ok(())
}

/// Writes a checkpoint atomically; then deletes all but the newest `keep_last` (0 keeps all).
pub fn save<M: Module>(
    run_dir: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
    keep_last: u32,
) -> Result<PathBuf> {
    let root = run_dir.join(DIR);
    fs::create_dir_all(&root).with_context(|| format!("cannot create `{}`", root.display()))?;
    let name = dir_name(state.step);
    let tmp = root.join(format!("{TMP_PREFIX}{name}"));
    let target = root.join(&name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp).with_context(|| format!("cannot create `{}`", tmp.display()))?;
    let write = || -> Result<()> {
        save_weights_to(model, &tmp.join(MODEL))?;
        optim
            .save(tmp.join(OPTIMIZER))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("cannot write the optimizer state")?;
        let mut state = state.clone();
        for f in [MODEL, OPTIMIZER] {
            durable::sync_file(&tmp.join(f))?;
            state
                .files
                .insert(f.into(), fs::metadata(tmp.join(f))?.len());
        }
        fs::write(tmp.join(STATE), serde_json::to_vec_pretty(&state)?)?;
        durable::sync_file(&tmp.join(STATE))?;
        durable::sync_dir(&tmp);
        Ok(())
    };
    write()
        .with_context(|| format!("cannot write checkpoint `{}`", target.display()))
        .help("is the disk full or read-only? Earlier checkpoints are intact")?;
    if target.exists() {
        // Same step written again (a resumed run re-saving): replace it.
        discard(&root, &target)?;
    }
    durable::rename(&tmp, &target)?;
    if keep_last > 0 {
        let all = list(run_dir)?;
        let excess = all.len().saturating_sub(keep_last as usize);
        for (_, old) in &all[..excess] {
            discard(&root, old)
                .with_context(|| format!("cannot delete old checkpoint `{}`", old.display()))?;
        }
    }
    Ok(target)
}

/// Deletes a checkpoint directory so that a kill at any moment leaves it whole or gone: it is
/// first renamed out of the `step-N` namespace (atomic), then removed; a removal cut short
/// leaves a temporary directory that `remove_partial` clears at the next start.
fn discard(root: &Path, dir: &Path) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = root.join(format!("{TMP_PREFIX}old-{name}"));
    if doomed.exists() {
        fs::remove_dir_all(&doomed)?;
    }
    fs::rename(dir, &doomed)?;
    fs::remove_dir_all(&doomed)?;
    Ok(())
}

/// A checkpoint read back: its state and where its tensors are.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: TrainState,
}

/// Reads `state.json` of the checkpoint directory `dir` and checks it.
pub fn read(dir: &Path, job: &str) -> Result<Loaded> {
    let state = parse_state(dir)?;
    check_state(dir, &state, job)?;
    Ok(Loaded {
        dir: dir.to_path_buf(),
        state,
    })
}

/// [`read`], and the checkpoint's files are whole.
pub fn read_whole(dir: &Path, job: &str) -> Result<Loaded> {
    let loaded = read(dir, job)?;
    check_files(dir, &loaded.state)?;
    Ok(loaded)
}

fn parse_state(dir: &Path) -> Result<TrainState> {
    let state_path = dir.join(STATE);
    let text = fs::read_to_string(&state_path).with_context(|| {
        format!(
            "`{}` is not a runner checkpoint (no readable {STATE}); give a `checkpoints/step-…` directory or `auto`",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is damaged", state_path.display()))
}

/// A checkpoint of another format or job is not damage: the experiment or runner is wrong.
fn check_state(dir: &Path, state: &TrainState, job: &str) -> Result<()> {
    if state.format_version != FORMAT_VERSION {
        bail!(
            "`{}` has checkpoint format {}, this runner reads format {FORMAT_VERSION}",
            dir.display(),
            state.format_version
        );
    }
    if state.job != job {
        bail!(
            "`{}` is a `{}` checkpoint, but this experiment is `{job}`",
            dir.display(),
            state.job
        );
    }
    Ok(())
}

/// The tensor files are the sizes `state.json` recorded, and the weights' safetensors header
/// matches the file's length.
fn check_files(dir: &Path, state: &TrainState) -> Result<()> {
    for (file, bytes) in &state.files {
        let path = dir.join(file);
        let len = fs::metadata(&path)
            .with_context(|| format!("`{}` is missing", path.display()))?
            .len();
        if len != *bytes {
            bail!(
                "`{}` is {len} bytes, but {bytes} were written",
                path.display()
            );
        }
    }
    check_safetensors(&dir.join(MODEL))?;
    if !dir.join(OPTIMIZER).is_file() {
        bail!("`{}` is missing", dir.join(OPTIMIZER).display());
    }
    Ok(())
}

/// The checkpoint `resume` names for the run in `run_dir`: `auto` (the newest in `run_dir`)
/// or a run directory (its newest) pass over checkpoints that do not read back whole, with a
/// warning, down to the newest that does; a checkpoint directory named itself must be whole.
/// `None`: `auto` found no checkpoint, and the run starts fresh.
pub fn pick(resume: &str, run_dir: &Path, job: &str) -> Result<Option<Loaded>> {
    let (dir, auto) = if resume == "auto" {
        (run_dir.to_path_buf(), true)
    } else {
        let p = PathBuf::from(resume);
        if !p.join(DIR).is_dir() {
            return read_whole(&p, job).map(Some);
        }
        (p, false)
    };
    let all = list(&dir)?;
    if all.is_empty() {
        if auto {
            tracing::info!(
                "resume: auto found no checkpoint in {}; starting fresh",
                dir.display()
            );
            return Ok(None);
        }
        bail!("resume: `{resume}` holds no complete checkpoint");
    }
    let mut damaged = Vec::new();
    for (_, candidate) in all.iter().rev() {
        let whole = parse_state(candidate).and_then(|state| {
            check_state(candidate, &state, job).map_err(Mismatch)?;
            check_files(candidate, &state)?;
            Ok(state)
        });
        match whole {
            Ok(state) => {
                let loaded = Loaded {
                    dir: candidate.clone(),
                    state,
                };
                if !damaged.is_empty() {
                    tracing::warn!(
                        "resume: passed over {} damaged checkpoint{} ({}); resuming from {}",
                        damaged.len(),
                        if damaged.len() == 1 { "" } else { "s" },
                        damaged.join("; "),
                        candidate.display()
                    );
                }
                return Ok(Some(loaded));
            }
            Err(e) if e.is::<Mismatch>() => return Err(e),
            Err(e) => damaged.push(format!("{e:#}")),
        }
    }
    Err(crate::error::fail(
        format!(
            "resume: none of the {} checkpoints in `{}` reads back whole: {}",
            all.len(),
            dir.display(),
            damaged.join("; ")
        ),
        "start a new run (another --output-dir, or without resume)",
    ))
}

/// A checkpoint of another format or job (an error about the run, not damage to step over).
#[derive(Debug)]
struct Mismatch(anyhow::Error);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Mismatch {}

impl Loaded {
    /// Whether this checkpoint's data position means the same under `steps` (the plan of the
    /// run resuming it).
    pub fn fits(&self, steps: &crate::config::derived::Steps) -> Result<()> {
        let st = &self.state;
        if st.steps_per_epoch != steps.steps_per_epoch || st.total_steps != steps.total_steps {
            return Err(crate::error::fail(
                format!(
                    "cannot resume from `{}`: it was written for {} steps per epoch and {} steps \
                     in all, this configuration gives {} and {} (the data, batch size, epochs or \
                     max_steps changed)",
                    self.dir.display(),
                    st.steps_per_epoch,
                    st.total_steps,
                    steps.steps_per_epoch,
                    steps.total_steps
                ),
                "start a new run instead (another --output-dir)",
            ));
        }
        Ok(())
    }

    pub fn load_model<M: Module>(&self, model: M) -> Result<M> {
        load_model_weights(model, &self.dir.join(MODEL))
    }

    pub fn load_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(OPTIMIZER);
        optim
            .load(&path)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot read the optimizer state `{}`", path.display()))
    }
}

/// Writes `model`'s weights as safetensors under runner's parameter paths, durably: a kill
/// leaves the previous file or none, never part of one.
pub fn save_model_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    durable::write_with(path, |tmp| save_weights_to(model, tmp))
}

/// Writes the weights to `path` as it is (inside a checkpoint's temporary directory, or a
/// durable write's temporary file).
fn save_weights_to<M: Module>(model: &M, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Whether a safetensors file is whole: its header parses and the file is exactly as long as
/// the header's tensors say (what a write cut short, or a truncated copy, gets wrong).
pub fn check_safetensors(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let mut f =
        fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| anyhow::anyhow!("`{}` is cut short ({len} bytes)", path.display()))?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        bail!(
            "`{}` is cut short or not safetensors (header of {n} bytes, file of {len})",
            path.display()
        );
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("`{}` has a damaged safetensors header", path.display()))?;
    let end = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, t)| t["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0);
    if 8 + n + end != len {
        bail!(
            "`{}` is {len} bytes, but its header describes {} (the file was cut short or damaged)",
            path.display(),
            8 + n + end
        );
    }
    Ok(())
}

/// Loads every tensor of `model` from a safetensors file written by runner; names the
/// missing and unexpected tensors when the file does not fit the model.
pub fn load_model_weights<M: Module>(model: M, path: &Path) -> Result<M> {
    load_weights_named(model, path, Naming::Runner, |_| false)
}

/// How a weights file names normalisation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// burn's (`gamma`, `beta`), as runner writes them.
    Runner,
    /// PyTorch's (`weight`, `bias`), as reference implementations write them.
    PyTorch,
}

/// Loads every tensor of `model` from a safetensors file, every file tensor for which
/// `ignored` holds left out (e.g. a reference checkpoint's loss-module tensors); names the
/// missing and unexpected tensors when the file does not fit the model.
pub fn load_weights_named<M: Module>(
    mut model: M,
    path: &Path,
    naming: Naming,
    ignored: impl Fn(&str) -> bool,
) -> Result<M> {
    if !path.is_file() {
        bail!("no weights file `{}`", path.display());
    }
    check_safetensors(path)?;
    let mut store = SafetensorsStore::from_file(path).allow_partial(true);
    if naming == Naming::PyTorch {
        store = store.with_from_adapter(burn::store::PyTorchToBurnAdapter);
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !ignored(k))
        .collect();
    if !result.missing.is_empty() || !unused.is_empty() || !result.errors.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        bail!(
            "`{}` does not fit the model: missing {}; unexpected {}{}",
            path.display(),
            list_or_none(&missing),
            list_or_none(&unused),
            if result.errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; mismatched {}",
                    result
                        .errors
                        .iter()
                        .map(|e| format!("{e:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    Ok(model)
}

pub fn list_or_none(items: &[&str]) -> String {
    const SHOWN: usize = 12;
    if items.is_empty() {
        return "none".into();
    }
    let mut s = items
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}
