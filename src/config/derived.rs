//! Stage 3 of resolution: values computed from others, and the checks that span keys.
//!
//! Everything here is judged from the configuration alone, so a laptop can check a cluster
//! recipe. What depends on the machine (paths, FFmpeg, CUDA, the backend compiled in) is in
//! `config::machine`.

use serde::Serialize;
use serde_json::Value as Json;

use super::diagnostic::Diagnostic;
use super::layers::Layers;
use super::types::*;

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

/// Computes [`Derived`] and reports every cross-key problem.
pub fn derive(exp: &Experiment, layers: &Layers) -> (Derived, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut err = |key: &str, code: &'static str, msg: String, help: String| {
        diags.push(layers.diag_at(key, Diagnostic::error(code, msg).help(help)));
    };
    let hw = &exp.hardware;
    let train = &exp.train;

    // --- process layout
    let world_size = hw.nnodes.saturating_mul(hw.nproc_per_node);
    if hw.tensor_parallel > 1 {
        err(
            "hardware.tensor_parallel",
            "unsupported",
            "tensor parallelism is not supported by runner's engine".into(),
            "set hardware.tensor_parallel: 1 (runner trains data-parallel only)".into(),
        );
    }
    if hw.pipeline_parallel > 1 {
        err(
            "hardware.pipeline_parallel",
            "unsupported",
            "pipeline parallelism is not supported by runner's engine".into(),
            "set hardware.pipeline_parallel: 1 (runner trains data-parallel only)".into(),
        );
    }
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
    let warmup_steps = match (sched.warmup_steps, sched.warmup_ratio, sched.warmup_epochs) {
        (Some(w), ..) => Some(w),
        (None, Some(r), _) => total_steps.map(|t| (r * t as f64).ceil() as u64),
        (None, None, Some(_)) => None,
        (None, None, None) => Some(0),
    };
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

    // --- backend, device, precision
    let dist_backend = (world_size > 1).then(|| {
        hw.dist_backend.unwrap_or(if hw.device.is_cuda() {
            DistBackend::Nccl
        } else {
            DistBackend::Gloo
        })
    });
    hardware_checks(exp, layers, world_size, dist_backend, &mut diags);

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

fn hardware_checks(
    exp: &Experiment,
    layers: &Layers,
    world_size: u32,
    dist: Option<DistBackend>,
    diags: &mut Vec<Diagnostic>,
) {
    let hw = &exp.hardware;
    let mut errors = Vec::new();
    let mut err = |key: &str, code: &'static str, msg: String, help: String| {
        errors.push(layers.diag_at(key, Diagnostic::error(code, msg).help(help)));
    };
    if hw.device == Device::Tpu {
        diags.push(layers.diag_at("hardware.device", Diagnostic::warning(
            "unsupported", "no runner backend drives TPUs (burn has no XLA backend; libtorch needs torch_xla): `runner run` will refuse this")
            .help("use a CUDA or CPU profile to train")));
    } else {
        match hw.backend {
            Backend::Flex => {
                if hw.device != Device::Cpu {
                    err("hardware.device", "backend", format!("the flex backend runs on the CPU only, not on `{}`", hw.device),
                        "use hardware.backend: tch for GPUs (e.g. --profile 1xA100), or device: cpu".into());
                }
                if world_size > 1 {
                    err("hardware.nproc_per_node", "backend",
                        format!("the embedded flex backend is single-process, but nnodes × nproc_per_node = {world_size}"),
                        "use hardware.backend: tch for data-parallel training, or nnodes: 1 and nproc_per_node: 1".into());
                }
            }
            Backend::Tch => {
                if let (Device::Cuda(Some(n)), true) = (hw.device, hw.nproc_per_node > 1) {
                    err("hardware.device", "backend",
                        format!("`cuda:{n}` would put all {} ranks of this machine on one GPU", hw.nproc_per_node),
                        "use device: cuda; each rank then takes the GPU of its LOCAL_RANK (restrict them with CUDA_VISIBLE_DEVICES)".into());
                }
            }
        }
    }
    match dist {
        Some(DistBackend::Mpi) => err("hardware.dist_backend", "unsupported",
            "the mpi process group is not available: the torch wheel runner links against ships Gloo and NCCL only".into(),
            "use gloo (CPU) or nccl (CUDA)".into()),
        Some(DistBackend::Hccl) => err("hardware.dist_backend", "unsupported",
            "hccl is for Huawei Ascend NPUs, which no runner backend drives".into(),
            "use nccl on CUDA GPUs or gloo on CPUs".into()),
        Some(DistBackend::Nccl) if !hw.device.is_cuda() && hw.device != Device::Tpu => err("hardware.dist_backend", "backend",
            format!("nccl needs CUDA devices, but hardware.device is `{}`", hw.device),
            "use dist_backend: gloo on CPUs".into()),
        _ => {}
    }
    let dtype = exp.precision.dtype;
    if dtype != Dtype::Fp32 {
        let why = match (hw.backend, hw.device) {
            (_, Device::Tpu) => None,
            (Backend::Flex, _) => {
                Some("the embedded flex backend computes in fp32 only".to_string())
            }
            (Backend::Tch, d) if !d.is_cuda() => Some(format!(
                "mixed precision needs a CUDA device; on `{d}` libtorch runs {} at a fraction of fp32 speed",
                dtype.as_str()
            )),
            _ => None,
        };
        if let Some(why) = why {
            err(
                "precision.dtype",
                "precision",
                format!(
                    "precision.dtype `{}` cannot run here: {why}",
                    dtype.as_str()
                ),
                "use precision.dtype: fp32, or a CUDA profile (e.g. --profile 1xA100)".into(),
            );
        }
    }
    if dtype != Dtype::Fp16
        && exp.precision.init_loss_scale != PrecisionConfig::default().init_loss_scale
    {
        diags.push(layers.diag_at("precision.init_loss_scale", Diagnostic::warning(
            "unused", format!("precision.init_loss_scale only applies to fp16; with `{}` it is ignored", dtype.as_str()))
            .help("bf16 and fp32 need no loss scaling; remove the key or use precision.dtype: fp16")));
    }
    diags.extend(errors);
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
