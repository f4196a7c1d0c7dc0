//! The one interface between the trainer and a job (mae, text_classification, causal_vae).
//!
//! A job owns its data and its model type; the trainer owns everything else: order of the
//! data, batching into optimizer steps, the optimizer, the schedule, checkpoints, metrics.
//! Batches are assembled on the CPU by [`Job::train_batch`], possibly in loader worker threads,
//! and only become tensors in [`Job::loss`] on the training thread.

use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::recompute::{Boundary, Stages};

/// Named scalar metrics of one held-out set, e.g. `("accuracy", 0.81)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSet {
    /// Short name of the set (a validation file's stem, e.g. `dev_matched`).
    pub name: String,
    pub metrics: Vec<(String, f64)>,
}

/// A held-out set as the trainer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// Short name of the set (a validation file's stem, e.g. `dev_matched`).
    pub name: String,
    /// Examples in it.
    pub len: usize,
}

pub trait Job: Send + Sync + 'static {
    type Model: Module;
    /// A batch as plain host data, ready to be turned into tensors.
    type Batch: Send + 'static;

    /// Training examples.
    fn train_len(&self) -> usize;

    /// Assembles the training examples at `indices` (may run on a loader worker thread).
    /// Random draws (augmentation, masks) come from `epoch_seed` mixed with each example's
    /// index, so they are fixed by (seed, epoch, example) whatever the batching or resume.
    fn train_batch(&self, indices: &[usize], epoch_seed: u64) -> Result<Self::Batch>;

    /// Number of samples in a batch (the last one of an epoch may be short).
    fn batch_len(batch: &Self::Batch) -> usize;

    /// The model training starts from: freshly initialised (drawing from the device's seeded
    /// RNG), plus whatever pretrained weights the job's own config names.
    fn init_model(&self, device: &Device) -> Result<Self::Model>;

    /// Loads weights only (`init_from`, or the job's own pretrained source) into `model`.
    /// The default reads a safetensors file written by runner.
    fn load_weights(&self, model: Self::Model, path: &Path) -> Result<Self::Model> {
        crate::train::checkpoint::load_model_weights(model, path)
    }

    /// Mean loss over the batch, `[1]`, with autodiff when the model is in training mode.
    fn loss(&self, model: &Self::Model, batch: Self::Batch, device: &Device) -> Result<Tensor<1>>;

    /// The tensor that passes between the stages of [`Job::stages`].
    type Boundary: Boundary;

    /// [`Job::loss`] cut into stages at its blocks, for `train.gradient_checkpointing`: the same
    /// computation, whose blocks the trainer runs again during backward instead of keeping
    /// their activations (`train::recompute`).
    fn stages<'a>(
        &'a self,
        batch: Self::Batch,
        device: &Device,
    ) -> Result<Stages<'a, Self::Model, Self::Boundary>>;

    /// The held-out sets evaluations cover (none: the job is only trained).
    fn held_out(&self) -> Vec<HeldOut>;

    /// Sums of per-example statistics (a loss sum, confusion counts, …) over the examples
    /// `range` of held-out set `set`, for `model` in inference mode. The trainer gives each
    /// rank its part of every set and adds the parts' sums, so a job never sees other ranks.
    fn eval_sums(
        &self,
        model: &Self::Model,
        device: &Device,
        set: usize,
        range: Range<usize>,
        batch_size: usize,
    ) -> Result<Vec<f64>>;

    /// The metrics of held-out set `set` from [`Job::eval_sums`] summed over all its examples.
    fn eval_metrics(&self, set: usize, sums: &[f64]) -> Vec<(String, f64)>;

    /// The names [`Job::eval_metrics`] gives its metrics, in its order (for checking
    /// `eval.metric_for_best` before training).
    fn metric_names(&self) -> Vec<&'static str>;

    /// Files for people to look at, left in the run directory after each evaluation at
    /// `step` (the MAE reconstruction grid, the CausalVAE previews). The trainer calls it once
    /// per evaluation, in the process that writes the run directory.
    fn draw(
        &self,
        _model: &Self::Model,
        _device: &Device,
        _step: u64,
        _run_dir: &Path,
    ) -> Result<()> {
        Ok(())
    }
}
