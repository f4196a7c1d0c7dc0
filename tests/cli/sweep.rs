//! `runner sweep` and `runner runs` through the real binary on `mnli-tiny`: a 2 × 2 grid × 2
//! seeds gives 8 run directories and a table of 8 completed cells; a sweep killed midway and
//! run again re-runs no completed cell and finishes the rest; a cell trains as it would alone;
//! a bad sweep or a bad cell fails before anything runs.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

use crate::common::*;
use crate::train::{json_file, losses};

/// An experiment building on mnli-tiny with `sweep` (YAML, indented under `sweep:`).
fn experiment(dir: &Path, extra: &str, sweep: &str) -> PathBuf {
    let base = repo().join("experiments/mnli-tiny.yaml");
    write(
        dir,
        "sweep.yaml",
        &format!(
            "name: tiny-sweep\nextends: {}\ntrain: {{max_steps: 6, log_every_steps: 1}}\n\
             eval: {{strategy: steps, every_steps: 6}}\ncheckpoint: {{strategy: steps, every_steps: 2}}\n\
             loader: {{num_workers: 0}}\n{extra}sweep:\n{sweep}",
            base.display()
        ),
    )
}

const GRID: &str = "  grid:\n    optimizer.lr: [3.0e-4, 1.0e-3]\n    train.per_device_batch_size: [8, 16]\n  seeds: [1, 2]\n";

fn completed(sweep_dir: &Path) -> Vec<PathBuf> {
    let mut done: Vec<PathBuf> = std::fs::read_dir(sweep_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    done.retain(|p| p.join("summary.json").is_file());
    done.sort();
    done
}

/// Each completed cell's summary.json and meta.json: bytes and modification time.
fn fingerprints(cells: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    cells
        .iter()
        .flat_map(|c| ["summary.json", "meta.json", "model.safetensors"].map(|f| c.join(f)))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, bytes, modified)
        })
        .collect()
}

#[test]
fn a_grid_sweep_killed_midway_finishes_without_rerunning_its_completed_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), "", GRID);
    let dir = tmp.path().join("out");

    // Sequential, killed outright (SIGKILL) once three cells are done: the cell then running
    // gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops at a step boundary.
    let mut sweep = StdCommand::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(repo())
        .arg("sweep")
        .arg(&exp)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--set", "train.max_steps=12"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while completed(&dir).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the sweep never completed three cells"
        );
        assert!(
            sweep.try_wait().unwrap().is_none(),
            "the sweep ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    let before = completed(&dir);
    assert!(before.len() < 8, "killed midway: {before:?}");
    let untouched = fingerprints(&before);
    // The cell that was running when the sweep died stops on its own.
    std::thread::sleep(Duration::from_millis(1500));

    let out = stdout(
        runner()
            .arg("sweep")
            .arg(&exp)
            .arg("--output-dir")
            .arg(&dir)
            .args(["--set", "train.max_steps=12", "--parallel", "2"]),
    );
    assert!(out.contains("8 of 8 cells completed"), "{out}");
    assert_eq!(
        fingerprints(&before),
        untouched,
        "completed cells were not re-run"
    );
    assert_eq!(completed(&dir).len(), 8);
    for f in ["sweep.yaml", "cells.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let index = json_file(dir.join("cells.json"));
    assert_eq!(index.as_array().unwrap().len(), 8);
    assert!(
        dir.join("lr=3e-4,bs=8,seed=1").is_dir(),
        "cells are named by their values"
    );

    // The table: 8 completed cells, with the swept keys as columns (and only those).
    let table: Json = serde_json::from_str(&stdout(
        runner().arg("runs").arg(&dir).args(["--format", "json"]),
    ))
    .unwrap();
    let rows = table.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{table}");
    for r in rows {
        assert_eq!(r["status"], "completed", "{r}");
        let keys: Vec<&String> = r["config"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["optimizer.lr", "seed", "train.per_device_batch_size"],
            "{r}"
        );
        assert_eq!(r["steps"], 12);
        assert!(
            r["final_loss"].as_f64().is_some() && r["cell"].is_string(),
            "{r}"
        );
    }
    assert_eq!(
        rows.iter().filter(|r| r["best"] == true).count(),
        1,
        "one best cell"
    );
    let csv = stdout(runner().arg("runs").arg(&dir).args(["--format", "csv"]));
    assert_eq!(csv.lines().count(), 9, "{csv}");
    let text = stdout(
        runner()
            .arg("runs")
            .arg(&dir)
            .args(["--sort", "final_loss"]),
    );
    assert!(
        text.contains("optimizer.lr") && text.contains(" * "),
        "{text}"
    );

    // The curves of the 8 cells in one PNG; a curve no run has is named with the ones they have.
    let png = tmp.path().join("curves.png");
    let said = stdout(runner().arg("plot").arg(&dir).arg("-o").arg(&png));
    assert!(said.contains("8 curves of loss"), "{said}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let (code, err) = failure(
        runner()
            .arg("plot")
            .arg(&dir)
            .args(["--metric", "dev_matched.acc"]),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("did you mean `dev_matched.accuracy`?"),
        "{err}"
    );

    // A cell trains in a sweep (2 at a time, one thread each) as it does alone.
    let cell = dir.join("lr=1e-3,bs=16,seed=2");
    let alone = tmp.path().join("alone");
    stdout(
        runner()
            .args(["--quiet", "run"])
            .arg(cell.join("config.resolved.yaml"))
            .arg("--output-dir")
            .arg(&alone),
    );
    assert_eq!(losses(&cell), losses(&alone));
    assert_eq!(
        json_file(cell.join("meta.json"))["sweep_cell"]["name"],
        "lr=1e-3,bs=16,seed=2"
    );

    // The same sweep once more: nothing to run. Changing the base changes every cell's
    // configuration: each is reported and none overwritten.
    let out = stdout(
        runner()
            .arg("sweep")
            .arg(&exp)
            .arg("--output-dir")
            .arg(&dir)
            .args(["--set", "train.max_steps=12"]),
    );
    assert!(out.contains("(0 now, 8 before)"), "{out}");
    let everything = fingerprints(&completed(&dir));
    let (code, err) = failure(
        runner()
            .arg("sweep")
            .arg(&exp)
            .arg("--output-dir")
            .arg(&dir)
            .args([
                "--set",
                "train.max_steps=12",
                "--set",
                "optimizer.weight_decay=0.5",
            ]),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("holds a run of another configuration"),
        "{err}"
    );
    assert_eq!(fingerprints(&completed(&dir)), everything);
}

#[test]
fn a_bad_sweep_or_a_bad_cell_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let check = |sweep: &str, wanted: &[&str]| {
        let exp = experiment(tmp.path(), "", sweep);
        for cmd in ["sweep", "validate"] {
            let (code, err) = failure(runner().arg(cmd).arg(&exp).arg("--output-dir").arg(&out));
            assert_eq!(code, 2, "{cmd}: {err}");
            for w in wanted {
                assert!(err.contains(w), "{cmd}: wanted {w:?} in\n{err}");
            }
        }
        assert!(!out.exists(), "nothing was written");
    };
    check(
        "  zip:\n    - model.arch: [bert-tiny, bert-mini]\n      train.per_device_batch_size: [32, 16, 8]\n",
        &[
            "different lengths",
            "`model.arch` 2",
            "`train.per_device_batch_size` 3",
            "sweep.yaml:",
        ],
    );
    check(
        "  grid:\n    optimizer.lr: [1.0e-3, -1.0]\n",
        &["cell 1 `lr=-1`", "optimizer.lr", "1 of the 2 cells"],
    );
    check(
        "  grid:\n    optimizer.lrr: [1.0e-3]\n",
        &["`optimizer.lrr`", "did you mean `optimizer.lr`?"],
    );
    check(
        "  grid:\n    seed: [1, 2]\n  seeds: [3]\n",
        &["`seed` is on two axes"],
    );
    check(
        "  grid:\n    output_dir: [a, b]\n",
        &["`output_dir` cannot be swept"],
    );

    // `run` names `runner sweep`; `-m` and an override of a swept key conflict.
    let exp = experiment(tmp.path(), "", GRID);
    let (code, err) = failure(runner().arg("run").arg(&exp).arg("--output-dir").arg(&out));
    assert_eq!(code, 2);
    assert!(err.contains("runner sweep"), "{err}");
    let (code, err) = failure(
        runner()
            .args(["sweep", "--dry-run"])
            .arg(&exp)
            .arg("optimizer.lr=0.1"),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("is swept and also set by the command line"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn dry_run_lists_the_cells_and_multirun_replaces_an_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), "", GRID);
    let out = tmp.path().join("out");
    let text = stdout(
        runner()
            .args(["sweep", "--dry-run"])
            .arg(&exp)
            .arg("--output-dir")
            .arg(&out),
    );
    assert!(text.contains("8 cells in"), "{text}");
    assert!(
        text.contains("lr=1e-3,bs=16,seed=2") && text.contains("global batch"),
        "{text}"
    );
    // `-m` replaces the file's axis and adds new ones; logspace makes readable values.
    let text = stdout(
        runner()
            .args(["sweep", "--dry-run"])
            .arg(&exp)
            .arg("--output-dir")
            .arg(&out)
            .args([
                "-m",
                "optimizer.lr=0.1,0.2,0.3",
                "-m",
                "optimizer.weight_decay=0,0.1",
            ]),
    );
    assert!(text.contains("24 cells in"), "{text}");
    // `validate` and `show` check every cell and say so.
    let ok = stdout(runner().arg("validate").arg(&exp));
    assert!(ok.contains("sweep of 8 cells"), "{ok}");
    let (code, err) = failure(runner().arg("show").arg(&exp));
    assert_eq!(code, 0);
    assert!(err.contains("sweep of 8 cells"), "{err}");
    let logspace = experiment(
        tmp.path(),
        "",
        "  grid:\n    optimizer.lr: {logspace: [1.0e-5, 1.0e-3, 3]}\n  repeat: 2\n",
    );
    let text = stdout(
        runner()
            .args(["sweep", "--dry-run"])
            .arg(&logspace)
            .arg("--output-dir")
            .arg(&out),
    );
    for name in ["lr=1e-5,seed=42", "lr=1e-4,seed=43", "lr=1e-3,seed=42"] {
        assert!(text.contains(name), "{name} in\n{text}");
    }
    assert!(!out.exists(), "a dry run writes nothing");
}

#[test]
fn a_failed_cell_leaves_the_others_running_and_ctrl_c_stops_every_cell() {
    let tmp = tempfile::tempdir().unwrap();
    // A batch larger than the training set fails once the data is read (exit 1), not before.
    let exp = experiment(
        tmp.path(),
        "",
        "  grid:\n    train.per_device_batch_size: [8, 100000]\n",
    );
    let dir = tmp.path().join("failing");
    let (code, err) = failure(
        runner()
            .arg("sweep")
            .arg(&exp)
            .arg("--output-dir")
            .arg(&dir),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: cell `bs=100000` failed"), "{err}");
    assert!(
        err.contains("fewer than one batch"),
        "the cell's error: {err}"
    );
    assert!(
        dir.join("bs=8/summary.json").is_file(),
        "the other cell completed"
    );

    // Ctrl-C (SIGINT to the sweep alone) stops both running cells at a step boundary.
    let dir = tmp.path().join("stopped");
    let mut sweep = StdCommand::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(repo())
        .arg("sweep")
        .arg(&exp)
        .arg("--output-dir")
        .arg(&dir)
        .args(["--parallel", "2", "-m", "train.per_device_batch_size=8,16"])
        .args(["--set", "train.max_steps=400"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let training = |cell: &str| {
        std::fs::read_to_string(dir.join(cell).join("metrics.jsonl"))
            .is_ok_and(|m| m.lines().count() >= 2)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(training("bs=8") && training("bs=16")) {
        assert!(
            Instant::now() < deadline,
            "the cells never started training"
        );
        assert!(sweep.try_wait().unwrap().is_none(), "the sweep ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(sweep.id() as i32, libc::SIGINT) }, 0);
    let out = sweep.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    for cell in ["bs=8", "bs=16"] {
        let meta = json_file(dir.join(cell).join("meta.json"));
        assert_eq!(meta["status"], "interrupted", "{cell}: {meta}");
        assert_eq!(meta["signal"], "SIGINT");
    }
}
