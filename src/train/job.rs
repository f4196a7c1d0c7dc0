//! The one interface between the trainer and a job (mae, text_classification, causal_vae).
//!
//! A job owns its data and its model type; the trainer owns everything else: order of the
//! data, batching into optimizer steps, the optimizer, the schedule, checkpoints, metrics.
//! Batches are assembled on the CPU by [`Job::train_batch`], possibly in loader worker threads,
//! and only become tensors in [`Job::loss`] on the training thread.

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// Named scalar metrics of one held-out set, e.g. `("accuracy", 0.81)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSet {
    /// Short name of the set (a validation file's stem, e.g. `dev_matched`).
    pub name: String,
    pub metrics: Vec<(String, f64)>,
}

/// Where an evaluation happens.
pub struct EvalContext<'a> {
    /// Optimizer steps done.
    pub step: u64,
    pub run_dir: &'a Path,
    /// This rank's part of each held-out set, how the parts' sums meet, and whether this rank
    /// writes files (in one process: everything, nothing to meet, yes).
    pub shard: super::collective::Shard<'a>,
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

    /// Evaluates `model` (already in inference mode) on every held-out set; a job may also
    /// leave files for people to look at in the run directory (the MAE reconstruction grid).
    /// In a data-parallel run each rank evaluates `ctx.shard.part(n)` of a set of `n`, sums
    /// its per-example statistics with the others' (`ctx.shard.sum`) and reports the same
    /// metrics; only the rank that `ctx.shard.writes_files()` leaves files.
    fn evaluate(
        &self,
        model: &Self::Model,
        device: &Device,
        batch_size: usize,
        ctx: &EvalContext<'_>,
    ) -> Result<Vec<EvalSet>>;
}
