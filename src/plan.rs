//! `runner plan`: what a run will cost, before it runs. It reads the data only to count it
//! (with the code that prepares it for training, so skipped rows are skipped here too), builds
//! the model only to count its parameters, and trains nothing.
//!
//! What it knows: the steps (per epoch, in all, warmup), how many evaluations and checkpoints
//! training will make, the samples, the exact parameter count, the memory of the model states
//! per rank (fp32 weights, gradients, AdamW's two moments, and under bf16/fp16 the compute
//! copy and its gradients), the disk the checkpoints and final weights take against the free
//! space where they go, and the learning rate at every step. What it does not estimate yet:
//! activation memory, FLOPs and time (issue 19's remaining work); the report says so.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Resolved;
use crate::config::types::{Dtype, Strategy};
use crate::error::fail;

/// Free bytes to assume where the run directory goes, instead of asking the filesystem
/// (for tests of the disk warning).
pub const FREE_BYTES_ENV: &str = "RUNNER_PLAN_FREE_BYTES";

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub summary: String,
    pub steps: StepsPlan,
    pub parameters: u64,
    pub memory_per_rank: Memory,
    pub disk: Disk,
    pub lr: LrCurve,
    /// What the plan does not estimate yet.
    pub not_estimated: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepsPlan {
    pub examples: u64,
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

/// The plan of `resolved`: its data is read (and counted) now.
pub fn plan(resolved: &Resolved) -> Result<Plan> {
    let exp = &resolved.experiment;
    let d = &resolved.derived;
    let job = crate::jobs::prepare(exp)?;
    let steps = d
        .steps(exp, job.train_len())
        .map_err(|h| fail(h.message, h.help))?;
    let params = job.num_params()? as u64;

    // The trainer's decisions, step by step (evaluate / checkpoint when due, and at the end).
    let (mut evals, mut ckpts) = (0u64, 0u64);
    let (mut last_eval, mut last_ckpt) = (None, None);
    if exp.eval.on_start && exp.eval.strategy != Strategy::No {
        evals += 1;
        last_eval = Some(steps.first_step);
    }
    let due = |strategy: Strategy, every: u64, step: u64| match strategy {
        Strategy::No => false,
        Strategy::Steps => step.is_multiple_of(every),
        Strategy::Epoch => step.is_multiple_of(steps.steps_per_epoch),
    };
    for step in steps.first_step + 1..=steps.total_steps {
        if due(exp.eval.strategy, exp.eval.every_steps, step) {
            evals += 1;
            last_eval = Some(step);
        }
        if due(exp.checkpoint.strategy, exp.checkpoint.every_steps, step) {
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
    let low = match exp.precision.dtype {
        Dtype::Fp32 => 0,
        Dtype::Bf16 | Dtype::Fp16 => 2 * 2 * params,
    };
    let memory = Memory {
        parameters: fp32,
        gradients: fp32,
        optimizer_state: 2 * fp32,
        compute_copy: low,
        model_states: 4 * fp32 + low,
    };
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
    Ok(Plan {
        summary: crate::run::summary(resolved),
        steps: StepsPlan {
            examples: steps.examples,
            steps_per_epoch: steps.steps_per_epoch,
            total_steps: steps.total_steps,
            warmup_steps: steps.warmup_steps,
            epochs: steps.total_steps as f64 / steps.steps_per_epoch as f64,
            global_batch_size: global,
            samples: global * done,
            evaluations: evals,
            checkpoints_written: ckpts,
            checkpoints_kept: kept,
        },
        parameters: params,
        memory_per_rank: memory,
        disk,
        lr,
        not_estimated: vec!["activation memory", "FLOPs", "time"],
    })
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
