//! How a run stands and ends, through the real binary on `mnli-tiny`: Ctrl-C and SIGTERM stop
//! at a step boundary with a checkpoint and resume bit for bit, a second signal exits at once,
//! a live run is never taken over, a completed one is left alone, a damaged newest checkpoint
//! is passed over, TensorBoard shows each step once after a resume, and a kill during the
//! final weights' write never leaves a torn file.

use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::*;
use crate::train::{
    RESUMABLE, assert_same_tensors, checkpoint_steps, json_file, kill_when, logged_steps, losses,
    spawn_tiny, tiny,
};

/// `runner run experiments/mnli-tiny.yaml` in the background, its output kept for the end.
fn start(run: &Path, args: &[&str]) -> Child {
    spawn_tiny(run, args, Stdio::piped)
}

fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "never got there: {what}");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (tag, step) of every scalar TensorBoard's own reader finds in `dir`.
fn tensorboard_scalars(dir: &Path) -> Vec<(String, i64)> {
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for e in acc.Scalars(tag):
        print(tag, e.step)
"#;
    let out = StdCommand::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "TensorBoard's reader failed (install it into the python3 on PATH: `python3 -m pip install tensorboard==2.21.0`; `just setup-test` puts it in .venv-tch):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (tag, step) = l.rsplit_once(' ').unwrap();
            (tag.to_string(), step.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_signal_stops_at_a_step_boundary_and_resume_continues_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    stdout(&mut tiny(&whole, RESUMABLE));
    for (sig, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let run = tmp.path().join(name);
        let mut child = start(&run, RESUMABLE);
        wait_until(&mut child, "step 10", || logged_steps(&run) >= 10);
        signal(&child, sig);
        let (status, err) = finish(child);
        assert_eq!(status, code, "{name}: {err}");
        assert!(err.contains(&format!("interrupted by {name}")), "{err}");
        let meta = json_file(run.join("meta.json"));
        assert_eq!(meta["status"], "interrupted", "{meta}");
        assert_eq!(meta["signal"], name);
        assert!(
            !run.join("summary.json").exists(),
            "an interrupted run has not ended"
        );
        assert!(!run.join("model.safetensors").exists());
        // It stopped where a step ended and checkpointed there.
        let stopped = logged_steps(&run);
        assert!(
            checkpoint_steps(&run).contains(&format!("step-{stopped:08}")),
            "{name}: stopped after step {stopped}, checkpoints {:?}",
            checkpoint_steps(&run)
        );
        let out = stdout(tiny(&run, RESUMABLE).arg("resume=auto"));
        assert!(out.contains("trained 30 steps"), "{out}");
        assert_eq!(losses(&run), losses(&whole), "{name}: the same curve");
        assert_same_tensors(
            &run.join("model.safetensors"),
            &whole.join("model.safetensors"),
        );
        assert_eq!(json_file(run.join("meta.json"))["status"], "completed");
    }
}

/// A model whose steps take about a second here: time for a second signal mid-step.
const SLOW: &[&str] = &[
    "train.max_steps=100000",
    "train.log_every_steps=1",
    "scheduler.warmup_ratio=null",
    "eval.strategy=no",
    "model.hidden_size=768",
    "model.num_layers=6",
    "model.num_heads=12",
    "train.per_device_batch_size=16",
];

#[test]
fn a_second_signal_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut child = start(&run, SLOW);
    wait_until(&mut child, "step 1", || logged_steps(&run) >= 1);
    signal(&child, libc::SIGINT);
    // Two signals sent at once can merge into one; the second comes once the first is noted.
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, libc::SIGINT);
    let (status, err) = finish(child);
    assert_eq!(status, 130, "{err}");
    assert!(
        !err.contains("interrupted by"),
        "the second signal waited for the step boundary: {err}"
    );
    assert_eq!(
        json_file(run.join("meta.json"))["status"],
        "running",
        "it ended at once"
    );
}

#[test]
fn a_live_run_is_never_taken_over_and_a_killed_one_reads_as_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut child = start(&run, &["train.max_steps=100000", "train.log_every_steps=1"]);
    wait_until(&mut child, "step 1", || logged_steps(&run) >= 1);
    let meta = json_file(run.join("meta.json"));
    assert_eq!(meta["status"], "running");
    assert_eq!(meta["pid"], child.id());
    assert!(meta["heartbeat"].is_string(), "{meta}");
    for resume in [&["resume=auto"][..], &[]] {
        let (code, err) = failure(tiny(&run, &["train.max_steps=100000"]).args(resume));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("is being trained right now"), "{err}");
        assert!(err.contains(&format!("pid {}", child.id())), "{err}");
    }
    child.kill().unwrap(); // SIGKILL: the record still says running
    child.wait().unwrap();
    assert_eq!(json_file(run.join("meta.json"))["status"], "running");
    // … but reads as interrupted: a new run is refused as over any ended run, not a live one.
    let (code, err) = failure(&mut tiny(&run, &["train.max_steps=100000"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds a run"), "{err}");
}

#[test]
fn resume_auto_on_a_completed_run_says_so_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(&mut tiny(&run, RESUMABLE));
    let before: Vec<(String, Vec<u8>)> = ["meta.json", "summary.json", "metrics.jsonl"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(run.join(f)).unwrap()))
        .collect();
    let out = stdout(tiny(&run, RESUMABLE).arg("resume=auto"));
    assert!(out.contains("already completed"), "{out}");
    for (f, bytes) in &before {
        assert_eq!(
            &std::fs::read(run.join(f)).unwrap(),
            bytes,
            "{f} was touched"
        );
    }
}

/// Cuts a checkpoint's weights to half their length.
fn tear(checkpoint: &Path) {
    let weights = checkpoint.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

#[test]
fn a_torn_newest_checkpoint_is_passed_over_and_a_failed_resume_leaves_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    stdout(&mut tiny(&whole, RESUMABLE));
    kill_when(RESUMABLE, &killed, |run| logged_steps(run) >= 14);
    let kept = checkpoint_steps(&killed);
    let [.., previous, newest] = &kept[..] else {
        panic!("two checkpoints by step 14: {kept:?}")
    };
    tear(&killed.join("checkpoints").join(newest));
    let out = tiny(&killed, RESUMABLE)
        .arg("resume=auto")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("passed over 1 damaged checkpoint") && err.contains(newest.as_str()),
        "{err}"
    );
    assert!(
        err.contains("resuming from") && err.contains(previous.as_str()),
        "{err}"
    );
    assert_eq!(
        losses(&killed),
        losses(&whole),
        "resumed from {previous}: the same curve"
    );

    // A completed run whose newest checkpoint is damaged: `auto` leaves it alone, and a resume
    // that names the damaged checkpoint fails before the record is touched.
    let meta = std::fs::read(whole.join("meta.json")).unwrap();
    let newest = whole.join("checkpoints/step-00000030");
    assert!(newest.is_dir(), "{:?}", checkpoint_steps(&whole));
    tear(&newest);
    let out = stdout(tiny(&whole, RESUMABLE).arg("resume=auto"));
    assert!(out.contains("already completed"), "{out}");
    let (code, err) = failure(tiny(&whole, RESUMABLE).arg(format!("resume={}", newest.display())));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
    assert_eq!(
        std::fs::read(whole.join("meta.json")).unwrap(),
        meta,
        "meta.json untouched"
    );
}

#[test]
fn tensorboard_shows_each_step_once_after_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // Killed after step 14: the killed run logged steps 13 and 14 past its checkpoint.
    kill_when(RESUMABLE, &run, |run| logged_steps(run) >= 14);
    stdout(tiny(&run, RESUMABLE).arg("resume=auto"));
    let scalars = tensorboard_scalars(&run.join("logs"));
    let loss: Vec<i64> = scalars
        .iter()
        .filter(|(t, _)| t == "train/loss")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(
        loss,
        (1..=30).collect::<Vec<i64>>(),
        "each step once, in order"
    );
}

/// Whether `run` holds a file of the final weights' write: the weights or a temporary file.
fn writing_final_weights(run: &Path) -> bool {
    std::fs::read_dir(run).is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("model.safetensors")
        })
    })
}

#[test]
fn a_kill_during_the_final_weights_write_never_leaves_a_torn_file() {
    // A wider model, so that its weights (about 90 MB) take a while to write.
    let args = [
        "train.max_steps=1",
        "scheduler.warmup_ratio=null",
        "eval.strategy=no",
        "checkpoint.strategy=no",
        "logging.tensorboard=false",
        "model.hidden_size=768",
        "model.num_layers=6",
        "model.num_heads=12",
        "model.intermediate_size=768",
        "train.per_device_batch_size=2",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (i, delay_ms) in [0u64, 2, 5, 10, 20].into_iter().enumerate() {
        let run = tmp.path().join(format!("run-{i}"));
        let mut child = start(&run, &args);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !writing_final_weights(&run) {
            assert!(Instant::now() < deadline, "the run never wrote its weights");
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let weights = run.join("model.safetensors");
        if weights.exists() {
            let bytes = std::fs::read(&weights).unwrap();
            safetensors::SafeTensors::deserialize(&bytes)
                .unwrap_or_else(|e| panic!("kill {delay_ms} ms into the write left {e}"));
            outcomes.push("whole");
        } else {
            outcomes.push("absent");
        }
        // Whatever the kill left, a later export or resume never sees a torn file, and what
        // else it left is a hidden temporary file that the next run in the directory removes.
        for e in std::fs::read_dir(&run).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                name == "model.safetensors" || !name.starts_with("model.safetensors"),
                "{name}: only the whole file may carry the weights' name"
            );
            if name.contains("model.safetensors") && name != "model.safetensors" {
                assert!(
                    name.starts_with('.') && name.contains(".runner-tmp"),
                    "{name}"
                );
            }
        }
    }
    eprintln!("after the kills: {outcomes:?}");
}

#[test]
fn json_meta_of_a_completed_run_names_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(&mut tiny(
        &run,
        &[
            "train.max_steps=2",
            "eval.strategy=no",
            "checkpoint.strategy=no",
        ],
    ));
    let meta: Json = json_file(run.join("meta.json"));
    assert_eq!(meta["status"], "completed");
    assert!(meta.get("heartbeat").is_none(), "{meta}");
    assert!(meta["end_time"].is_string());
}
