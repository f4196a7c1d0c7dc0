//! Metric-driven checkpoints and early stopping: which evaluations were best by
//! `eval.metric_for_best`, the weights of the `checkpoint.keep_best` best (under `best/`,
//! weights only, apart from the resume checkpoints), and how many evaluations in a row did
//! not improve (`eval.early_stopping_patience`).
//!
//! The tracker's state is part of every checkpoint (`TrainState::best`), so a resumed run
//! keeps and stops exactly as an uninterrupted one. Files under `best/` are only deleted when
//! a checkpoint that no longer needs them has been written (and at the end): a run killed
//! between two checkpoints resumes with every file its checkpoint's kept set names.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::job::EvalSet;
use crate::config::types::Experiment;

pub const DIR: &str = "best";

/// What the configuration asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `<set>.<metric>`.
    pub metric: String,
    pub higher: bool,
    /// Best evaluations whose weights are kept (`load_best_at_end` needs at least one).
    pub keep: usize,
    pub patience: Option<u32>,
    pub threshold: f64,
    pub load_at_end: bool,
}

impl Policy {
    pub fn of(exp: &Experiment) -> Option<Policy> {
        let metric = exp.eval.metric_for_best.clone()?;
        let ck = &exp.checkpoint;
        Some(Policy {
            higher: exp
                .eval
                .greater_is_better
                .unwrap_or_else(|| crate::config::metric::greater_is_better(&metric)),
            metric,
            keep: (ck.keep_best as usize).max(usize::from(ck.load_best_at_end)),
            patience: exp.eval.early_stopping_patience,
            threshold: exp.eval.early_stopping_threshold,
            load_at_end: ck.load_best_at_end,
        })
    }
}

/// One evaluation's value of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub step: u64,
    pub value: f64,
}

/// The tracker's state, as checkpoints keep it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The kept evaluations, best first.
    pub kept: Vec<Scored>,
    /// The best evaluation so far (kept or not).
    pub best: Option<Scored>,
    /// Evaluations since the last improvement (by more than the threshold).
    pub since_improvement: u32,
}

/// What one evaluation means.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Save this evaluation's weights (it entered the kept set).
    pub keep: bool,
    /// Stop training: `early_stopping_patience` evaluations without improvement; why.
    pub stop: Option<String>,
}

pub struct Tracker {
    pub policy: Policy,
    pub state: State,
}

impl Tracker {
    pub fn new(policy: Policy, resumed: Option<State>) -> Tracker {
        Tracker {
            policy,
            state: resumed.unwrap_or_default(),
        }
    }

    /// `a` ranks before `b`: a better value, or the same value at a later step.
    fn before(&self, a: &Scored, b: &Scored) -> bool {
        if a.value == b.value {
            a.step > b.step
        } else if self.policy.higher {
            a.value > b.value
        } else {
            a.value < b.value
        }
    }

    /// The metric's value in `sets`.
    pub fn value_in(&self, sets: &[EvalSet]) -> Option<f64> {
        let (set, metric) = self.policy.metric.split_once('.')?;
        sets.iter()
            .find(|s| s.name == set)?
            .metrics
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, v)| *v)
    }

    /// Takes in the evaluation at `step`.
    pub fn observe(&mut self, step: u64, value: f64) -> Verdict {
        let p = &self.policy;
        let now = Scored { step, value };
        let improved = match self.state.best {
            None => true,
            Some(b) => {
                let gain = if p.higher {
                    value - b.value
                } else {
                    b.value - value
                };
                gain > p.threshold
            }
        };
        if self.state.best.is_none_or(|b| self.before(&now, &b)) {
            self.state.best = Some(now);
        }
        if improved {
            self.state.since_improvement = 0;
        } else {
            self.state.since_improvement += 1;
        }
        let mut keep = false;
        if p.keep > 0 {
            let at = self
                .state
                .kept
                .iter()
                .position(|k| self.before(&now, k))
                .unwrap_or(self.state.kept.len());
            if at < p.keep {
                self.state.kept.insert(at, now);
                self.state.kept.truncate(p.keep);
                keep = true;
            }
        }
        let stop = match p.patience {
            Some(n) if self.state.since_improvement >= n => {
                let best = self.state.best.expect("set above");
                Some(format!(
                    "early stopping: {} did not improve by more than {} for {n} evaluation{} (best {} at step {})",
                    p.metric,
                    p.threshold,
                    if n == 1 { "" } else { "s" },
                    best.value,
                    best.step
                ))
            }
            _ => None,
        };
        Verdict { keep, stop }
    }
}

/// `best/step-N.safetensors`.
pub fn path_of(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join(DIR)
        .join(format!("{}.safetensors", super::checkpoint::dir_name(step)))
}

fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Deletes the files under `best/` that `keep` does not name (and, resuming from `after`,
/// those a killed run wrote after that step).
pub fn prune(run_dir: &Path, keep: &[Scored]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(DIR)) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(step) = name.to_str().and_then(step_of) else {
            continue;
        };
        if !keep.iter().any(|k| k.step == step) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(higher: bool, keep: usize, patience: Option<u32>) -> Policy {
        Policy {
            metric: "dev.accuracy".into(),
            higher,
            keep,
            patience,
            threshold: 0.0,
            load_at_end: false,
        }
    }

    #[test]
    fn keeps_the_best_and_breaks_ties_by_the_later_step() {
        let mut t = Tracker::new(policy(true, 2, None), None);
        assert!(t.observe(10, 0.5).keep);
        assert!(t.observe(20, 0.7).keep);
        assert!(!t.observe(30, 0.4).keep);
        // A tie with the second: the later one wins its place.
        assert!(t.observe(40, 0.5).keep);
        let kept: Vec<u64> = t.state.kept.iter().map(|k| k.step).collect();
        assert_eq!(kept, [20, 40]);
        assert_eq!(t.state.best.unwrap().step, 20);
    }

    #[test]
    fn stops_after_patience_evaluations_without_improvement() {
        let mut t = Tracker::new(policy(false, 0, Some(2)), None);
        assert_eq!(t.observe(1, 1.0).stop, None);
        assert_eq!(t.observe(2, 0.9).stop, None);
        assert_eq!(
            t.observe(3, 0.9).stop,
            None,
            "a tie is no improvement, but 1 < 2"
        );
        let v = t.observe(4, 0.95);
        assert!(v.stop.unwrap().contains("best 0.9 at step 3"));
        // Resumed from the state after step 3, the same evaluation stops the same way.
        let mut again = Tracker::new(policy(false, 0, Some(2)), None);
        for (s, v) in [(1, 1.0), (2, 0.9), (3, 0.9)] {
            again.observe(s, v);
        }
        let mut resumed = Tracker::new(policy(false, 0, Some(2)), Some(again.state.clone()));
        assert!(resumed.observe(4, 0.95).stop.is_some());
    }
}
