//! `runner plan` through the real binary: its step, evaluation and checkpoint counts are what
//! the trainer then runs, its disk figures match the files a run writes, and a filesystem too
//! small for the checkpoints is warned about.

use std::path::Path;

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

/// `runner plan EXPERIMENT --format json EXTRA…` next to the finished run in `run` (trained
/// from the same experiment and arguments): its steps, samples, evaluations and kept
/// checkpoints are the run's. The plan, for further checks.
pub fn assert_plan_matches_run(experiment: &str, extra: &[&str], run: &Path) -> Json {
    let p: Json = serde_json::from_str(&stdout(
        runner()
            .args(["plan", experiment, "--format", "json"])
            .args(extra),
    ))
    .unwrap();
    let summary = json_file(run.join("summary.json"));
    assert_eq!(p["steps"]["total_steps"], summary["total_steps"]);
    assert_eq!(p["steps"]["samples"], summary["samples"]);
    assert_eq!(p["steps"]["examples_counted"], "data");
    let evals = metrics(run)
        .iter()
        .filter(|m| m.get("eval").is_some())
        .count();
    assert_eq!(p["steps"]["evaluations"], evals as u64, "{experiment}");
    assert_eq!(
        p["steps"]["checkpoints_kept"],
        checkpoint_steps(run).len() as u64,
        "{experiment}"
    );
    p
}

#[test]
fn the_plan_is_what_the_trainer_then_does() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(&mut tiny(&run, ARGS));
    // Evaluations at 5 and 10 and at the end; checkpoints at 4, 8, 12, the newest 2 kept.
    let p = assert_plan_matches_run("experiments/mnli-tiny.yaml", ARGS, &run);
    assert_eq!(p["steps"]["checkpoints_written"], 3);
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
    assert_eq!(p["notes"], serde_json::json!([]));
    assert!(p.get("measured").is_none());
    // The memory's parts add up; on a CPU the total is held against this machine's RAM, and
    // no time is estimated (no peak figure).
    let m = &p["memory_per_rank"];
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {m}"));
    // Weights and moments throughout; backward's peak (activations and the gradients made
    // so far), or an evaluation beside the gradients; the batch; gemm's packing buffers.
    assert_eq!(
        n("total"),
        n("parameters")
            + n("optimizer_state")
            + n("backward_peak").max(n("gradients") + n("eval_batch"))
            + n("loader_prefetch")
            + n("matmul_workspace")
    );
    // At backward's start every activation is alive (and the head's gradients); at its end
    // every gradient.
    assert!(n("backward_peak") > n("activations"), "{m}");
    assert!(n("backward_peak") > n("gradients"), "{m}");
    assert!(n("backward_peak") < n("activations") + n("gradients") + n("activations") / 4);
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

#[test]
fn data_that_is_not_here_is_planned_from_data_num_examples() {
    // MNLI's training set on a cluster, planned from here: bert-base, sequences of 128.
    let args = [
        "data.train_file=/cluster/glue/MNLI/train.tsv",
        "data.tokenizer=/cluster/bert-base-uncased/vocab.txt",
        "model.arch=bert-base",
        "data.max_seq_length=128",
        "train.per_device_batch_size=32",
        "train.epochs=3",
    ];
    let (code, err) = failure(
        runner()
            .args(["plan", "experiments/mnli-tiny.yaml"])
            .args(args),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "data.train_file `/cluster/glue/MNLI/train.tsv` does not exist on this machine"
        ) && err.contains("data.num_examples"),
        "{err}"
    );
    let p: Json = serde_json::from_str(&stdout(
        runner()
            .args(["plan", "experiments/mnli-tiny.yaml", "--format", "json"])
            .args(args)
            .arg("data.num_examples=392702"),
    ))
    .unwrap();
    let s = &p["steps"];
    assert_eq!(s["examples"], 392702);
    assert_eq!(s["examples_counted"], "given");
    // 392702 / 32 with drop_last: 12271 steps an epoch, three epochs.
    assert_eq!(s["steps_per_epoch"], 12271);
    assert_eq!(s["total_steps"], 3 * 12271);
    // BERT-base with its pooler and a 3-way head over BERT's own vocabulary: what Hugging
    // Face's BertForSequenceClassification counts.
    assert_eq!(p["parameters"], 109_484_547);
    assert_eq!(p["work"]["units_per_sample"], 128.0);
    let notes = p["notes"].to_string();
    assert!(
        notes.contains("data.num_examples = 392702")
            && notes.contains("30522 tokens")
            && notes.contains("an upper bound"),
        "{notes}"
    );
    // Where the data is here, it is counted, and a different data.num_examples is said.
    let p = plan(&["data.num_examples=5"]);
    assert_eq!(p["steps"]["examples"], 3000);
    assert!(
        p["notes"]
            .to_string()
            .contains("data.num_examples is 5 but"),
        "{}",
        p["notes"]
    );
}

#[test]
fn measure_times_real_steps_and_writes_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("never");
    let p: Json = serde_json::from_str(&stdout(
        runner()
            .args([
                "plan",
                "experiments/mnli-tiny.yaml",
                "--measure",
                "--format",
                "json",
            ])
            .arg(format!("output_dir={}", out_dir.display())),
    ))
    .unwrap();
    let m = &p["measured"];
    let steps = m["step_seconds"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{m}");
    assert!(steps.iter().all(|s| s.as_f64().unwrap() > 0.0), "{m}");
    let median = m["median_step_seconds"].as_f64().unwrap();
    let total = p["steps"]["total_steps"].as_f64().unwrap();
    assert!((m["run_seconds"].as_f64().unwrap() - median * total).abs() < 1e-6 * total);
    assert_eq!(m["device"], "flex on cpu");
    assert!(m["peak_rss"].as_u64().unwrap() > 0);
    // The binary counts its allocations: the step's peak is above what the first step began with.
    let allocated = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {m}"));
    assert!(
        allocated("peak_allocated") > allocated("allocated_at_first_step"),
        "{m}"
    );
    assert!(!out_dir.exists(), "--measure wrote the run directory");
    // The text report says it.
    let text = stdout(runner().args([
        "plan",
        "experiments/mnli-tiny.yaml",
        "--measure",
        "train.max_steps=2",
    ]));
    assert!(
        text.contains("measured ") && text.contains("s/step on flex on cpu"),
        "{text}"
    );
}

#[test]
fn dropout_masks_count_where_the_backend_keeps_them() {
    // burn-flex regenerates dropout's mask in backward; libtorch keeps one of the input's size.
    let activations = |extra: &[&str]| {
        plan(extra)["memory_per_rank"]["activations"]
            .as_u64()
            .unwrap()
    };
    let (flex, tch) = (activations(&[]), activations(&["hardware.backend=tch"]));
    assert!(tch > flex, "{tch} vs {flex}");
    let no_dropout = ["model.dropout=0.0"];
    let tch_no_dropout = activations(&["hardware.backend=tch", no_dropout[0]]);
    assert_eq!(tch_no_dropout, activations(&no_dropout));
}

#[test]
fn the_convolution_columns_count_on_flex_only() {
    // burn-flex's conv3d keeps one column buffer (8 MiB at most) between calls; libtorch's
    // convolutions are its own. The CausalVAE's largest 3³ convolution fills the bound.
    let memory = |extra: &[&str]| {
        let p: Json = serde_json::from_str(&stdout(
            runner()
                .args([
                    "plan",
                    "experiments/causalvae-tiny.yaml",
                    "--format",
                    "json",
                ])
                .args(extra),
        ))
        .unwrap();
        p["memory_per_rank"].clone()
    };
    let (flex, tch) = (memory(&[]), memory(&["hardware.backend=tch"]));
    assert_eq!(flex["conv_workspace"], 8 << 20, "{flex}");
    assert_eq!(tch["conv_workspace"], 0, "{tch}");
    assert_eq!(tch["matmul_workspace"], 0, "{tch}");
    let total = |m: &Json| m["total"].as_u64().unwrap();
    let packing = flex["matmul_workspace"].as_u64().unwrap();
    assert_eq!(total(&flex) - total(&tch), (8 << 20) + packing);
}

#[test]
fn gemms_packing_buffers_count_one_per_thread_that_multiplies() {
    // gemm keeps an L2-sized packing buffer on every thread that has run a product: each
    // rayon worker and the thread driving the step; with one rayon thread, that thread only.
    let packing = |threads: &str| {
        let p: Json =
            serde_json::from_str(&stdout(runner().env("RAYON_NUM_THREADS", threads).args([
                "plan",
                "experiments/mnli-tiny.yaml",
                "--format",
                "json",
            ])))
            .unwrap();
        p["memory_per_rank"]["matmul_workspace"].as_u64().unwrap()
    };
    let one = packing("1");
    assert!(one >= 64 << 10, "one thread's buffer: {one} bytes");
    assert_eq!(packing("2"), 3 * one);
    assert_eq!(packing("4"), 5 * one);
}
