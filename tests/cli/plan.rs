//! `runner plan` through the real binary: its step, evaluation and checkpoint counts are what
//! the trainer then runs, its disk figures match the files a run writes, and a filesystem too
//! small for the checkpoints is warned about.

use serde_json::Value as Json;

use crate::common::*;
use crate::train::{checkpoint_steps, json_file, tiny};

const ARGS: &[&str] = &[
    "train.max_steps=12",
    "eval.strategy=steps",
    "eval.every_steps=5",
    "checkpoint.strategy=steps",
    "checkpoint.every_steps=4",
    "checkpoint.keep_last=2",
    "loader.num_workers=0",
];

fn plan(extra: &[&str]) -> Json {
    serde_json::from_str(&stdout(
        runner()
            .args(["plan", "experiments/mnli-tiny.yaml", "--format", "json"])
            .args(ARGS)
            .args(extra),
    ))
    .unwrap()
}

#[test]
fn the_plan_is_what_the_trainer_then_does() {
    let p = plan(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(&mut tiny(&run, ARGS));
    let summary = json_file(run.join("summary.json"));
    assert_eq!(p["steps"]["total_steps"], summary["total_steps"]);
    assert_eq!(p["steps"]["samples"], summary["samples"]);
    // Evaluations at 5 and 10 and at the end; checkpoints at 4, 8, 12, the newest 2 kept.
    let evals = metrics(&run)
        .iter()
        .filter(|m| m.get("eval").is_some())
        .count();
    assert_eq!(p["steps"]["evaluations"], evals as u64);
    assert_eq!(p["steps"]["checkpoints_written"], 3);
    assert_eq!(
        p["steps"]["checkpoints_kept"],
        checkpoint_steps(&run).len() as u64
    );
    // The disk figures are the files' sizes within their headers.
    let weights = std::fs::metadata(run.join("model.safetensors"))
        .unwrap()
        .len() as f64;
    let planned = p["disk"]["final_weights"].as_f64().unwrap();
    assert!(
        (planned / weights - 1.0).abs() < 0.01,
        "{planned} vs {weights}"
    );
    assert_eq!(p["parameters"].as_f64().unwrap() * 4.0, planned);
    assert_eq!(
        p["not_estimated"],
        serde_json::json!(["activation memory", "FLOPs", "time"])
    );
}

#[test]
fn a_filesystem_too_small_is_warned_about_and_the_lr_curve_is_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("lr.png");
    let out = stdout(
        runner()
            .env("RUNNER_PLAN_FREE_BYTES", "1000")
            .args(["plan", "experiments/mnli-tiny.yaml", "--plot"])
            .arg(&png)
            .args(ARGS),
    );
    assert!(
        out.contains("only 1000 B free: WARNING, the run will not fit"),
        "{out}"
    );
    assert!(out.contains("lr ") && out.contains('█'), "{out}");
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let p = plan(&[
        "precision.dtype=bf16",
        "hardware.backend=tch",
        "hardware.device=cuda",
    ]);
    let m = &p["memory_per_rank"];
    assert_eq!(
        m["compute_copy"].as_u64().unwrap(),
        p["parameters"].as_u64().unwrap() * 4
    );
}
