//! What a person watching sees: a live progress bar on a terminal (steps, loss, lr,
//! samples/s, ETA), or, when stderr is not a terminal, with `--quiet` or `--log-format json`,
//! one `tracing` line per `train.log_every_steps`. Other messages (evaluations, checkpoints)
//! are `tracing` events in both modes; the bar steps aside while they print.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(live_bar: bool, total_steps: u64, start_step: u64) -> Progress {
        if !live_bar {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  {msg}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar.set_position(start_step);
        // The bar's ETA must not count the steps done before a resume.
        bar.reset_eta();
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar: Some(bar) }
    }

    /// After every optimizer step.
    pub fn step(&self, step: u64, loss: f64, lr: f64, samples_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!(
                "loss {loss:.4}  lr {lr:.3e}  {samples_per_s:.1} samples/s"
            ));
        }
    }

    /// At every log interval: the line printed when there is no bar.
    pub fn log_line(&self, step: u64, total: u64, epoch: f64, loss: f64, lr: f64, sps: f64) {
        if self.bar.is_none() {
            tracing::info!(
                "step {step}/{total}  epoch {epoch:.2}  loss {loss:.4}  lr {lr:.3e}  {sps:.1} samples/s"
            );
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
