//! Learning-rate schedules, stepped once per optimizer step.
//!
//! Warmup rises linearly from `warmup_init_lr` to the peak over `warmup` steps (a real number:
//! `warmup_epochs` × steps per epoch keeps MAE's fractional epochs), then the curve of
//! `scheduler.style` runs to `total` steps with `optimizer.min_lr` as its floor. `lr(s)` is the
//! rate of the update made at 0-based step `s`, so with no warmup init the first update of a
//! warmed-up run uses 0, as in HF's `LambdaLR` schedules and MAE's `adjust_learning_rate`.

use crate::config::types::SchedulerStyle;

/// Steps over which `inverse_sqrt` decays when there is no warmup (HF's default timescale).
const INVERSE_SQRT_TIMESCALE: f64 = 10_000.0;
/// Fraction of training `wsd` spends decaying when `decay_fraction` is not given.
pub const DEFAULT_WSD_DECAY_FRACTION: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub style: SchedulerStyle,
    /// Peak learning rate (after warmup).
    pub peak: f64,
    /// Floor of the decay.
    pub min_lr: f64,
    /// Rate at step 0 of the warmup.
    pub warmup_init_lr: f64,
    /// Warmup length in steps (may be fractional).
    pub warmup: f64,
    /// Total optimizer steps of the run.
    pub total: f64,
    /// `wsd`: fraction of `total` spent decaying.
    pub decay_fraction: f64,
}

impl Schedule {
    /// Learning rate of the update at 0-based optimizer step `step`.
    pub fn lr(&self, step: u64) -> f64 {
        let s = step as f64;
        if s < self.warmup {
            return self.warmup_init_lr + (self.peak - self.warmup_init_lr) * s / self.warmup;
        }
        let span = (self.total - self.warmup).max(f64::MIN_POSITIVE);
        let progress = ((s - self.warmup) / span).clamp(0.0, 1.0);
        let delta = self.peak - self.min_lr;
        match self.style {
            SchedulerStyle::Constant => self.peak,
            SchedulerStyle::Linear => self.min_lr + delta * (1.0 - progress),
            SchedulerStyle::Cosine => {
                self.min_lr + delta * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            SchedulerStyle::InverseSqrt => {
                // HF get_inverse_sqrt_schedule: with warmup W the decay is sqrt(W / s)
                // (Megatron's inverse-square-root); without, a 10k-step timescale.
                let decay = if self.warmup > 0.0 {
                    (self.warmup / s.max(1.0)).sqrt()
                } else {
                    1.0 / ((s + INVERSE_SQRT_TIMESCALE) / INVERSE_SQRT_TIMESCALE).sqrt()
                };
                (self.peak * decay).max(self.min_lr)
            }
            SchedulerStyle::Wsd => {
                // Megatron WSD: stable at the peak, then linear decay to min_lr over the last
                // decay_fraction of all steps.
                let decay_steps = (self.decay_fraction * self.total).max(f64::MIN_POSITIVE);
                let anneal_start = self.total - decay_steps;
                if s <= anneal_start {
                    self.peak
                } else {
                    let ratio = ((s - anneal_start) / decay_steps).min(1.0);
                    self.min_lr + delta * (1.0 - ratio)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(style: SchedulerStyle, warmup: f64, total: f64) -> Schedule {
        Schedule {
            style,
            peak: 1e-3,
            min_lr: 0.0,
            warmup_init_lr: 0.0,
            warmup,
            total,
            decay_fraction: DEFAULT_WSD_DECAY_FRACTION,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-15 + 1e-12 * b.abs(), "{a} vs {b}");
    }

    const STEPS: [u64; 9] = [0, 1, 5, 9, 10, 11, 50, 99, 100];

    // transformers.optimization.get_linear_schedule_with_warmup's lr_lambda.
    fn hf_linear(step: f64, warmup: f64, total: f64) -> f64 {
        if step < warmup {
            return step / warmup.max(1.0);
        }
        ((total - step) / (total - warmup).max(1.0)).max(0.0)
    }

    // transformers.optimization.get_cosine_schedule_with_warmup (num_cycles = 0.5).
    fn hf_cosine(step: f64, warmup: f64, total: f64) -> f64 {
        if step < warmup {
            return step / warmup.max(1.0);
        }
        let progress = (step - warmup) / (total - warmup).max(1.0);
        (0.5 * (1.0 + (std::f64::consts::PI * 2.0 * 0.5 * progress).cos())).max(0.0)
    }

    // transformers.optimization.get_inverse_sqrt_schedule.
    fn hf_inverse_sqrt(step: f64, warmup: f64) -> f64 {
        let timescale = if warmup > 0.0 { warmup } else { 10_000.0 };
        if step < warmup {
            return step / warmup.max(1.0);
        }
        let shift = timescale - warmup;
        1.0 / ((step + shift) / timescale).sqrt()
    }

    #[test]
    fn linear_matches_hugging_face() {
        let s = schedule(SchedulerStyle::Linear, 10.0, 100.0);
        for step in STEPS {
            close(s.lr(step), 1e-3 * hf_linear(step as f64, 10.0, 100.0));
        }
    }

    #[test]
    fn cosine_matches_hugging_face() {
        let s = schedule(SchedulerStyle::Cosine, 10.0, 100.0);
        for step in STEPS {
            close(s.lr(step), 1e-3 * hf_cosine(step as f64, 10.0, 100.0));
        }
    }

    #[test]
    fn inverse_sqrt_matches_hugging_face() {
        for warmup in [0.0, 10.0] {
            let s = schedule(SchedulerStyle::InverseSqrt, warmup, 100.0);
            for step in STEPS {
                close(s.lr(step), 1e-3 * hf_inverse_sqrt(step as f64, warmup));
            }
        }
    }

    #[test]
    fn constant_with_warmup_matches_hugging_face() {
        // get_constant_schedule_with_warmup
        let s = schedule(SchedulerStyle::Constant, 10.0, 100.0);
        for step in STEPS {
            let want = if step < 10 { step as f64 / 10.0 } else { 1.0 };
            close(s.lr(step), 1e-3 * want);
        }
    }

    #[test]
    fn cosine_matches_mae_half_cycle_with_fractional_epochs() {
        // MAE util/lr_sched.py adjust_learning_rate, called per iteration with
        // epoch = data_iter_step / len(data_loader) + epoch.
        let (lr, min_lr, warmup_epochs, epochs, per_epoch) = (2.4e-3, 1e-6, 1.5, 5.0, 8.0);
        let mae = |epoch: f64| {
            if epoch < warmup_epochs {
                lr * epoch / warmup_epochs
            } else {
                min_lr
                    + (lr - min_lr)
                        * 0.5
                        * (1.0
                            + (std::f64::consts::PI * (epoch - warmup_epochs)
                                / (epochs - warmup_epochs))
                                .cos())
            }
        };
        let s = Schedule {
            style: SchedulerStyle::Cosine,
            peak: lr,
            min_lr,
            warmup_init_lr: 0.0,
            warmup: warmup_epochs * per_epoch,
            total: epochs * per_epoch,
            decay_fraction: DEFAULT_WSD_DECAY_FRACTION,
        };
        for step in [0u64, 3, 11, 12, 13, 20, 39] {
            close(s.lr(step), mae(step as f64 / per_epoch));
        }
    }

    #[test]
    fn wsd_matches_megatron() {
        // megatron/core/optimizer_param_scheduler.py get_lr with lr_decay_style="WSD",
        // lr_wsd_decay_style="linear", warmup from lr_warmup_init.
        let (max_lr, min_lr, init, warmup, total, decay) = (1e-3, 1e-5, 1e-4, 10.0, 100.0, 20.0);
        let megatron = |n: f64| {
            if n < warmup {
                return init + (max_lr - init) * n / warmup;
            }
            let anneal_start = total - decay;
            if n <= anneal_start {
                return max_lr;
            }
            let ratio = (n - anneal_start) / decay;
            min_lr + (1.0 - ratio) * (max_lr - min_lr)
        };
        let s = Schedule {
            style: SchedulerStyle::Wsd,
            peak: max_lr,
            min_lr,
            warmup_init_lr: init,
            warmup,
            total,
            decay_fraction: decay / total,
        };
        for step in [0u64, 5, 10, 50, 80, 81, 90, 99, 100] {
            close(s.lr(step), megatron(step as f64));
        }
    }

    #[test]
    fn floor_and_warmup_init_apply_to_every_style() {
        for style in [
            SchedulerStyle::Constant,
            SchedulerStyle::Linear,
            SchedulerStyle::Cosine,
            SchedulerStyle::InverseSqrt,
            SchedulerStyle::Wsd,
        ] {
            let s = Schedule {
                min_lr: 1e-5,
                warmup_init_lr: 2e-4,
                ..schedule(style, 10.0, 100.0)
            };
            close(s.lr(0), 2e-4);
            close(s.lr(5), 2e-4 + (1e-3 - 2e-4) * 0.5);
            for step in 10..=150 {
                assert!(
                    s.lr(step) >= 1e-5 - 1e-18 && s.lr(step) <= 1e-3 + 1e-18,
                    "{style:?} at {step}"
                );
            }
        }
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = schedule(SchedulerStyle::Linear, 0.0, 100.0);
        close(s.lr(0), 1e-3);
        close(s.lr(100), 0.0);
        close(s.lr(1000), 0.0);
    }
}
