//! `runner plan --measure`: real training steps on this machine, through the trainer itself,
//! timed. The run is the configured one cut to one warm-up step and [`TIMED_STEPS`] timed
//! ones, alone (one rank, no communication), with evaluation, checkpoints and TensorBoard off,
//! in a temporary directory that is removed afterwards: nothing of the real run directory is
//! touched.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Resolved;
use crate::config::derived::Steps;
use crate::config::types::Strategy;
use crate::train::collective::Single;
use crate::train::metrics::{METRICS_FILE, read_scalars};
use crate::train::trainer::Settings;

/// Steps timed after the warm-up step (which pays for first-touch allocation and, on
/// libtorch, kernel selection).
pub const TIMED_STEPS: u64 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// `flex on cpu`, `tch on cuda:0`, …
    pub device: String,
    /// Seconds of each timed step, in order.
    pub step_seconds: Vec<f64>,
    pub median_step_seconds: f64,
    /// The median step times the run's steps (one rank's compute: data-parallel
    /// communication is not in it).
    pub run_seconds: f64,
    /// Resident memory of this process when the first step began and at its peak (Linux),
    /// what the memory estimate can be held against on a CPU.
    pub rss_at_first_step: Option<u64>,
    pub peak_rss: Option<u64>,
    /// Bytes allocated when the first step began and the most at any time since, where the
    /// binary counts its allocations (builds without libtorch): the process's memory without
    /// what the allocator keeps freed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_at_first_step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_allocated: Option<u64>,
}

/// Trains [`TIMED_STEPS`] + 1 steps of `resolved` (fewer when the run is shorter) and times
/// the last ones; `steps` is the real run's length.
pub fn measure(resolved: &Resolved, steps: &Steps) -> Result<Measured> {
    let mut exp = resolved.experiment.clone();
    exp.eval.strategy = Strategy::No;
    exp.eval.on_start = false;
    exp.eval.metric_for_best = None;
    exp.eval.early_stopping_patience = None;
    exp.checkpoint.strategy = Strategy::No;
    exp.checkpoint.keep_best = 0;
    exp.checkpoint.load_best_at_end = false;
    exp.logging.tensorboard = false;
    exp.logging.jsonl = true;
    exp.train.log_every_steps = 1;
    exp.resume = None;
    let wanted = (TIMED_STEPS + 1).min(steps.total_steps - steps.first_step);
    let short = Steps {
        total_steps: wanted,
        warmup_steps: 0.0,
        first_step: 0,
        ..*steps
    };
    let job = crate::jobs::prepare(&exp)?;
    let device = crate::train::backend::training_device(&exp.hardware, 0)?;
    let dir = tempfile::Builder::new()
        .prefix("runner-plan-measure-")
        .tempdir()?;
    let never = || false;
    let settings = Settings {
        exp: &exp,
        derived: &resolved.derived,
        steps: &short,
        run_dir: dir.path(),
        live_bar: false,
        collective: &Single,
        resume: None,
        stop: &never,
    };
    let summary = job.train(&settings, &device)?;
    let step_samples =
        f64::from(exp.train.per_device_batch_size) * f64::from(resolved.derived.grad_accum_steps);
    let step_seconds = timed(&dir.path().join(METRICS_FILE), step_samples, wanted);
    let median_step_seconds = median(&step_seconds);
    Ok(Measured {
        device: format!(
            "{} on {}",
            exp.hardware.backend.as_str(),
            exp.hardware.device
        ),
        run_seconds: median_step_seconds * (steps.total_steps - steps.first_step) as f64,
        median_step_seconds,
        step_seconds,
        rss_at_first_step: summary.memory.map(|m| m.rss_at_first_step),
        peak_rss: summary.memory.map(|m| m.peak_rss),
        allocated_at_first_step: summary.memory.and_then(|m| m.allocated_at_first_step),
        peak_allocated: summary.memory.and_then(|m| m.peak_allocated),
    })
}

/// Each step's seconds from its training record (one per step: `samples / samples_per_s`),
/// the warm-up step left out when there are others.
fn timed(metrics: &Path, step_samples: f64, steps: u64) -> Vec<f64> {
    let skip = u64::from(steps > 1);
    read_scalars(metrics)
        .into_iter()
        .filter(|(step, _)| *step > skip)
        .filter_map(|(_, values)| {
            let sps = values.iter().find(|(k, _)| k == "samples_per_s")?.1;
            (sps > 0.0).then_some(step_samples / sps)
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(&[]), 0.0);
    }
}
