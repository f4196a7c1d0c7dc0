//! `runner plan`: what a run will cost, before it runs. It reads the data only to count it
//! (with the code that prepares it for training, so skipped rows are skipped here too), builds
//! the model only to count its parameters, and trains nothing.
//!
//! What it knows: the steps (per epoch, in all, warmup), how many evaluations and checkpoints
//! training will make, the samples and their tokens / pixels, the exact parameter count and the
//! FLOPs of a step (counted from the model's shapes: `jobs::cost`), the memory per rank (fp32
//! weights, gradients, AdamW's two moments, under bf16/fp16 the compute copy and its
//! gradients, the activations kept for backward with and without gradient checkpointing, an
//! evaluation batch, the loader's prefetched batches) against the device's memory (the device
//! table, `config::devices`, or this machine's RAM on a CPU) with advice when it does not fit,
//! the disk the checkpoints and final weights take against the free space where they go, a
//! time estimate from the FLOPs at a stated share of the device's peak, and the learning rate
//! at every step. With `--measure` it also times real steps on this machine (`measure`).
//!
//! Invariant: the counts are the trainer's. The examples are counted as the job counts them
//! (`jobs::sizing`), steps come from the same `Derived::steps` and evaluations and checkpoints
//! from the same `Strategy::due` the training loop asks.

pub mod measure;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Resolved;
use crate::config::devices::{self, DeviceSpec};
use crate::config::types::{Backend, Device, Dtype, Experiment, Strategy};
use crate::error::fail;
use crate::jobs::cost::SampleCost;
use crate::jobs::sizing::Counted;

/// Free bytes to assume where the run directory goes, instead of asking the filesystem
/// (for tests of the disk warning).
pub const FREE_BYTES_ENV: &str = "RUNNER_PLAN_FREE_BYTES";

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub summary: String,
    pub steps: StepsPlan,
    pub parameters: u64,
    pub work: Work,
    pub memory_per_rank: Memory,
    pub disk: Disk,
    /// `None` on a device without a peak figure (a CPU, or no `hardware.device_model`).
    pub time: Option<TimeEstimate>,
    pub lr: LrCurve,
    /// `--measure`: real steps timed on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<measure::Measured>,
    /// What the figures assume (data that is not here, the vocabulary, an upper bound).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Work {
    /// What a sample is made of (`tokens`, `pixels`) and how many: for text, at the longest
    /// training sequence, since a batch is padded to its longest.
    pub unit: &'static str,
    pub units_per_sample: f64,
    pub units_per_step: f64,
    pub units_per_run: f64,
    pub forward_flops_per_sample: f64,
    /// Forward, backward (twice the forward) and any recomputation, for the global batch.
    pub flops_per_step: f64,
    pub flops_per_run: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeEstimate {
    pub device: String,
    pub peak_tflops: f64,
    /// The share of the peak assumed (model FLOPs utilisation).
    pub utilisation: f64,
    pub step_seconds: f64,
    pub run_seconds: f64,
}

/// The model FLOPs utilisation the time estimate assumes: what well-tuned data-parallel
/// training of mid-sized models reaches on current GPUs (PaLM's paper reports 46% at scale).
pub const ASSUMED_UTILISATION: f64 = 0.4;

#[derive(Debug, Clone, Serialize)]
pub struct StepsPlan {
    pub examples: u64,
    /// `data` (the job counted them) or `given` (`data.num_examples`: the data is not here).
    pub examples_counted: Counted,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub warmup_steps: f64,
    pub epochs: f64,
    pub global_batch_size: u64,
    pub samples: u64,
    pub evaluations: u64,
    pub checkpoints_written: u64,
    pub checkpoints_kept: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub parameters: u64,
    pub gradients: u64,
    pub optimizer_state: u64,
    /// bf16/fp16: the low-precision copy of the weights and its gradients.
    pub compute_copy: u64,
    pub model_states: u64,
    /// Kept for backward at `train.per_device_batch_size`, as configured.
    pub activations: u64,
    pub activations_without_checkpointing: u64,
    pub activations_with_checkpointing: u64,
    /// The most activations and gradients held together during backward, which frees the
    /// one as it makes the other (at the configured batch and checkpointing): the total
    /// counts this, not `activations` + `gradients`.
    pub backward_peak: u64,
    /// An evaluation's forward pass at `eval.per_device_batch_size` (not at the same time as
    /// training's activations).
    pub eval_batch: u64,
    /// The loader's prefetched micro-batches (host memory; counted in the total on a CPU).
    pub loader_prefetch: u64,
    /// The column buffer burn-flex's convolution keeps (on `flex` only).
    pub conv_workspace: u64,
    /// The packing buffers gemm keeps on each thread that multiplies, one L2 cache's worth
    /// per thread (on `flex` only; this machine's cache and rayon threads).
    pub matmul_workspace: u64,
    pub total: u64,
    /// What the total is held against.
    pub device: Option<DeviceMemory>,
    pub fits: Option<bool>,
    /// When it does not fit: changes that keep the global batch, each with its total.
    pub advice: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceMemory {
    pub name: String,
    pub bytes: u64,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    pub checkpoint_bytes: u64,
    pub checkpoints_kept: u64,
    pub final_weights: u64,
    pub best_weights: u64,
    pub total: u64,
    /// Free bytes on the filesystem that holds `output_dir`.
    pub free: Option<u64>,
    pub fits: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LrCurve {
    pub peak: f64,
    pub warmup_end_step: f64,
    pub first: f64,
    pub last: f64,
    /// The rate at 60 evenly spaced steps, as one line of block characters.
    pub sparkline: String,
    /// (step, lr) at up to 1,000 steps, for the picture.
    #[serde(skip)]
    pub points: Vec<(f64, f64)>,
}

/// The plan of `resolved`: its data is counted now; with `measure`, real steps are timed.
pub fn plan(resolved: &Resolved, measure: bool) -> Result<Plan> {
    let exp = &resolved.experiment;
    let d = &resolved.derived;
    let sizing = crate::jobs::sizing::sizing(exp)?;
    let steps = d
        .steps(exp, sizing.examples)
        .map_err(|h| fail(h.message, h.help))?;
    let params = sizing.params;
    let cost = sizing.cost;

    // The trainer's decisions, step by step (evaluate / checkpoint when due, and at the end).
    let (mut evals, mut ckpts) = (0u64, 0u64);
    let (mut last_eval, mut last_ckpt) = (None, None);
    if exp.eval.on_start && exp.eval.strategy != Strategy::No {
        evals += 1;
        last_eval = Some(steps.first_step);
    }
    let spe = steps.steps_per_epoch;
    for step in steps.first_step + 1..=steps.total_steps {
        if exp.eval.strategy.due(step, exp.eval.every_steps, spe) {
            evals += 1;
            last_eval = Some(step);
        }
        if exp
            .checkpoint
            .strategy
            .due(step, exp.checkpoint.every_steps, spe)
        {
            ckpts += 1;
            last_ckpt = Some(step);
        }
    }
    if exp.eval.strategy != Strategy::No && last_eval != Some(steps.total_steps) {
        evals += 1;
    }
    if exp.checkpoint.strategy != Strategy::No && last_ckpt != Some(steps.total_steps) {
        ckpts += 1;
    }
    let keep = u64::from(exp.checkpoint.keep_last);
    let kept = if keep == 0 { ckpts } else { ckpts.min(keep) };

    let fp32 = 4 * params;
    let memory = memory(resolved, &cost, params);
    // A checkpoint: the weights and AdamW's two moments, in fp32.
    let checkpoint_bytes = 3 * fp32;
    let best = u64::from(
        exp.checkpoint
            .keep_best
            .max(u32::from(exp.checkpoint.load_best_at_end)),
    ) * fp32;
    let total = checkpoint_bytes * kept + fp32 + best;
    let free = free_bytes(Path::new(&d.output_dir));
    let disk = Disk {
        checkpoint_bytes,
        checkpoints_kept: kept,
        final_weights: fp32,
        best_weights: best,
        total,
        free,
        fits: free.map(|f| total <= f),
    };

    let schedule = crate::train::trainer::schedule(exp, d, &steps)?;
    let n = steps.total_steps.max(1);
    let stride = n.div_ceil(1000).max(1);
    let points: Vec<(f64, f64)> = (0..n)
        .step_by(stride as usize)
        .chain(std::iter::once(n - 1))
        .map(|s| (s as f64 + 1.0, schedule.lr(s)))
        .collect();
    let lr = LrCurve {
        peak: schedule.peak,
        warmup_end_step: steps.warmup_steps,
        first: schedule.lr(0),
        last: schedule.lr(n - 1),
        sparkline: sparkline(
            &(0..60)
                .map(|i| schedule.lr(i * (n - 1) / 59))
                .collect::<Vec<_>>(),
        ),
        points,
    };
    let global = d.global_batch_size;
    let done = steps.total_steps - steps.first_step;
    let recompute = if exp.train.gradient_checkpointing {
        cost.recompute_flops
    } else {
        0.0
    };
    let per_sample = 3.0 * cost.forward_flops + recompute;
    let work = Work {
        unit: cost.unit,
        units_per_sample: cost.units,
        units_per_step: cost.units * global as f64,
        units_per_run: cost.units * (global * done) as f64,
        forward_flops_per_sample: cost.forward_flops,
        flops_per_step: per_sample * global as f64,
        flops_per_run: per_sample * (global * done) as f64,
    };
    let time = device_spec(exp).and_then(|spec| {
        let peak = spec.peak_tflops(exp.precision.dtype)?;
        let ranks = crate::config::capability::world_size(&exp.hardware).max(1) as f64;
        let step_seconds = work.flops_per_step / ranks / (peak * 1e12 * ASSUMED_UTILISATION);
        Some(TimeEstimate {
            device: spec.name.into(),
            peak_tflops: peak,
            utilisation: ASSUMED_UTILISATION,
            step_seconds,
            run_seconds: step_seconds * done as f64,
        })
    });
    Ok(Plan {
        summary: crate::run::summary(resolved),
        steps: StepsPlan {
            examples: steps.examples,
            steps_per_epoch: steps.steps_per_epoch,
            total_steps: steps.total_steps,
            warmup_steps: steps.warmup_steps,
            epochs: steps.total_steps as f64 / steps.steps_per_epoch as f64,
            global_batch_size: global,
            examples_counted: sizing.counted,
            samples: global * done,
            evaluations: evals,
            checkpoints_written: ckpts,
            checkpoints_kept: kept,
        },
        parameters: params,
        work,
        memory_per_rank: memory,
        disk,
        time,
        lr,
        measured: if measure {
            Some(measure::measure(resolved, &steps)?)
        } else {
            None
        },
        notes: sizing.notes,
    })
}

/// The device table's row for the profile's device, if it names one.
fn device_spec(exp: &Experiment) -> Option<DeviceSpec> {
    (exp.hardware.device != Device::Cpu)
        .then_some(exp.hardware.device_model)
        .flatten()
        .map(devices::spec)
}

/// Memory per rank for the configured batch, precision and checkpointing, with advice when it
/// does not fit the device.
fn memory(resolved: &Resolved, cost: &SampleCost, params: u64) -> Memory {
    let exp = &resolved.experiment;
    let batch = u64::from(exp.train.per_device_batch_size);
    let accum = u64::from(resolved.derived.grad_accum_steps);
    let eval_batch = resolved.derived.eval_per_device_batch_size;
    let on_cpu = exp.hardware.device == Device::Cpu;
    let spec = device_spec(exp);
    let device = if on_cpu {
        devices::host_memory().map(|bytes| DeviceMemory {
            name: "this machine's RAM".into(),
            bytes,
            source: "/proc/meminfo".into(),
        })
    } else {
        spec.map(|spec| DeviceMemory {
            name: spec.name.into(),
            bytes: spec.memory,
            source: spec.source.into(),
        })
    };
    let workers = u64::from(exp.loader.num_workers);
    let prefetched = (workers * u64::from(exp.loader.prefetch_factor)).max(1);
    let loader_prefetch = (cost.input_bytes * (prefetched * batch) as f64) as u64;
    let on_flex = exp.hardware.backend == Backend::Flex;
    let conv_workspace = if on_flex {
        (cost.conv_workspace * 4.0) as u64
    } else {
        0
    };
    let matmul_workspace = if on_flex {
        crate::kernels::matmul_workspace() as u64
    } else {
        0
    };
    // Kept by the process whatever the batch.
    let workspace = conv_workspace + matmul_workspace;
    // The total for a batch, precision and checkpointing (what the advice varies).
    let total = |batch: u64, dtype: Dtype, checkpointing: bool| {
        let width = if dtype == Dtype::Fp32 { 4.0 } else { 2.0 };
        // Dropout keeps its mask on libtorch (burn's Bernoulli mask, the input's dtype); on
        // burn-flex it regenerates it from a seed in backward (`kernels::dropout`).
        let masks = if exp.hardware.backend == Backend::Tch {
            1.0
        } else {
            0.0
        };
        // Bytes of a batch's activations; the norms' inputs stay fp32 under mixed precision.
        let bytes = |kept: f64, norms: f64, dropout_masks: f64| {
            let per_sample = (kept - norms + masks * dropout_masks) * width + norms * 4.0;
            (per_sample * batch as f64) as u64
        };
        let (activations, points) = if checkpointing {
            (
                bytes(
                    cost.activations_checkpointed,
                    cost.norm_inputs_checkpointed,
                    cost.dropout_masks_checkpointed,
                ),
                &cost.backward_checkpointed,
            )
        } else {
            (
                bytes(cost.activations, cost.norm_inputs, cost.dropout_masks),
                &cost.backward,
            )
        };
        let fp32 = 4 * params;
        let low = if dtype == Dtype::Fp32 { 0 } else { 4 * params };
        // Backward's peak: the activations not yet consumed and the fp32 gradients made so
        // far, at the stage where they weigh most (the low-precision copy's gradients are
        // counted whole, in `low`).
        let backward = points
            .iter()
            .map(|p| {
                bytes(p.activations, p.norm_inputs, p.dropout_masks)
                    + (4.0 * p.params_with_gradients) as u64
            })
            .max()
            .unwrap_or(activations + fp32);
        let eval = (cost.inference * 4.0 * eval_batch as f64) as u64;
        let host = if on_cpu { loader_prefetch } else { 0 };
        // Weights and AdamW's moments throughout; backward's peak, or an evaluation beside
        // the step's gradients.
        let peak = 3 * fp32 + low + backward.max(fp32 + eval) + host + workspace;
        (4 * fp32 + low, activations, eval, peak, backward)
    };
    let dtype = exp.precision.dtype;
    let ckpt = exp.train.gradient_checkpointing;
    let (model_states, activations, eval, sum, backward) = total(batch, dtype, ckpt);
    let fits = device.as_ref().map(|d| sum <= d.bytes);
    let mut advice = Vec::new();
    if let (Some(false), Some(dev)) = (fits, &device) {
        let fits_in = |t: u64| if t <= dev.bytes { "fits" } else { "still over" };
        let mut any_fits = false;
        let mut fits_in = |t: u64| {
            any_fits |= t <= dev.bytes;
            fits_in(t)
        };
        let (mut new_batch, mut new_eval) = (batch, eval_batch as u64);
        let mut smaller = batch / 2;
        while smaller >= 1 {
            if batch.is_multiple_of(smaller) {
                let t = total(smaller, dtype, ckpt).3;
                if t <= dev.bytes || smaller == 1 {
                    new_batch = smaller;
                    advice.push(format!(
                        "train.per_device_batch_size={smaller} with train.grad_accum_steps={} \
                         (the same global batch): {} ({})",
                        accum * batch / smaller,
                        bytes(t),
                        fits_in(t)
                    ));
                    break;
                }
            }
            smaller /= 2;
        }
        if !ckpt {
            let t = total(batch, dtype, true).3;
            advice.push(format!(
                "train.gradient_checkpointing=true: {} ({})",
                bytes(t),
                fits_in(t)
            ));
        }
        // Evaluation runs between steps, on the fp32 master: its batch is its own.
        let per_eval_sample = (cost.inference * 4.0) as u64;
        let states = model_states + workspace + if on_cpu { loader_prefetch } else { 0 };
        // Without the gradients, which backward's peak and an evaluation's figure each hold.
        let fp32 = 4 * params;
        let around = states - fp32;
        if states + eval > dev.bytes && per_eval_sample > 0 && dev.bytes > states {
            let n = ((dev.bytes - states) / per_eval_sample).min(eval_batch as u64);
            if n >= 1 && n < eval_batch as u64 {
                new_eval = n;
                let t = around + (fp32 + n * per_eval_sample).max(backward);
                advice.push(format!(
                    "eval.per_device_batch_size={n} (evaluation alone needs {} at {eval_batch}): \
                     {} ({})",
                    bytes(eval),
                    bytes(t),
                    fits_in(t)
                ));
            }
        }
        let bf16 = spec.is_some_and(|s| s.bf16_tflops.is_some());
        if dtype == Dtype::Fp32 && bf16 {
            let t = total(batch, Dtype::Bf16, ckpt).3;
            advice.push(format!(
                "precision.dtype=bf16: {} ({})",
                bytes(t),
                fits_in(t)
            ));
        }
        if !any_fits && advice.len() > 1 {
            let (.., backward) = total(new_batch, dtype, true);
            let t = around + backward.max(fp32 + new_eval * per_eval_sample);
            advice.push(format!(
                "all of these together (batch {new_batch}, checkpointing, eval batch \
                 {new_eval}): {} ({})",
                bytes(t),
                if t <= dev.bytes { "fits" } else { "still over" }
            ));
        }
    }
    let fp32 = 4 * params;
    Memory {
        parameters: fp32,
        gradients: fp32,
        optimizer_state: 2 * fp32,
        compute_copy: model_states - 4 * fp32,
        model_states,
        activations,
        activations_without_checkpointing: total(batch, dtype, false).1,
        activations_with_checkpointing: total(batch, dtype, true).1,
        backward_peak: backward,
        eval_batch: eval,
        loader_prefetch,
        conv_workspace,
        matmul_workspace,
        total: sum,
        device,
        fits,
        advice,
    }
}

fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(0.0f64, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

/// Free bytes on the filesystem that would hold `dir` (its nearest existing ancestor).
fn free_bytes(dir: &Path) -> Option<u64> {
    if let Ok(v) = std::env::var(FREE_BYTES_ENV) {
        return v.parse().ok();
    }
    let abs = crate::host::absolute(dir);
    let existing = abs.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs struct to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Bytes as people read them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparklines_and_sizes_read_well() {
        assert_eq!(super::sparkline(&[0.0, 0.5, 1.0]), "▁▅█");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(3 << 20), "3.0 MiB");
    }
}
