//! Checkpoints: `checkpoints/step-00000120/` in the run directory, holding
//!
//! - `model.safetensors`: the weights, under runner's parameter paths;
//! - `optimizer.bpk`: AdamW's moments and step counts (burnpack, keyed by the path-derived
//!   parameter ids of `train::params`);
//! - `state.json`: step, epoch, data position, RNG scheme, schedule and counters.
//!
//! A checkpoint is written into a hidden temporary directory, each file fsynced, and then
//! renamed into place (and the parent directory fsynced): a kill at any moment leaves either
//! the complete directory or none. "Latest" is the highest step with a complete directory;
//! leftover temporary directories are ignored and removed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

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
        save_model_weights(model, &tmp.join(MODEL))?;
        optim
            .save(tmp.join(OPTIMIZER))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("cannot write the optimizer state")?;
        fs::write(tmp.join(STATE), serde_json::to_vec_pretty(state)?)?;
        for f in [MODEL, OPTIMIZER, STATE] {
            fs::File::open(tmp.join(f))?.sync_all()?;
        }
        Ok(())
    };
    write().with_context(|| {
        format!(
            "cannot write checkpoint `{}` (is the disk full or read-only?); earlier checkpoints are intact",
            target.display()
        )
    })?;
    if target.exists() {
        // Same step written again (a resumed run re-saving): replace it.
        discard(&root, &target)?;
    }
    fs::rename(&tmp, &target)
        .with_context(|| format!("cannot move the checkpoint into `{}`", target.display()))?;
    sync_dir(&root);
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

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not all filesystems allow opening a directory, and a failure
    // here loses nothing that is not also lost on a crash without it.
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A checkpoint read back: its state and where its tensors are.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: TrainState,
}

/// Reads `state.json` of the checkpoint directory `dir` and checks it.
pub fn read(dir: &Path, job: &str) -> Result<Loaded> {
    let state_path = dir.join(STATE);
    let text = fs::read_to_string(&state_path).with_context(|| {
        format!(
            "`{}` is not a runner checkpoint (no readable {STATE}); give a `checkpoints/step-…` directory or `auto`",
            dir.display()
        )
    })?;
    let state: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is damaged", state_path.display()))?;
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
    Ok(Loaded {
        dir: dir.to_path_buf(),
        state,
    })
}

impl Loaded {
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

/// Writes `model`'s weights as safetensors under runner's parameter paths.
pub fn save_model_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write `{}`", path.display()))
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
