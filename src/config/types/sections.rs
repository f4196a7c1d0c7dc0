//! Sections shared by every job.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Data loading (PyTorch `DataLoader` / HF `dataloader_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Worker threads that read and decode samples (`--num_workers`,
    /// `dataloader_num_workers`); 0 loads on the training thread.
    pub num_workers: u32,
    /// Stage batches in page-locked host memory for faster copies to a GPU (`--pin_mem`,
    /// `dataloader_pin_memory`); no effect on CPU backends.
    pub pin_memory: bool,
    /// Batches each worker prepares ahead (`dataloader_prefetch_factor`).
    #[schemars(range(min = 1))]
    pub prefetch_factor: u32,
    /// Drop the last incomplete batch of an epoch (`dataloader_drop_last`).
    pub drop_last: bool,
    /// Reshuffle the training set every epoch (from `seed` and the epoch number).
    pub shuffle: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            num_workers: 4,
            pin_memory: true,
            prefetch_factor: 2,
            drop_last: true,
            shuffle: true,
        }
    }
}

/// Batch sizes, length of training and gradient handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Samples per device per micro-batch (MAE `--batch_size`, Megatron `--micro-batch-size`,
    /// HF `per_device_train_batch_size`).
    #[schemars(range(min = 1))]
    pub per_device_batch_size: u32,
    /// Micro-batches whose gradients are summed before one optimizer step (MAE
    /// `--accum_iter`, HF `gradient_accumulation_steps`). Default 1, or derived from
    /// `global_batch_size` when that is given.

    #[schemars(range(min = 1))]
    pub grad_accum_steps: Option<u32>,
    /// Samples per optimizer step over all data-parallel ranks (Megatron
    /// `--global-batch-size`) = per_device_batch_size × grad_accum_steps × data-parallel size.
    /// Derived when absent; when given without `grad_accum_steps`, that is derived from it.

    #[schemars(range(min = 1))]
    pub global_batch_size: Option<u64>,
    /// Passes over the training set (MAE `--epochs`, HF `num_train_epochs`).
    #[schemars(range(min = 1))]
    pub epochs: u32,
    /// Stop after this many optimizer steps, whatever `epochs` says (HF `max_steps`,
    /// Megatron `--train-iters`).

    #[schemars(range(min = 1))]
    pub max_steps: Option<u64>,
    /// Epoch to start counting from (MAE `--start_epoch`); a resumed run takes it from the
    /// checkpoint instead.
    pub start_epoch: u32,
    /// Clip the global L2 norm of all gradients to this value (HF `max_grad_norm`, Megatron
    /// `--clip-grad`); `0` or `null` turns clipping off.
    #[serde(deserialize_with = "null_as_zero")]
    #[schemars(with = "Option<f64>", range(min = 0.0))]
    pub clip_grad_norm: f64,
    /// On an out-of-memory error, halve `per_device_batch_size` and double
    /// `grad_accum_steps` (same global batch) and retry (HF `auto_find_batch_size`).
    pub auto_find_batch_size: bool,
    /// Recompute activations in the backward pass to save memory (HF `gradient_checkpointing`):
    /// only each block's input is kept (a transformer layer, a ResNet block), and the blocks
    /// run again during backward, one at a time: about a third more compute per step.
    pub gradient_checkpointing: bool,
    /// Optimizer steps between two log lines / metrics records.
    #[schemars(range(min = 1))]
    pub log_every_steps: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            per_device_batch_size: 8,
            grad_accum_steps: None,
            global_batch_size: None,
            epochs: 3,
            max_steps: None,
            start_epoch: 0,
            clip_grad_norm: 1.0,
            auto_find_batch_size: false,
            gradient_checkpointing: false,
            log_every_steps: 10,
        }
    }
}

fn null_as_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}

/// Optimizer algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    Adamw,
}

/// Optimizer and learning rate. Set exactly one of `lr` and `base_lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Optimizer (`--optim`): `adamw` (decoupled weight decay; biases and norm weights are
    /// not decayed, as in MAE and HF).
    pub name: OptimizerName,
    /// Peak learning rate (MAE `--lr`, HF `learning_rate`, Megatron `--lr`, Open-Sora-Plan
    /// `--start_learning_rate`).

    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub lr: Option<f64>,
    /// Learning rate per 256 samples: lr = base_lr × global_batch_size / 256 (MAE `--blr`).

    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub base_lr: Option<f64>,
    /// Floor of the schedule (MAE `--min_lr`, Megatron `--min-lr`).
    #[schemars(range(min = 0.0))]
    pub min_lr: f64,
    /// Adam β1 and β2 (`--betas`, Megatron `--adam-beta1`/`--adam-beta2`).
    #[schemars(extend("items" = {"type": "number", "minimum": 0.0, "exclusiveMaximum": 1.0}))]
    pub betas: [f64; 2],
    /// Term added to the denominator for stability (`--adam-eps`, HF `adam_epsilon`).
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub eps: f64,
    /// Decoupled weight decay (`--weight_decay`).
    #[schemars(range(min = 0.0))]
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            name: OptimizerName::Adamw,
            lr: None,
            base_lr: None,
            min_lr: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Shape of the learning-rate curve after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerStyle {
    Constant,
    Linear,
    Cosine,
    InverseSqrt,
    Wsd,
}

/// Learning-rate schedule, stepped once per optimizer step. Warmup rises linearly from
/// `warmup_init_lr`; give it in at most one of `warmup_steps`, `warmup_epochs`, `warmup_ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// After warmup: `constant`, `linear` (to `optimizer.min_lr` at the last step),
    /// `cosine` (half cycle to `min_lr`), `inverse_sqrt`, or `wsd` (warmup-stable-decay: flat,
    /// then a linear decay over the last `decay_fraction` of training) (HF
    /// `lr_scheduler_type`, Megatron `--lr-decay-style`).
    pub style: SchedulerStyle,
    /// Warmup length in optimizer steps (HF `warmup_steps`, Megatron `--lr-warmup-iters`).
    pub warmup_steps: Option<u64>,
    /// Warmup length in epochs, fractions allowed (MAE `--warmup_epochs`).

    #[schemars(range(min = 0.0))]
    pub warmup_epochs: Option<f64>,
    /// Warmup length as a fraction of all steps (HF `warmup_ratio`).

    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub warmup_ratio: Option<f64>,
    /// Learning rate at the first warmup step (Megatron `--lr-warmup-init`).
    #[schemars(range(min = 0.0))]
    pub warmup_init_lr: f64,
    /// `wsd` only: fraction of training spent decaying (default 0.1).

    #[schemars(extend("exclusiveMinimum" = 0.0), range(max = 1.0))]
    pub decay_fraction: Option<f64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            style: SchedulerStyle::Linear,
            warmup_steps: None,
            warmup_epochs: None,
            warmup_ratio: None,
            warmup_init_lr: 0.0,
            decay_fraction: None,
        }
    }
}

/// Numeric type of the forward and backward passes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Dtype {
    Fp32,
    Bf16,
    Fp16,
}

impl Dtype {
    /// The name used in files (`fp32`, `bf16`, `fp16`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Numeric precision. `bf16`/`fp16` keep fp32 master weights and optimizer state and run
/// forward and backward in low precision (what Apex calls O2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PrecisionConfig {
    /// `fp32`, `bf16` or `fp16` (`--precision`, HF `bf16`/`fp16`); low precision needs a
    /// CUDA device on the `tch` backend.
    pub dtype: Dtype,
    /// fp16 only: first dynamic loss scale; halved on overflow (that step is skipped),
    /// doubled after `loss_scale_growth_interval` clean steps (`--init_loss_scale`).
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub init_loss_scale: f64,
    /// fp16 only: clean steps before the loss scale doubles.
    #[schemars(range(min = 1))]
    pub loss_scale_growth_interval: u32,
}

impl Default for PrecisionConfig {
    fn default() -> Self {
        PrecisionConfig {
            dtype: Dtype::Fp32,
            init_loss_scale: 65536.0,
            loss_scale_growth_interval: 2000,
        }
    }
}

/// When something happens during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    No,
    Steps,
    Epoch,
}

impl Strategy {
    /// Whether something on this schedule happens after optimizer step `step` (counted from
    /// 1): every `every` steps, or at each epoch's end. The trainer and `runner plan` both ask
    /// this, so the plan's counts are the trainer's.
    pub fn due(self, step: u64, every: u64, steps_per_epoch: u64) -> bool {
        match self {
            Strategy::No => false,
            Strategy::Steps => step.is_multiple_of(every),
            Strategy::Epoch => step.is_multiple_of(steps_per_epoch),
        }
    }
}

/// Evaluation on the held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// `no`, every `steps`, or at the end of each `epoch` (HF `eval_strategy`/`do_eval`).
    pub strategy: Strategy,
    /// Optimizer steps between evaluations with `strategy: steps` (HF `eval_steps`).
    #[schemars(range(min = 1))]
    pub every_steps: u64,
    /// Samples per device per evaluation batch; default `train.per_device_batch_size`
    /// (HF `per_device_eval_batch_size`).

    #[schemars(range(min = 1))]
    pub per_device_batch_size: Option<u32>,
    /// Also evaluate before the first step (not when resuming), the baseline later
    /// evaluations are compared with (HF `eval_on_start`).
    pub on_start: bool,
    /// The evaluation metric that says which evaluation is best, as `<set>.<metric>`:
    /// `dev_matched.accuracy`, `held_out.loss`, `held_out.psnr` (HF
    /// `metric_for_best_model`). Drives `checkpoint.keep_best`, `checkpoint.load_best_at_end`
    /// and early stopping; checked against the metrics the job reports before training.
    #[schemars(length(min = 1))]
    pub metric_for_best: Option<String>,
    /// Whether a higher `metric_for_best` is better. Default from its name, as HF does:
    /// lower for loss-like names (`loss`, `l1`, `mse`, `…_loss`), higher otherwise.
    pub greater_is_better: Option<bool>,
    /// Stop training after this many evaluations in a row without `metric_for_best`
    /// improving (HF `early_stopping_patience`); `summary.json` and `meta.json` say so.
    #[schemars(range(min = 1))]
    pub early_stopping_patience: Option<u32>,
    /// How much `metric_for_best` must improve to count as an improvement (HF
    /// `early_stopping_threshold`).
    #[schemars(range(min = 0.0))]
    pub early_stopping_threshold: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            strategy: Strategy::Epoch,
            every_steps: 500,
            per_device_batch_size: None,
            on_start: false,
            metric_for_best: None,
            greater_is_better: None,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
        }
    }
}

/// Checkpoints (model, optimizer, scheduler, data position and RNG state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// `no`, every `steps`, or at the end of each `epoch` (HF `save_strategy`).
    pub strategy: Strategy,
    /// Optimizer steps between checkpoints with `strategy: steps` (HF `save_steps`).
    #[schemars(range(min = 1))]
    pub every_steps: u64,
    /// Newest checkpoints kept; older ones are deleted. 0 keeps all (HF `save_total_limit`).
    pub keep_last: u32,
    /// Also keep the weights (only the weights) of the K best evaluations by
    /// `eval.metric_for_best`, under `best/`, apart from the resume checkpoints; ties go to
    /// the later step. `summary.json` names the best step and value.
    pub keep_best: u32,
    /// Make the final `model.safetensors` the best evaluation's weights (by
    /// `eval.metric_for_best`) instead of the last step's (HF `load_best_model_at_end`).
    pub load_best_at_end: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            strategy: Strategy::Steps,
            every_steps: 1000,
            keep_last: 3,
            keep_best: 0,
            load_best_at_end: false,
        }
    }
}

/// Metrics and logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Where TensorBoard event files go (MAE `--log_dir`); `{output_dir}` is the run directory.
    #[schemars(length(min = 1))]
    pub dir: String,
    /// Write TensorBoard event files.
    pub tensorboard: bool,
    /// Write `metrics.jsonl` in the run directory.
    pub jsonl: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            dir: "{output_dir}/logs".into(),
            tensorboard: true,
            jsonl: true,
        }
    }
}
