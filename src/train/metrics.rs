//! Where training curves go: `metrics.jsonl` in the run directory (one JSON object per line)
//! and TensorBoard event files under `logging.dir`.
//!
//! Training records: `{"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s"}` (and
//! `"loss_scale"` in fp16), the loss being the mean over the steps since the previous record.
//! Evaluation records: `{"step", "epoch", "eval": {"<set>": {"<metric>": value}}}`. TensorBoard gets the same
//! numbers as `train/<name>` and `eval/<set>/<metric>` curves. Every record is flushed as it
//! is written, and a write error (a full disk) stops the run rather than being ignored.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json, json};

use super::job::EvalSet;
use super::tensorboard::EventWriter;
use crate::durable;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// Every record of a `metrics.jsonl` as (step, named values): a training record's own names
/// (`loss`, `lr`, `grad_norm`, …), an evaluation's as `<set>.<metric>`. Unreadable lines
/// (a torn last line) are skipped; a missing file has none.
pub fn read_scalars(path: &Path) -> Vec<(u64, Vec<(String, f64)>)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|rec| {
            let step = rec.get("step")?.as_u64()?;
            let mut values = Vec::new();
            match rec.get("eval").and_then(|e| e.as_object()) {
                Some(sets) => {
                    for (set, metrics) in sets {
                        for (m, v) in metrics.as_object().into_iter().flatten() {
                            if let Some(v) = v.as_f64() {
                                values.push((format!("{set}.{m}"), v));
                            }
                        }
                    }
                }
                None => {
                    for (k, v) in rec.as_object().into_iter().flatten() {
                        if let (false, Some(v)) = (k == "step" || k == "epoch", v.as_f64()) {
                            values.push((k.clone(), v));
                        }
                    }
                }
            }
            Some((step, values))
        })
        .collect()
}

/// One training record: means over the steps since the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainRecord {
    pub step: u64,
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    /// fp16 only: the dynamic loss scale.
    pub loss_scale: Option<f64>,
}

pub struct Metrics {
    jsonl: Option<(PathBuf, BufWriter<File>)>,
    tensorboard: Option<EventWriter>,
}

impl Metrics {
    /// Opens the sinks. When resuming from `resumed_step`, records of later steps (written
    /// after that checkpoint by the killed run) are dropped from `metrics.jsonl` and the
    /// TensorBoard files, so each holds one curve.
    pub fn open(
        run_dir: &Path,
        tensorboard_dir: Option<&Path>,
        jsonl: bool,
        resumed_step: Option<u64>,
    ) -> Result<Metrics> {
        let jsonl = if jsonl {
            let path = run_dir.join(METRICS_FILE);
            if let Some(step) = resumed_step {
                truncate_after(&path, step)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            Some((path, BufWriter::new(file)))
        } else {
            None
        };
        let tensorboard = match tensorboard_dir {
            Some(dir) => {
                if let Some(step) = resumed_step {
                    super::tensorboard::truncate_after(dir, step).with_context(|| {
                        format!(
                            "cannot cut the TensorBoard files in `{}` back to step {step}",
                            dir.display()
                        )
                    })?;
                }
                Some(EventWriter::create(dir).with_context(|| {
                    format!("cannot create TensorBoard files in `{}`", dir.display())
                })?)
            }
            None => None,
        };
        Ok(Metrics { jsonl, tensorboard })
    }

    /// Sinks that write nothing (the other ranks of a data-parallel run).
    pub fn none() -> Metrics {
        Metrics {
            jsonl: None,
            tensorboard: None,
        }
    }

    pub fn train(&mut self, r: &TrainRecord) -> Result<()> {
        let mut record = json!({
            "step": r.step, "epoch": round(r.epoch), "loss": r.loss, "lr": r.lr,
            "grad_norm": r.grad_norm, "samples_per_s": round(r.samples_per_s),
        });
        if let Some(scale) = r.loss_scale {
            record["loss_scale"] = json!(scale);
        }
        if let Some(tb) = &mut self.tensorboard {
            for (tag, v) in [
                ("train/loss", r.loss),
                ("train/lr", r.lr),
                ("train/grad_norm", r.grad_norm),
                ("train/samples_per_s", r.samples_per_s),
            ] {
                tb.scalar(tag, r.step, v as f32)?;
            }
            if let Some(scale) = r.loss_scale {
                tb.scalar("train/loss_scale", r.step, scale as f32)?;
            }
        }
        self.write(&record)
    }

    pub fn eval(&mut self, step: u64, epoch: f64, sets: &[EvalSet]) -> Result<()> {
        let mut by_set = Map::new();
        for set in sets {
            let mut m = Map::new();
            for (name, v) in &set.metrics {
                m.insert(name.clone(), json!(v));
                if let Some(tb) = &mut self.tensorboard {
                    tb.scalar(&format!("eval/{}/{name}", set.name), step, *v as f32)?;
                }
            }
            by_set.insert(set.name.clone(), Json::Object(m));
        }
        self.write(&json!({"step": step, "epoch": round(epoch), "eval": by_set}))
    }

    fn write(&mut self, record: &Json) -> Result<()> {
        if let Some((path, out)) = &mut self.jsonl {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")
                .and_then(|_| out.flush())
                .with_context(|| {
                    format!("cannot write `{}` (is the disk full?)", path.display())
                })?;
        }
        if let Some(tb) = &mut self.tensorboard {
            tb.flush()
                .with_context(|| format!("cannot write `{}`", tb.path().display()))?;
        }
        Ok(())
    }
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<Json>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(Json::as_u64))
                .is_some_and(|s| s <= step)
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    durable::write(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, loss: f64, loss_scale: Option<f64>) -> TrainRecord {
        TrainRecord {
            step,
            epoch: 0.1,
            loss,
            lr: 1e-3,
            grad_norm: 0.5,
            samples_per_s: 10.0,
            loss_scale,
        }
    }

    #[test]
    fn resuming_drops_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::open(dir.path(), None, true, None).unwrap();
        for step in 1..=5 {
            m.train(&record(step, 1.0, None)).unwrap();
        }
        drop(m);
        let mut m = Metrics::open(dir.path(), None, true, Some(3)).unwrap();
        m.train(&record(4, 2.0, Some(512.0))).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Json>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
        let last = text.lines().last().unwrap();
        assert!(last.contains("\"loss\":2.0") && last.contains("\"loss_scale\":512.0"));
        assert!(!text.lines().next().unwrap().contains("loss_scale"));
    }
}
