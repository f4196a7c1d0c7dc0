//! Training end to end through the real binary, on the shipped tiny MNLI-style set
//! (`experiments/mnli-tiny.yaml`): learning, the run directory, determinism, gradient
//! accumulation, kill-and-resume, checkpoints under kills, non-finite losses, bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value as Json;

/// `runner run experiments/mnli-tiny.yaml --output-dir OUT` plus `overrides`.
pub(crate) fn tiny(out: &Path, overrides: &[&str]) -> assert_cmd::Command {
    let mut cmd = runner();
    cmd.args([
        "run",
        "experiments/mnli-tiny.yaml",
        "--quiet",
        "--output-dir",
    ])
    .arg(out)
    .args(overrides);
    cmd
}

/// Short runs: every step logged, no evaluation.
pub(crate) const SHORT: &[&str] = &[
    "train.max_steps=24",
    "train.log_every_steps=1",
    "eval.strategy=no",
    "checkpoint.strategy=no",
];

pub(crate) fn records(run: &Path) -> Vec<Json> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// (step, loss) of every training record.
pub(crate) fn losses(run: &Path) -> Vec<(u64, f64)> {
    records(run)
        .iter()
        .filter_map(|r| Some((r["step"].as_u64()?, r.get("loss")?.as_f64()?)))
        .collect()
}

pub(crate) fn json_file(path: PathBuf) -> Json {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn checkpoint_steps(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Accuracy of always answering the most frequent label of a GLUE TSV file.
fn majority_accuracy(tsv: &Path) -> f64 {
    let text = std::fs::read_to_string(tsv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = header.iter().position(|h| *h == "gold_label").unwrap();
    let mut counts = std::collections::HashMap::new();
    let mut n = 0;
    for l in lines {
        *counts
            .entry(l.split('\t').nth(col).unwrap().to_string())
            .or_insert(0) += 1;
        n += 1;
    }
    *counts.values().max().unwrap() as f64 / n as f64
}

#[test]
fn tiny_mnli_learns_and_leaves_a_complete_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = stdout(&mut tiny(&run, &[]));
    assert!(
        out.contains(&format!("run directory: {}", run.display())),
        "{out}"
    );

    for file in [
        "config.resolved.yaml",
        "provenance.yaml",
        "meta.json",
        "metrics.jsonl",
        "summary.json",
        "model.safetensors",
    ] {
        assert!(run.join(file).is_file(), "{file} is written");
    }
    assert_eq!(json_file(run.join("meta.json"))["status"], "completed");
    let summary = json_file(run.join("summary.json"));
    assert_eq!(summary["status"], "completed");
    for set in ["dev_matched", "dev_mismatched"] {
        let acc = summary["eval"][set]["accuracy"].as_f64().unwrap();
        let majority = majority_accuracy(&repo().join(format!("data/mnli-tiny/{set}.tsv")));
        assert!(
            acc > majority + 0.25,
            "{set}: accuracy {acc} does not clearly beat the majority class ({majority})"
        );
    }
    // Epoch strategy: one checkpoint per epoch, two epochs, keep_last 3.
    assert_eq!(checkpoint_steps(&run), ["step-00000187", "step-00000374"]);
    let evals = records(&run)
        .iter()
        .filter(|r| r.get("eval").is_some())
        .count();
    assert_eq!(evals, 2, "one evaluation per epoch");

    // The real TensorBoard reads the run's curves.
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    print(tag, len(acc.Scalars(tag)), acc.Scalars(tag)[-1].step)
"#;
    let tb = StdCommand::new("python3")
        .args(["-c", script])
        .arg(run.join("logs"))
        .output()
        .expect("python3 runs");
    assert!(
        tb.status.success(),
        "TensorBoard's reader failed (install it into the python3 on PATH: `python3 -m pip install tensorboard==2.21.0`; `just setup-test` puts it in .venv-tch):\n{}",
        String::from_utf8_lossy(&tb.stderr)
    );
    let tb = String::from_utf8(tb.stdout).unwrap();
    let train_records = losses(&run).len();
    assert!(
        tb.contains(&format!("train/loss {train_records} 374")),
        "{tb}"
    );
    assert!(tb.contains("eval/dev_matched/accuracy 2 374"), "{tb}");
    assert!(tb.contains("train/lr "), "{tb}");
}

#[test]
fn same_seed_same_losses_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    stdout(&mut tiny(&a, SHORT));
    // JSON logs on the second run: every stderr line is a JSON object.
    let out = tiny(&b, SHORT)
        .args(["--log-format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().count() > 10, "{stderr}");
    for line in stderr.lines() {
        serde_json::from_str::<Json>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    stdout(tiny(&c, SHORT).args(["--seed", "7"]));

    let (la, lb, lc) = (losses(&a), losses(&b), losses(&c));
    assert_eq!(la.len(), 24);
    assert_eq!(la, lb, "same config and seed, same losses");
    assert_ne!(la, lc, "another seed, another curve");
}

#[test]
fn gradient_accumulation_matches_one_big_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (big, accum) = (tmp.path().join("big"), tmp.path().join("accum"));
    let common = [
        "train.max_steps=6",
        "train.log_every_steps=1",
        "eval.strategy=no",
        "checkpoint.strategy=no",
        "model.dropout=0",
        "scheduler.warmup_ratio=null",
    ];
    stdout(
        tiny(&big, &common).args(["train.per_device_batch_size=16", "train.grad_accum_steps=1"]),
    );
    stdout(
        tiny(&accum, &common).args(["train.per_device_batch_size=4", "train.grad_accum_steps=4"]),
    );
    let (lb, la) = (losses(&big), losses(&accum));
    assert_eq!(lb.len(), 6);
    for ((s, x), (_, y)) in lb.iter().zip(&la) {
        // Step 1 compares the losses of identical weights; later steps also compare the
        // updates that produced them.
        assert!(
            (x - y).abs() < 1e-5 * x.abs().max(1.0),
            "step {s}: {x} vs {y}"
        );
    }
    let other = losses(&{
        let p = tmp.path().join("other");
        stdout(
            tiny(&p, &common).args(["train.per_device_batch_size=4", "train.grad_accum_steps=1"]),
        );
        p
    });
    assert!(
        (other[2].1 - lb[2].1).abs() > 1e-4,
        "a smaller batch without accumulation follows another curve"
    );
}

/// Two safetensors files hold the same tensors, bit for bit (the header's order may differ).
pub(crate) fn assert_same_tensors(a: &Path, b: &Path) {
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&ba).unwrap(),
        safetensors::SafeTensors::deserialize(&bb).unwrap(),
    );
    let mut names = ta.names();
    names.sort();
    let mut names_b = tb.names();
    names_b.sort();
    assert_eq!(names, names_b);
    for name in names {
        let (x, y) = (ta.tensor(name).unwrap(), tb.tensor(name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert!(x.data() == y.data(), "{name} differs");
    }
}

/// `runner run experiments/mnli-tiny.yaml --output-dir RUN ARGS…` in the background, its
/// output to `output` (what a test reads afterwards, or `Stdio::null()`).
pub(crate) fn spawn_tiny(run: &Path, args: &[&str], output: impl Fn() -> Stdio) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(repo())
        .args([
            "run",
            "experiments/mnli-tiny.yaml",
            "--quiet",
            "--output-dir",
        ])
        .arg(run)
        .args(args)
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap()
}

/// Starts a run in the background and SIGKILLs it once `ready(run)` holds.
pub(crate) fn kill_when(args: &[&str], run: &Path, ready: impl Fn(&Path) -> bool) {
    let mut child = spawn_tiny(run, args, Stdio::null);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(run) {
        assert!(Instant::now() < deadline, "the run never got there");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

pub(crate) fn logged_steps(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0)
}

pub(crate) const RESUMABLE: &[&str] = &[
    "train.max_steps=30",
    "train.log_every_steps=1",
    "eval.strategy=no",
    "checkpoint.strategy=steps",
    "checkpoint.every_steps=4",
];

#[test]
fn a_killed_run_resumes_on_the_same_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    stdout(&mut tiny(&whole, RESUMABLE));

    // Killed after step 14: the newest checkpoint is step 12, steps 13-14 are redone.
    kill_when(RESUMABLE, &killed, |run| logged_steps(run) >= 14);
    assert!(
        !killed.join("summary.json").exists(),
        "the run really was killed mid-way"
    );
    assert_eq!(json_file(killed.join("meta.json"))["status"], "running");
    let out = stdout(tiny(&killed, RESUMABLE).args(["--set", "resume=auto"]));
    assert!(out.contains("trained 30 steps"), "{out}");
    let summary = json_file(killed.join("summary.json"));
    assert!(
        summary["resumed_from"]
            .as_str()
            .unwrap()
            .contains("step-000000"),
        "{summary}"
    );
    assert_eq!(
        losses(&killed),
        losses(&whole),
        "resumed curve = uninterrupted curve"
    );
    assert_same_tensors(
        &killed.join("model.safetensors"),
        &whole.join("model.safetensors"),
    );
}

#[test]
fn checkpoints_survive_kills_at_any_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    let args = [
        "train.max_steps=30",
        "train.log_every_steps=1",
        "eval.strategy=no",
        "checkpoint.strategy=steps",
        "checkpoint.every_steps=1",
        "checkpoint.keep_last=2",
    ];
    stdout(&mut tiny(&whole, &args));
    // Kill repeatedly at staggered moments while a checkpoint is written after every step,
    // resuming each time; every resume must find a complete latest checkpoint.
    let mut resume_args = args.to_vec();
    resume_args.push("resume=auto");
    let mut killed_at = Vec::new();
    for round in 0..5u64 {
        let start = logged_steps(&killed);
        let target = start + 2 + round;
        let delay = Duration::from_millis(3 * round);
        kill_when(&resume_args, &killed, |run| {
            let ok = logged_steps(run) >= target;
            if ok {
                std::thread::sleep(delay);
            }
            ok
        });
        killed_at.push(logged_steps(&killed));
    }
    stdout(&mut tiny(&killed, &resume_args));
    assert_eq!(losses(&killed), losses(&whole), "killed at {killed_at:?}");
    let left = checkpoint_steps(&killed);
    assert_eq!(
        left,
        ["step-00000029", "step-00000030"],
        "keep_last 2, no partial directories"
    );
}

#[test]
fn a_non_finite_loss_stops_the_run_and_names_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (code, err) = failure(&mut tiny(
        &run,
        &[
            "optimizer.lr=1.0e+30",
            "scheduler.warmup_ratio=null",
            "train.max_steps=20",
            "train.clip_grad_norm=0",
            "eval.strategy=no",
            "checkpoint.strategy=steps",
            "checkpoint.every_steps=1",
            "checkpoint.keep_last=0",
        ],
    ));
    assert_eq!(code, 1, "{err}");
    let step: u64 = err
        .split("at step ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step named: {err}"));
    assert!(
        err.contains("training stopped before applying that update"),
        "{err}"
    );
    assert!(err.contains("last good checkpoint"), "{err}");
    // As cargo prints errors: the failure, its cause, then the fix on a line of its own.
    let error = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .expect("an error line");
    assert!(
        error.starts_with("error: training failed (run directory "),
        "{err}"
    );
    assert!(err.contains("\n\nCaused by:\n  the "), "{err}");
    let help = err
        .lines()
        .find(|l| l.starts_with("help: "))
        .expect("a help line");
    assert!(help.starts_with("help: lower optimizer.lr"), "{err}");
    assert!(
        !error.contains("lower optimizer.lr"),
        "the fix is not in the error line"
    );
    let meta = json_file(run.join("meta.json"));
    assert_eq!(meta["status"], "failed");
    assert!(meta["error"].as_str().unwrap().contains("at step"));
    // Every step before the bad one was checkpointed; nothing after it.
    assert_eq!(checkpoint_steps(&run).len() as u64, step - 1, "{err}");
    assert!(!run.join("summary.json").exists());
}

#[test]
fn unreadable_data_is_named_by_file_and_line_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write(
        tmp.path(),
        "train.tsv",
        "index\tgenre\tsentence1\tsentence2\tgold_label\n0\tg\ta b\tc d\tentailment\n1\tg\tonly one field\n",
    );
    let run = tmp.path().join("run");
    let (code, err) = failure(
        tiny(&run, &[])
            .arg(format!("data.train_file={}", bad.display()))
            .arg("data.validation_files=[]"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:3", bad.display())), "{err}");
    assert!(
        !run.exists(),
        "no run directory for a run that cannot start"
    );
}

#[test]
fn an_output_dir_that_cannot_be_created_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "not-a-dir", "");
    let (code, err) = failure(&mut tiny(&file.join("run"), SHORT));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot create the run directory"), "{err}");
    assert!(err.contains("not-a-dir/run"), "{err}");
}

#[test]
fn settings_the_engine_lacks_are_refused_not_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    {
        let (setting, named) = (
            "train.auto_find_batch_size=true",
            "train.auto_find_batch_size",
        );
        let message = format!("{named} is not implemented by runner's engine yet");
        // validate, validate --strict, run --dry-run and run: the same message, exit 2.
        let mut messages = Vec::new();
        for args in [
            &["validate"][..],
            &["validate", "--strict"],
            &["run", "--dry-run"],
            &["run"],
        ] {
            let (code, err) = failure(
                runner()
                    .args(args)
                    .args(["experiments/mnli-tiny.yaml", "--output-dir"])
                    .arg(&run)
                    .args(SHORT)
                    .arg(setting),
            );
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(err.contains(&message), "{args:?}: {err}");
            messages.push(
                err.lines()
                    .find(|l| l.contains(&message))
                    .unwrap()
                    .to_string(),
            );
            assert!(!run.exists(), "{args:?} wrote nothing");
        }
        messages.dedup();
        assert_eq!(messages.len(), 1, "one message: {messages:?}");
        // show prints the configuration, with the message as a warning.
        let out = runner()
            .args(["show", "experiments/mnli-tiny.yaml"])
            .arg(setting)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("warning[unsupported]") && err.contains(&message),
            "{err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("{}: true", named.split('.').nth(1).unwrap()))
        );
    }
}

#[test]
fn gradient_checkpointing_follows_the_plain_curve() {
    // Without dropout a step draws nothing at random, so recomputing the blocks changes only
    // the order of float sums: the same curve within rounding.
    let tmp = tempfile::tempdir().unwrap();
    let (plain, ckpt) = (tmp.path().join("plain"), tmp.path().join("ckpt"));
    let mut short = SHORT.to_vec();
    short.extend(["train.max_steps=8", "model.dropout=0"]);
    stdout(&mut tiny(&plain, &short));
    short.push("train.gradient_checkpointing=true");
    stdout(&mut tiny(&ckpt, &short));
    let (a, b) = (losses(&plain), losses(&ckpt));
    assert_eq!(a.len(), 8);
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs(),
            "step {sa}: {la} vs {lb}"
        );
    }
    // The huge-model profile (batch 2 × 16 accumulation, checkpointing) trains.
    let huge = tmp.path().join("huge");
    let out = stdout(
        runner()
            .args(["run", "experiments/mnli-tiny.yaml", "--quiet"])
            .args(["--profile", "cpu", "--profile", "huge-model"])
            .args(["--set", "train.max_steps=3", "--output-dir"])
            .arg(&huge)
            .args(["eval.strategy=no", "checkpoint.strategy=no"]),
    );
    let summary = json_file(huge.join("summary.json"));
    assert_eq!(summary["steps"], 3, "{out}");
    // The experiment's own batch (16) stands above the profiles; the profile's 16
    // accumulation steps and checkpointing apply.
    assert_eq!(summary["samples"], 3 * 16 * 16);
    let resolved = std::fs::read_to_string(huge.join("config.resolved.yaml")).unwrap();
    assert!(
        resolved.contains("gradient_checkpointing: true"),
        "{resolved}"
    );
}
