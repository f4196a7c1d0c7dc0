//! Stage 3 of resolution: values computed from others, and the checks that span keys.
//!
//! Everything here is judged from the configuration alone, so a laptop can check a cluster
//! recipe. What depends on the machine (paths, FFmpeg, CUDA, the backend compiled in) is in
//! `config::machine`.

use serde::Serialize;
use serde_json::Value as Json;

use super::capability;
use super::diagnostic::Diagnostic;
use super::layers::Layers;
use super::types::*;
use crate::error::Help;

/// Computed values, printed under `derived:` by `runner show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// nnodes × nproc_per_node.
    pub world_size: u32,
    /// world_size ÷ (tensor_parallel × pipeline_parallel).
    pub data_parallel_size: u32,
    pub grad_accum_steps: u32,
    /// per_device_batch_size × grad_accum_steps × data_parallel_size.
    pub global_batch_size: u64,
    /// Peak learning rate (`lr`, or `base_lr × global_batch_size / 256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Known without reading data only when `max_steps` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    pub eval_per_device_batch_size: u32,
    /// Collective library used when world_size > 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dist_backend: Option<DistBackend>,
    /// `output_dir` with `{name}` and `{job}` filled in (`{timestamp}` is filled at run time).
    pub output_dir: String,
    /// `logging.dir` with placeholders filled in.
    pub logging_dir: String,
    /// Model sizes after `arch` and the explicit size keys.
    pub model: Json,
}

/// The length of training once the training set has been read: what the trainer runs and
/// what `runner show` cannot know (it has only what `max_steps` fixes, in [`Derived`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Steps {
    /// Examples in the training set.
    pub examples: u64,
    /// Examples each data-parallel rank sees per epoch (the set padded, or cut with
    /// `loader.drop_last`, to a multiple of the ranks, as PyTorch's `DistributedSampler`).
    pub examples_per_rank: u64,
    /// Micro-batches per epoch on each rank.
    pub micro_batches_per_epoch: u64,
    /// Optimizer steps per epoch (the last may have fewer micro-batches, as in HF's Trainer).
    pub steps_per_epoch: u64,
    /// Optimizer steps of the whole run: `max_steps`, else `epochs` × steps per epoch.
    pub total_steps: u64,
    /// Steps of linear warmup (fractional with `warmup_epochs`).
    pub warmup_steps: f64,
    /// The step a fresh run starts at (`train.start_epoch` × steps per epoch).
    pub first_step: u64,
}

impl Derived {
    /// [`Steps`] for a training set of `examples`; an error when that cannot train.
    pub fn steps(&self, exp: &Experiment, examples: usize) -> Result<Steps, Help> {
        let dp = u64::from(self.data_parallel_size.max(1));
        let batch = u64::from(exp.train.per_device_batch_size.max(1));
        if examples == 0 {
            return Err(Help {
                message: "the training set is empty".into(),
                help: "check the data paths (`runner validate --strict` checks they exist)".into(),
            });
        }
        let epoch = EpochShape::new(
            examples,
            batch as usize,
            dp as usize,
            self.grad_accum_steps.max(1) as usize,
            exp.loader.drop_last,
        );
        let examples = examples as u64;
        let examples_per_rank = epoch.examples_per_rank as u64;
        let micro_batches_per_epoch = epoch.micro_batches as u64;
        if micro_batches_per_epoch == 0 {
            let per_rank = if dp > 1 {
                format!(" ({examples_per_rank} per rank on {dp} ranks)")
            } else {
                String::new()
            };
            return Err(Help {
                message: format!(
                    "the training set has {examples} examples{per_rank}, fewer than one batch \
                     of {batch} with `loader.drop_last: true`"
                ),
                help: "lower train.per_device_batch_size or set loader.drop_last: false".into(),
            });
        }
        let steps_per_epoch = epoch.steps as u64;
        let total_steps = exp
            .train
            .max_steps
            .unwrap_or(u64::from(exp.train.epochs) * steps_per_epoch);
        let warmup_steps =
            warmup(&exp.scheduler, Some(total_steps), Some(steps_per_epoch)).unwrap_or(0.0);
        if warmup_steps > 0.0 && warmup_steps >= total_steps as f64 {
            return Err(Help {
                message: format!(
                    "warmup ({warmup_steps} steps) is not shorter than training ({total_steps} \
                     steps, {steps_per_epoch} per epoch)"
                ),
                help: "shorten scheduler.warmup_* or train longer".into(),
            });
        }
        Ok(Steps {
            examples,
            examples_per_rank,
            micro_batches_per_epoch,
            steps_per_epoch,
            total_steps,
            warmup_steps,
            first_step: u64::from(exp.train.start_epoch) * steps_per_epoch,
        })
    }
}

/// How one epoch is cut: PyTorch's `DistributedSampler` pads the shuffled set to a multiple of
/// the ranks (or, with `drop_last`, cuts it), each rank's share is cut into micro-batches (the
/// last one short, or dropped with `drop_last`), and `accum` micro-batches make an optimizer
/// step (the last step of an epoch may have fewer, as in HF's Trainer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochShape {
    pub examples_per_rank: usize,
    pub micro_batches: usize,
    pub steps: usize,
}

impl EpochShape {
    pub fn new(examples: usize, batch: usize, ranks: usize, accum: usize, drop_last: bool) -> Self {
        let (batch, ranks, accum) = (batch.max(1), ranks.max(1), accum.max(1));
        let examples_per_rank = if drop_last {
            examples / ranks
        } else {
            examples.div_ceil(ranks)
        };
        let micro_batches = if drop_last {
            examples_per_rank / batch
        } else {
            examples_per_rank.div_ceil(batch)
        };
        EpochShape {
            examples_per_rank,
            micro_batches,
            steps: micro_batches.div_ceil(accum),
        }
    }
}

/// Warmup steps from whichever of `warmup_steps`, `warmup_ratio` (HF: ceil(ratio × total)) and
/// `warmup_epochs` is set, when what it needs is known; 0 without warmup.
fn warmup(
    sched: &SchedulerConfig,
    total: Option<u64>,
    steps_per_epoch: Option<u64>,
) -> Option<f64> {
    match (sched.warmup_steps, sched.warmup_ratio, sched.warmup_epochs) {
        (Some(w), ..) => Some(w as f64),
        (None, Some(r), _) => total.map(|t| (r * t as f64).ceil()),
        (None, None, Some(e)) => steps_per_epoch.map(|s| e * s as f64),
        (None, None, None) => Some(0.0),
    }
}

/// Computes [`Derived`] and reports every cross-key problem.
pub fn derive(exp: &Experiment, layers: &Layers) -> (Derived, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut err = |key: &str, code: &'static str, msg: String, help: String| {
        diags.push(layers.diag_at(key, Diagnostic::error(code, msg).help(help)));
    };
    let hw = &exp.hardware;
    let train = &exp.train;

    // --- process layout (what the engine cannot do at all is `capability`'s)
    let world_size = capability::world_size(hw);
    let model_parallel = hw
        .tensor_parallel
        .saturating_mul(hw.pipeline_parallel)
        .max(1);
    if !world_size.is_multiple_of(model_parallel) {
        err(
            "hardware.tensor_parallel",
            "batch-arithmetic",
            format!(
                "world size {world_size} is not divisible by tensor_parallel × pipeline_parallel = {model_parallel}"
            ),
            "make nnodes × nproc_per_node a multiple of tensor_parallel × pipeline_parallel".into(),
        );
    }
    let data_parallel_size = (world_size / model_parallel).max(1);
    if hw.node_rank >= hw.nnodes {
        err(
            "hardware.node_rank",
            "value",
            format!(
                "node_rank {} is not below nnodes {}",
                hw.node_rank, hw.nnodes
            ),
            format!("node ranks run from 0 to {}", hw.nnodes.saturating_sub(1)),
        );
    }

    // --- batch arithmetic (Megatron's rule, with layer precedence when both are given)
    let per_step = u64::from(train.per_device_batch_size) * u64::from(data_parallel_size);
    let pd = train.per_device_batch_size;
    // per_step × accumulation, or an error when it does not fit a u64.
    let global_of = |a: u32, err: &mut dyn FnMut(&str, &'static str, String, String)| -> u64 {
        per_step.checked_mul(u64::from(a)).unwrap_or_else(|| {
            err("train.grad_accum_steps", "batch-arithmetic",
                format!("per_device_batch_size {pd} × grad_accum_steps {a} × data-parallel size {data_parallel_size} overflows"),
                "use realistic batch sizes".into());
            u64::MAX
        })
    };
    let (grad_accum_steps, global_batch_size) = match (
        train.grad_accum_steps,
        train.global_batch_size,
    ) {
        (None, None) => (1, per_step),
        (Some(a), None) => (a, global_of(a, &mut err)),
        (accum, Some(g)) => {
            let accum_rank = layers.rank_of("train.grad_accum_steps");
            let global_rank = layers.rank_of("train.global_batch_size");
            // A global batch set above (or without) grad_accum_steps decides it; set in the
            // same layer, the two must agree; set below it, the global batch is recomputed.
            let derive_accum = accum.is_none() || global_rank > accum_rank;
            if derive_accum {
                let accum = (per_step > 0 && g % per_step == 0)
                    .then(|| u32::try_from(g / per_step).ok())
                    .flatten();
                match accum {
                    Some(a) => (a, g),
                    None if per_step > 0 && g % per_step == 0 => {
                        err(
                            "train.global_batch_size",
                            "batch-arithmetic",
                            format!(
                                "global_batch_size {g} needs {} accumulation steps per optimizer step, more than runner counts",
                                g / per_step
                            ),
                            format!(
                                "lower global_batch_size or raise per_device_batch_size (now {pd})"
                            ),
                        );
                        (1, g)
                    }
                    None => {
                        err(
                            "train.global_batch_size",
                            "batch-arithmetic",
                            format!(
                                "global_batch_size {g} is not a multiple of per_device_batch_size {pd} × data-parallel size {data_parallel_size} = {per_step}"
                            ),
                            format!(
                                "pick a global batch that is a multiple of {per_step} (e.g. {}), or change per_device_batch_size",
                                (g / per_step.max(1)).max(1).saturating_mul(per_step)
                            ),
                        );
                        (1, g)
                    }
                }
            } else {
                let a = accum.unwrap_or(1);
                let product = global_of(a, &mut err);
                if accum_rank == global_rank && product != g {
                    err("train.global_batch_size", "batch-arithmetic",
                        format!("global_batch_size {g} ≠ per_device_batch_size {pd} × grad_accum_steps {a} × data-parallel size {data_parallel_size} = {product}"),
                        "set only one of train.global_batch_size and train.grad_accum_steps, or make them agree".into());
                }
                (a, product)
            }
        }
    };

    // --- learning rate
    let opt = &exp.optimizer;
    let lr = match (opt.lr, opt.base_lr) {
        (Some(_), Some(_)) => {
            err("optimizer.base_lr", "lr", "both optimizer.lr and optimizer.base_lr are set".into(),
                "keep one: lr is the peak rate itself, base_lr scales with the batch (lr = base_lr × global_batch_size / 256)".into());
            None
        }
        (None, None) => {
            err(
                "optimizer",
                "lr",
                "no learning rate: set optimizer.lr or optimizer.base_lr".into(),
                "e.g. `optimizer: {lr: 2.0e-5}`, or MAE's `optimizer: {base_lr: 1.5e-4}`".into(),
            );
            None
        }
        (Some(lr), None) => Some(lr),
        (None, Some(b)) => Some(b * global_batch_size as f64 / 256.0),
    };
    if let Some(lr) = lr
        && opt.min_lr > lr
    {
        err(
            "optimizer.min_lr",
            "lr",
            format!("min_lr {} is above the peak learning rate {lr}", opt.min_lr),
            "min_lr is the floor the schedule decays to; make it smaller than lr".into(),
        );
    }

    // --- schedule length
    let sched = &exp.scheduler;
    let total_steps = train.max_steps;
    let warmups = [
        ("scheduler.warmup_steps", sched.warmup_steps.is_some()),
        ("scheduler.warmup_epochs", sched.warmup_epochs.is_some()),
        ("scheduler.warmup_ratio", sched.warmup_ratio.is_some()),
    ];
    let given: Vec<&str> = warmups.iter().filter(|w| w.1).map(|w| w.0).collect();
    if given.len() > 1 {
        err(
            given[1],
            "warmup",
            format!("warmup is given twice: {}", given.join(" and ")),
            "keep one of warmup_steps, warmup_epochs and warmup_ratio".into(),
        );
    }
    // Without the data, only what max_steps fixes; warmup_epochs needs the epoch length.
    let warmup_steps = warmup(sched, total_steps, None).map(|w| w as u64);
    if let (Some(w), Some(t)) = (warmup_steps, total_steps)
        && w >= t
        && w > 0
    {
        err(
            "scheduler.warmup_steps",
            "warmup",
            format!("warmup ({w} steps) is not shorter than training ({t} steps)"),
            "shorten the warmup or train longer".into(),
        );
    }
    if let (Some(we), None) = (sched.warmup_epochs, train.max_steps)
        && we >= f64::from(train.epochs)
        && we > 0.0
    {
        err(
            "scheduler.warmup_epochs",
            "warmup",
            format!(
                "warmup ({we} epochs) is not shorter than training ({} epochs)",
                train.epochs
            ),
            "shorten the warmup or train more epochs".into(),
        );
    }
    if train.max_steps.is_none() && train.start_epoch >= train.epochs {
        err(
            "train.start_epoch",
            "value",
            format!(
                "start_epoch {} leaves nothing to train (epochs: {})",
                train.start_epoch, train.epochs
            ),
            "start_epoch counts from 0 and must be below epochs".into(),
        );
    }
    if sched.decay_fraction.is_some() && sched.style != SchedulerStyle::Wsd {
        diags.push(
            layers.diag_at(
                "scheduler.decay_fraction",
                Diagnostic::warning(
                    "unused",
                    "scheduler.decay_fraction only applies to style `wsd`; it is ignored",
                )
                .help("remove it, or set scheduler.style: wsd"),
            ),
        );
    }

    // --- job-specific sizes
    let model = job_checks(exp, layers, &mut diags);

    // --- the process group, and settings that only apply to some precisions
    let dist_backend = (world_size > 1).then(|| capability::default_dist_backend(hw));
    precision_checks(exp, layers, &mut diags);
    best_checks(exp, layers, &mut diags);

    // --- paths
    let output_dir = fill(&exp.output_dir, exp, None);
    check_placeholders(
        "output_dir",
        &exp.output_dir,
        &["name", "job", "timestamp"],
        layers,
        &mut diags,
    );
    check_placeholders(
        "logging.dir",
        &exp.logging.dir,
        &["output_dir", "name", "job", "timestamp"],
        layers,
        &mut diags,
    );
    let logging_dir = fill(&exp.logging.dir, exp, Some(&output_dir));

    let derived = Derived {
        world_size,
        data_parallel_size,
        grad_accum_steps,
        global_batch_size,
        lr,
        total_steps,
        warmup_steps,
        eval_per_device_batch_size: exp
            .eval
            .per_device_batch_size
            .unwrap_or(train.per_device_batch_size),
        dist_backend,
        output_dir,
        logging_dir,
        model,
    };
    (derived, diags)
}

fn job_checks(exp: &Experiment, layers: &Layers, diags: &mut Vec<Diagnostic>) -> Json {
    let mut err = |key: &str, msg: String, help: String| {
        diags.push(layers.diag_at(key, Diagnostic::error("shape", msg).help(help)));
    };
    let divides = |a: u32, b: u32| b != 0 && a.is_multiple_of(b);
    match (&exp.model, &exp.data) {
        (ModelConfig::Mae(m), DataConfig::Mae(d)) => {
            let dims = m.dims();
            if !divides(d.input_size, dims.patch_size) {
                err(
                    "data.input_size",
                    format!(
                        "input_size {} is not a multiple of the patch size {}",
                        d.input_size, dims.patch_size
                    ),
                    format!(
                        "use a multiple of {} (e.g. {})",
                        dims.patch_size,
                        (d.input_size / dims.patch_size).max(1) * dims.patch_size
                    ),
                );
            }
            if !divides(dims.embed_dim, dims.num_heads) {
                err(
                    "model.num_heads",
                    format!(
                        "num_heads {} does not divide embed_dim {}",
                        dims.num_heads, dims.embed_dim
                    ),
                    "choose heads that divide the width".into(),
                );
            }
            if !divides(dims.decoder_embed_dim, dims.decoder_num_heads) {
                err(
                    "model.decoder_num_heads",
                    format!(
                        "decoder_num_heads {} does not divide decoder_embed_dim {}",
                        dims.decoder_num_heads, dims.decoder_embed_dim
                    ),
                    "choose heads that divide the decoder width".into(),
                );
            }
            // The fixed 2-D sin-cos position embedding gives a quarter of the width to each of
            // sin(row), cos(row), sin(column), cos(column).
            for (key, width) in [
                ("model.embed_dim", dims.embed_dim),
                ("model.decoder_embed_dim", dims.decoder_embed_dim),
            ] {
                if !divides(width, 4) {
                    err(
                        key,
                        format!("{key} {width} is not a multiple of 4"),
                        format!(
                            "the 2-D sin-cos position embedding needs a multiple of 4 (e.g. {})",
                            (width / 4).max(1) * 4
                        ),
                    );
                }
            }
            let patches = (d.input_size / dims.patch_size.max(1)).pow(2);
            let visible = ((1.0 - m.mask_ratio) * f64::from(patches)) as u64;
            if patches > 0 && visible == 0 {
                err(
                    "model.mask_ratio",
                    format!(
                        "mask_ratio {} leaves no visible patch out of {patches}",
                        m.mask_ratio
                    ),
                    "lower mask_ratio or use smaller patches".into(),
                );
            }
            serde_json::to_value(dims).unwrap_or_default()
        }
        (ModelConfig::TextClassification(m), DataConfig::TextClassification(d)) => {
            if d.tokenizer.is_none() && m.pretrained.is_none() {
                err(
                    "data.tokenizer",
                    "no tokenizer: set data.tokenizer or model.pretrained".into(),
                    "e.g. `data: {tokenizer: data/bert-base-uncased/vocab.txt}`, or a Hugging Face \
                     checkpoint directory in model.pretrained, whose tokenizer is then used"
                        .into(),
                );
            }
            let dims = m.dims();
            if !divides(dims.hidden_size, dims.num_heads) {
                err(
                    "model.num_heads",
                    format!(
                        "num_heads {} does not divide hidden_size {}",
                        dims.num_heads, dims.hidden_size
                    ),
                    "choose heads that divide the width".into(),
                );
            }
            if d.max_seq_length > dims.max_position_embeddings {
                err(
                    "data.max_seq_length",
                    format!(
                        "max_seq_length {} exceeds max_position_embeddings {}",
                        d.max_seq_length, dims.max_position_embeddings
                    ),
                    "shorten max_seq_length or raise model.max_position_embeddings".into(),
                );
            }
            let task_labels = d.task.num_labels();
            let num_labels = m.num_labels.unwrap_or(task_labels);
            if num_labels != task_labels {
                err(
                    "model.num_labels",
                    format!(
                        "task `{}` has {task_labels} labels but model.num_labels is {num_labels}",
                        serde_json::to_value(d.task)
                            .unwrap_or_default()
                            .as_str()
                            .unwrap_or("?")
                    ),
                    format!(
                        "remove model.num_labels (it defaults to the task's) or set it to {task_labels}"
                    ),
                );
            }
            let mut v = serde_json::to_value(dims).unwrap_or_default();
            v["num_labels"] = num_labels.into();
            v
        }
        (ModelConfig::CausalVae(m), DataConfig::CausalVae(d)) => {
            let dims = m.dims();
            for (key, v) in [
                ("model.temporal_compression", dims.temporal_compression),
                ("model.spatial_compression", dims.spatial_compression),
            ] {
                if !v.is_power_of_two() {
                    err(
                        key,
                        format!("{} is not a power of two", v),
                        "each stage halves the size: use 1, 2, 4, 8…".into(),
                    );
                }
            }
            if !divides(d.resolution, dims.spatial_compression) {
                err(
                    "data.resolution",
                    format!(
                        "resolution {} is not a multiple of spatial_compression {}",
                        d.resolution, dims.spatial_compression
                    ),
                    format!(
                        "use a multiple of {} (e.g. {})",
                        dims.spatial_compression,
                        (d.resolution / dims.spatial_compression.max(1)).max(1)
                            * dims.spatial_compression
                    ),
                );
            }
            if dims.temporal_compression > 0
                && (d.num_frames.saturating_sub(1)) % dims.temporal_compression != 0
            {
                let t = dims.temporal_compression;
                let lower = 1 + (d.num_frames.saturating_sub(1) / t) * t;
                let higher = lower + t;
                err(
                    "data.num_frames",
                    format!(
                        "num_frames {} is not 1 + a multiple of temporal_compression {t}: the causal VAE encodes the first frame alone and the rest in groups of {t}",
                        d.num_frames
                    ),
                    format!("use {lower} or {higher}"),
                );
            }
            serde_json::to_value(dims).unwrap_or_default()
        }
        // tag_job_sections builds both sections from `job`, so they always match.
        _ => Json::Null,
    }
}

/// Warnings about precision settings that the chosen dtype ignores (whether the dtype can run
/// at all is `capability`'s).
fn precision_checks(exp: &Experiment, layers: &Layers, diags: &mut Vec<Diagnostic>) {
    let dtype = exp.precision.dtype;
    if dtype != Dtype::Fp16
        && exp.precision.init_loss_scale != PrecisionConfig::default().init_loss_scale
    {
        diags.push(layers.diag_at("precision.init_loss_scale", Diagnostic::warning(
            "unused", format!("precision.init_loss_scale only applies to fp16; with `{}` it is ignored", dtype.as_str()))
            .help("bf16 and fp32 need no loss scaling; remove the key or use precision.dtype: fp16")));
    }
}

/// What the metric-driven settings need: a metric, and evaluations to judge it by.
fn best_checks(exp: &Experiment, layers: &Layers, diags: &mut Vec<Diagnostic>) {
    let (eval, ck) = (&exp.eval, &exp.checkpoint);
    let mut err = |key: &str, msg: String, help: &str| {
        diags.push(layers.diag_at(key, Diagnostic::error("value", msg).help(help)));
    };
    if eval.metric_for_best.is_none() {
        let needs = [
            ("checkpoint.keep_best", ck.keep_best > 0),
            ("checkpoint.load_best_at_end", ck.load_best_at_end),
            (
                "eval.early_stopping_patience",
                eval.early_stopping_patience.is_some(),
            ),
        ];
        for (key, set) in needs {
            if set {
                err(
                    key,
                    format!("{key} needs eval.metric_for_best to say which evaluation is best"),
                    "set eval.metric_for_best, e.g. `dev_matched.accuracy` or `held_out.loss`",
                );
            }
        }
    } else if let Some(metric) = &eval.metric_for_best {
        if eval.strategy == crate::config::types::Strategy::No {
            err(
                "eval.metric_for_best",
                format!(
                    "eval.metric_for_best is `{metric}`, but eval.strategy is `no`: nothing is evaluated"
                ),
                "set eval.strategy to `steps` or `epoch`",
            );
        }
        if !metric.contains('.') {
            err(
                "eval.metric_for_best",
                format!("eval.metric_for_best `{metric}` does not name its held-out set"),
                "write `<set>.<metric>`: `dev_matched.accuracy`, `held_out.loss` (`runner run` lists the job's metrics if it is wrong)",
            );
        }
    }
}

/// Fills `{name}`, `{job}`, `{output_dir}` (and leaves `{timestamp}` for run time).
pub fn fill(template: &str, exp: &Experiment, output_dir: Option<&str>) -> String {
    let mut s = template
        .replace("{name}", &exp.name)
        .replace("{job}", exp.job.as_str());
    if let Some(out) = output_dir {
        s = s.replace("{output_dir}", out);
    }
    s
}

fn check_placeholders(
    key: &str,
    template: &str,
    allowed: &[&str],
    layers: &Layers,
    diags: &mut Vec<Diagnostic>,
) {
    let help = format!(
        "placeholders are {}",
        allowed
            .iter()
            .map(|a| format!("{{{a}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            let d = Diagnostic::error("value", format!("`{key}` has an unclosed `{{`")).help(help);
            diags.push(layers.diag_at(key, d));
            return;
        };
        let name = &rest[start + 1..start + len];
        if !allowed.contains(&name) {
            let d = Diagnostic::error(
                "value",
                format!("`{key}` uses the unknown placeholder `{{{name}}}`"),
            )
            .help(help.clone());
            diags.push(layers.diag_at(key, d));
        }
        rest = &rest[start + len + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_cut_as_distributed_sampler_and_hf_do() {
        // 10 examples, batches of 4, 3 micro-batches a step: [4, 4, 2] is one short step.
        assert_eq!(
            EpochShape::new(10, 4, 1, 3, false),
            EpochShape {
                examples_per_rank: 10,
                micro_batches: 3,
                steps: 1
            }
        );
        assert_eq!(EpochShape::new(10, 4, 1, 1, true).micro_batches, 2);
        // 11 examples on 2 ranks: padded to 6 each, or cut to 5.
        assert_eq!(EpochShape::new(11, 5, 2, 1, false).examples_per_rank, 6);
        assert_eq!(EpochShape::new(11, 5, 2, 1, true).examples_per_rank, 5);
    }

    fn resolved(text: &str) -> crate::config::Resolved {
        let req = crate::config::Request {
            experiment: "e.yaml".into(),
            ..Default::default()
        };
        crate::config::resolve_text(&req, text).unwrap_or_else(|d| panic!("{}", d.render()))
    }

    #[test]
    fn steps_follow_the_data_and_the_schedule() {
        let base = "name: t\njob: mae\ndata: {path: x}\noptimizer: {lr: 0.1}\n";
        let r = resolved(&format!(
            "{base}train: {{per_device_batch_size: 4, epochs: 2}}\nscheduler: {{warmup_ratio: 0.1}}\nloader: {{drop_last: false}}\n"
        ));
        let s = r.derived.steps(&r.experiment, 10).unwrap();
        assert_eq!(
            (s.steps_per_epoch, s.total_steps, s.warmup_steps),
            (3, 6, 1.0)
        );
        let r = resolved(&format!(
            "{base}train: {{per_device_batch_size: 4, max_steps: 5}}\nscheduler: {{warmup_epochs: 0.5}}\n"
        ));
        let s = r.derived.steps(&r.experiment, 16).unwrap();
        assert_eq!((s.total_steps, s.warmup_steps), (5, 2.0));
        assert_eq!(
            r.derived.total_steps,
            Some(5),
            "without data: what max_steps fixes"
        );
        assert_eq!(r.derived.warmup_steps, None, "warmup_epochs needs the data");
        let err = r.derived.steps(&r.experiment, 0).unwrap_err();
        assert!(err.message.contains("empty"), "{err:?}");
        let r = resolved(&format!(
            "{base}train: {{per_device_batch_size: 4}}\nloader: {{drop_last: true}}\n"
        ));
        let err = r.derived.steps(&r.experiment, 3).unwrap_err();
        assert!(err.message.contains("fewer than one batch of 4"), "{err:?}");
        let r = resolved(&format!(
            "{base}train: {{max_steps: 2}}\nscheduler: {{warmup_epochs: 1}}\n"
        ));
        let err = r.derived.steps(&r.experiment, 80).unwrap_err();
        assert!(err.message.contains("not shorter than training"), "{err:?}");
    }
}
