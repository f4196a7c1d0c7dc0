//! Data-parallel training over libtorch's c10d (`--features tch`; Gloo on this CPU): two ranks
//! train like one process with twice the batch, resume from the same checkpoint, and a rank
//! that is killed stops the other within a minute with an error naming it. Without the
//! feature the module is left out.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// The tests here start several processes each (and two of them time how fast a failure
/// spreads): one at a time, so they do not starve each other's ranks of the two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `exp` on libtorch's CPU, logging every step, no TensorBoard, data read on the training
/// thread, with a rendezvous port of its own.
fn job_args(exp: &str, run: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        exp,
        "--quiet",
        "--output-dir",
        run.to_str().unwrap(),
        "hardware.backend=tch",
        "train.log_every_steps=1",
        "logging.tensorboard=false",
        "loader.num_workers=0",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("hardware.master_port={}", free_port()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// mnli-tiny without dropout (each rank draws its own masks, so only a dropout-free network
/// trains exactly like one process) and without evaluation unless asked.
fn mnli_args(run: &Path, extra: &[&str]) -> Vec<String> {
    let base = [
        "model.dropout=0",
        "scheduler.warmup_ratio=null",
        "eval.strategy=no",
    ];
    job_args(
        "experiments/mnli-tiny.yaml",
        run,
        &[&base[..], extra].concat(),
    )
}

fn losses(run: &Path) -> Vec<f64> {
    metrics(run)
        .iter()
        .filter_map(|r| r.get("loss")?.as_f64())
        .collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

/// Four steps of `exp` with 2 ranks × `batch` and with 1 process × 2·`batch`, evaluated at
/// the end: the two runs' directories, after checking that they logged the same losses
/// (relative 1e-5) and ended with the same weights (absolute 1e-5).
fn two_ranks_and_one(
    exp: &str,
    batch: u32,
    extra: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (two, one) = (tmp.path().join("two"), tmp.path().join("one"));
    // As in tests/tch.rs: AdamW's first updates are about lr · sign(g), so a gradient that is
    // zero but for rounding would move by lr in one run and not the other; a larger eps keeps
    // updates proportional to g, and the comparison measures the averaging.
    let common = [
        "train.max_steps=4",
        "eval.strategy=steps",
        "eval.every_steps=4",
        "eval.on_start=false",
        "checkpoint.strategy=no",
        "optimizer.eps=1e-3",
    ];
    let per_rank = format!("train.per_device_batch_size={batch}");
    let single = format!("train.per_device_batch_size={}", 2 * batch);
    let out = stdout(
        runner().args(job_args(
            exp,
            &two,
            &[
                extra,
                &common[..],
                &["hardware.nproc_per_node=2", &per_rank],
            ]
            .concat(),
        )),
    );
    assert!(out.contains("trained 4 steps"), "{out}");
    stdout(runner().args(job_args(
        exp,
        &one,
        &[extra, &common[..], &[&single]].concat(),
    )));

    let (l2, l1) = (losses(&two), losses(&one));
    assert_eq!(l2.len(), 4, "{l2:?}");
    for (a, b) in l2.iter().zip(&l1) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "{exp}: losses: 2 ranks {l2:?}, 1 process {l1:?}"
        );
    }
    let (diff, name) = largest_difference(
        &weights(&two.join("model.safetensors")),
        &weights(&one.join("model.safetensors")),
    );
    eprintln!(
        "{exp}: 2 ranks × {batch} vs 1 × {}: losses {l2:?} / {l1:?}; largest weight difference {diff} ({name})",
        2 * batch
    );
    assert!(diff <= 1e-5, "{exp}: weights differ by {diff} in {name}");
    assert_eq!(
        summary(&two)["samples"],
        summary(&one)["samples"],
        "samples count every rank's"
    );
    (tmp, two, one)
}

/// The last evaluation's `metric` of `set`, in both runs.
fn eval_pair(two: &Path, one: &Path, set: &str, metric: &str) -> (f64, f64) {
    let get = |run: &Path| {
        summary(run)["eval"][set][metric]
            .as_f64()
            .unwrap_or_else(|| panic!("no {set}.{metric}"))
    };
    (get(two), get(one))
}

#[test]
fn two_ranks_train_like_one_process_with_twice_the_batch() {
    let _serial = serial();
    let (tmp, two, one) = two_ranks_and_one(
        "experiments/mnli-tiny.yaml",
        4,
        &["model.dropout=0", "scheduler.warmup_ratio=null"],
    );
    // Evaluation is summed over both ranks' halves: the same metrics as one process.
    for set in ["dev_matched", "dev_mismatched"] {
        for metric in ["accuracy", "macro_f1"] {
            let (a, b) = eval_pair(&two, &one, set, metric);
            assert_eq!(a, b, "{set} {metric}");
        }
        let (a, b) = eval_pair(&two, &one, set, "loss");
        assert!((a - b).abs() <= 1e-5 * b, "{set}: eval loss {a} vs {b}");
    }

    // Rank 0 alone wrote the run directory; rank 1 only its log.
    let entries: Vec<String> = std::fs::read_dir(&two)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in [
        "config.resolved.yaml",
        "meta.json",
        "metrics.jsonl",
        "summary.json",
        "model.safetensors",
        "ranks",
    ] {
        assert!(
            entries.iter().any(|e| e == f),
            "{f} missing from {entries:?}"
        );
    }
    let ranks: Vec<String> = std::fs::read_dir(two.join("ranks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ranks, ["rank-1.log"]);
    let log = std::fs::read_to_string(two.join("ranks/rank-1.log")).unwrap();
    assert!(
        log.contains("rank 1 on ") && log.contains("(of 2 ranks)"),
        "{log}"
    );
    assert!(
        log.contains("3000 training examples"),
        "lines from before the directory existed: {log}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "no other run directory appeared"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "completed");
}

#[test]
fn mae_trains_data_parallel_like_one_process() {
    let _serial = serial();
    // Masks and crops come from (seed, epoch, example): the same whichever rank draws them.
    let (_tmp, two, one) = two_ranks_and_one(
        "experiments/mae-tiny.yaml",
        16,
        &["scheduler.warmup_steps=null"],
    );
    let (a, b) = eval_pair(&two, &one, "held_out", "loss");
    assert!((a - b).abs() <= 1e-5 * b, "held-out loss {a} vs {b}");
    assert!(
        two.join("samples/step-00000004.png").is_file(),
        "rank 0 drew the grid"
    );
}

#[test]
fn causal_vae_trains_data_parallel_like_one_process() {
    let _serial = serial();
    // The posterior noise comes from (seed, epoch, clip). The one held-out clip is rank 1's
    // part of the evaluation; rank 0 still draws it for the preview.
    let (_tmp, two, one) = two_ranks_and_one(
        "experiments/causalvae-tiny.yaml",
        1,
        &["scheduler.warmup_steps=null"],
    );
    for metric in ["psnr", "l1", "kl"] {
        let (a, b) = eval_pair(&two, &one, "held_out", metric);
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "held-out {metric} {a} vs {b}"
        );
    }
    for f in ["samples/step-00000004.gif", "samples/step-00000004.png"] {
        assert!(two.join(f).is_file(), "{f}");
    }
}

#[test]
fn two_ranks_resume_from_the_same_checkpoint_and_repeat_the_curve() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (full, cut) = (tmp.path().join("full"), tmp.path().join("cut"));
    let args = [
        "hardware.nproc_per_node=2",
        "train.per_device_batch_size=4",
        "train.max_steps=6",
        "checkpoint.strategy=steps",
        "checkpoint.every_steps=3",
        "checkpoint.keep_last=2",
    ];
    stdout(runner().args(mnli_args(&full, &args)));
    stdout(runner().args(mnli_args(&cut, &args)));
    // As if killed after step 3: the later checkpoint and the final files gone, the record
    // still `running` (its process is gone, so it reads as interrupted).
    std::fs::remove_dir_all(cut.join("checkpoints/step-00000006")).unwrap();
    std::fs::remove_file(cut.join("model.safetensors")).unwrap();
    std::fs::remove_file(cut.join("summary.json")).unwrap();
    let meta = std::fs::read_to_string(cut.join("meta.json")).unwrap();
    std::fs::write(
        cut.join("meta.json"),
        meta.replace("\"completed\"", "\"running\""),
    )
    .unwrap();
    stdout(runner().args(mnli_args(&cut, &[&args[..], &["resume=auto"]].concat())));
    assert_eq!(
        summary(&cut)["resumed_from"]
            .as_str()
            .map(|s| s.ends_with("step-00000003")),
        Some(true)
    );
    assert_eq!(
        losses(&cut),
        losses(&full),
        "the resumed curve is the uninterrupted one"
    );
    let (diff, name) = largest_difference(
        &weights(&full.join("model.safetensors")),
        &weights(&cut.join("model.safetensors")),
    );
    assert_eq!(diff, 0.0, "weights differ in {name}");
}

/// Starts one rank of a two-rank run the way torchrun does (the contract in the environment).
fn rank(run: &Path, rank: usize, port: u16) -> Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(repo())
        .args(mnli_args(
            run,
            &[
                "hardware.nproc_per_node=2",
                "train.max_steps=100000",
                "train.per_device_batch_size=4",
            ],
        ))
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("LOCAL_WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
        cmd.env_remove(k);
    }
    cmd.spawn().unwrap()
}

/// Waits until `run`'s metrics show a few training steps (the ranks are past the rendezvous).
fn wait_for_training(run: &Path, children: &mut [&mut Child]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps = std::fs::read_to_string(run.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if steps >= 3 {
            return;
        }
        for c in children.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("a rank ended before training got going ({status}): {err}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "training did not start within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits at most `limit` for `child`; its stderr and how long it took.
fn exit_within(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status, err, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "still running {}s after the other rank was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_rank_stops_the_other_with_an_error_naming_it() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let port = free_port();
    let mut r0 = rank(&run, 0, port);
    let mut r1 = rank(&run, 1, port);
    wait_for_training(&run, &mut [&mut r0, &mut r1]);
    r1.kill().unwrap();
    r1.wait().unwrap();
    let (status, err, took) = exit_within(&mut r0, Duration::from_secs(60));
    eprintln!("rank 0 exited {took:?} after rank 1 was killed: {status}\n{err}");
    assert!(!status.success());
    let host = gethostname();
    assert!(err.contains(&format!("rank 1 on {host}")), "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert!(
        meta["error"].as_str().unwrap().contains("rank 1 on"),
        "{meta}"
    );
}

#[test]
fn runners_own_launcher_names_a_killed_worker_and_stops_the_rest() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (mut launcher, workers) = launch_two(&run);
    signal(workers[1], "KILL");
    let (status, err, took) = exit_within(&mut launcher, Duration::from_secs(60));
    eprintln!("the launcher exited {took:?} after rank 1 was killed: {status}\n{err}");
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "rank 1 (pid {}) on {} was killed by signal 9",
            workers[1],
            gethostname()
        )),
        "{err}"
    );
    assert!(gone(workers[0]), "rank 0 stopped too");
}

#[test]
fn interrupting_the_launcher_stops_every_worker() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (mut launcher, workers) = launch_two(&run);
    // As Ctrl-C would, but to the launcher alone: it passes the signal on.
    signal(launcher.id() as i32, "INT");
    let (status, err, took) = exit_within(&mut launcher, Duration::from_secs(30));
    eprintln!("the launcher exited {took:?} after SIGINT: {status}\n{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(workers.iter().all(|&w| gone(w)), "every worker stopped");
}

/// runner's own launcher training mnli-tiny with two workers, once training is under way; the
/// workers' pids in rank order (it starts rank 0 first).
fn launch_two(run: &Path) -> (Child, Vec<i32>) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(repo())
        .args(mnli_args(
            run,
            &[
                "hardware.nproc_per_node=2",
                "train.max_steps=100000",
                "train.per_device_batch_size=4",
            ],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
        cmd.env_remove(k);
    }
    let mut launcher = cmd.spawn().unwrap();
    wait_for_training(run, &mut [&mut launcher]);
    let pid = launcher.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let workers: Vec<i32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "{children}");
    (launcher, workers)
}

fn signal(pid: i32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The process has ended (and been reaped, or is a zombie waiting to be).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
