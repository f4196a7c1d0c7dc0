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
        serde_json::json!(["time measured on this machine (--measure)"])
    );
    // The memory's parts add up; on a CPU the total is held against this machine's RAM, and
    // no time is estimated (no peak figure).
    let m = &p["memory_per_rank"];
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {m}"));
    assert_eq!(
        n("total"),
        n("model_states") + n("activations").max(n("eval_batch")) + n("loader_prefetch")
    );
    assert!(n("activations_with_checkpointing") < n("activations_without_checkpointing"));
    assert_eq!(n("activations"), n("activations_without_checkpointing"));
    assert_eq!(m["device"]["name"], "this machine's RAM");
    assert_eq!(m["fits"], true);
    assert!(p["time"].is_null());
    let w = &p["work"];
    assert_eq!(w["unit"], "tokens");
    assert!(
        w["flops_per_step"].as_f64().unwrap()
            > 3.0 * w["forward_flops_per_sample"].as_f64().unwrap()
    );
}

#[test]
fn a_batch_that_does_not_fit_gets_advice_that_keeps_the_global_batch() {
    // bert-base at batch 4096 on one RTX 3090 (24 GB) in fp16 (more than the tiny set holds:
    // one short epoch).
    let out = stdout(runner().args([
        "plan",
        "experiments/mnli-tiny.yaml",
        "--profile",
        "1xRTX3090",
        "model.arch=bert-base",
        "train.per_device_batch_size=4096",
        "loader.drop_last=false",
    ]));
    assert!(
        out.contains("more than the 24.0 GiB of RTX 3090 24 GB: it will run out of memory"),
        "{out}"
    );
    assert!(out.contains("train.gradient_checkpointing=true: "), "{out}");
    assert!(
        out.contains("with train.grad_accum_steps=") && out.contains("(the same global batch)"),
        "{out}"
    );
    // On a GPU of the device table, time is estimated from its peak.
    assert!(
        out.contains("s/step") && out.contains("of RTX 3090 24 GB's 71 TFLOP/s"),
        "{out}"
    );
    // Checkpointing makes it fit; the JSON says so, and the time grows by the recomputation.
    let json = |extra: &[&str]| -> Json {
        let mut cmd = runner();
        cmd.args(["plan", "experiments/mnli-tiny.yaml", "--format", "json"])
            .args(["--profile", "1xRTX3090", "model.arch=bert-base"])
            .args([
                "train.per_device_batch_size=4096",
                "train.grad_accum_steps=1",
            ])
            .arg("loader.drop_last=false")
            .args(extra);
        serde_json::from_str(&stdout(&mut cmd)).unwrap()
    };
    let (plain, ckpt) = (json(&[]), json(&["train.gradient_checkpointing=true"]));
    assert_eq!(plain["memory_per_rank"]["fits"], false);
    assert!(
        !plain["memory_per_rank"]["advice"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(ckpt["memory_per_rank"]["advice"], serde_json::json!([]));
    let secs = |p: &Json| p["time"]["step_seconds"].as_f64().unwrap();
    assert!(secs(&ckpt) > secs(&plain));
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
