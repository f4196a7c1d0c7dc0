//! Where training curves go: `metrics.jsonl` in the run directory (one JSON object per line)
//! and TensorBoard event files under `logging.dir`.
//!
//! Training records: `{"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s"}`, the loss
//! being the mean over the steps since the previous record. Evaluation records:
//! `{"step", "epoch", "eval": {"<set>": {"<metric>": value}}}`. TensorBoard gets the same
//! numbers as `train/<name>` and `eval/<set>/<metric>` curves. Every record is flushed as it
//! is written, and a write error (a full disk) stops the run rather than being ignored.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json, json};

use super::job::EvalSet;
use super::tensorboard::EventWriter;
use crate::rundir::write_atomic;

pub const METRICS_FILE: &str = "metrics.jsonl";

pub struct Metrics {
    jsonl: Option<(PathBuf, BufWriter<File>)>,
    tensorboard: Option<EventWriter>,
}

impl Metrics {
    /// Opens the sinks. When resuming from `resumed_step`, records of later steps (written
    /// after that checkpoint by the killed run) are dropped, so the file holds one curve.
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
            Some(dir) => Some(EventWriter::create(dir).with_context(|| {
                format!("cannot create TensorBoard files in `{}`", dir.display())
            })?),
            None => None,
        };
        Ok(Metrics { jsonl, tensorboard })
    }

    pub fn train(
        &mut self,
        step: u64,
        epoch: f64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        samples_per_s: f64,
    ) -> Result<()> {
        let record = json!({
            "step": step, "epoch": round(epoch), "loss": loss, "lr": lr,
            "grad_norm": grad_norm, "samples_per_s": round(samples_per_s),
        });
        if let Some(tb) = &mut self.tensorboard {
            for (tag, v) in [
                ("train/loss", loss),
                ("train/lr", lr),
                ("train/grad_norm", grad_norm),
                ("train/samples_per_s", samples_per_s),
            ] {
                tb.scalar(tag, step, v as f32)?;
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
    write_atomic(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_drops_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::open(dir.path(), None, true, None).unwrap();
        for step in 1..=5 {
            m.train(step, 0.1, 1.0, 1e-3, 0.5, 10.0).unwrap();
        }
        drop(m);
        let mut m = Metrics::open(dir.path(), None, true, Some(3)).unwrap();
        m.train(4, 0.1, 2.0, 1e-3, 0.5, 10.0).unwrap();
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
        assert!(text.lines().last().unwrap().contains("\"loss\":2.0"));
    }
}
