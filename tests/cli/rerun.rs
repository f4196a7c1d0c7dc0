//! The run record and `runner rerun`, through the real binary on `mnli-tiny`: a rerun on the
//! same binary and data repeats the loss curve bit for bit; a changed data file, a changed
//! dirty patch and another runner build are each reported, and stop the rerun unless
//! `--allow-drift`.

use std::path::Path;
use std::process::Command as StdCommand;

use serde_json::Value as Json;

use crate::common::*;
use crate::train::{json_file, losses, tiny};

const SHORT: &[&str] = &[
    "train.max_steps=6",
    "train.log_every_steps=1",
    "eval.strategy=no",
];

fn check(run: &Path) -> (i32, String) {
    failure(runner().arg("rerun").arg(run).arg("--check"))
}

#[test]
fn a_rerun_repeats_the_curve_and_the_record_says_what_it_read() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(&mut tiny(&run, SHORT));
    let record = json_file(run.join("record.json"));
    let keys: Vec<&str> = record["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "data.train_file",
            "data.validation_files.0",
            "data.validation_files.1",
            "data.tokenizer"
        ]
    );
    assert_eq!(record["build"]["burn_version"], "0.22.1");
    assert!(record["code"]["commit"].is_string(), "{record}");

    let (code, err) = check(&run);
    assert_eq!(code, 0, "{err}");
    let again = tmp.path().join("again");
    stdout(
        runner()
            .args(["--quiet", "rerun"])
            .arg(&run)
            .arg("--output-dir")
            .arg(&again),
    );
    assert_eq!(losses(&run), losses(&again), "bit for bit");
    assert!(!again.join("drift.json").exists());

    // `show --explain` and `diff` carry the record.
    let shown: Json = serde_json::from_str(&stdout(runner().arg("show").arg(&run).args([
        "--explain",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(shown["record"]["build"], record["build"]);
    let yaml = stdout(runner().arg("show").arg(&run).arg("--explain"));
    assert!(
        yaml.contains("# record.data[data.train_file].xxh3:"),
        "{yaml}"
    );

    // Another build of runner (its recorded build id edited) is drift.
    let mut edited: Json = record.clone();
    edited["build"]["runner_commit"] = "0000000-another-build".into();
    std::fs::write(
        run.join("record.json"),
        serde_json::to_vec(&edited).unwrap(),
    )
    .unwrap();
    let (code, err) = check(&run);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("runner build commit") && err.contains("0000000-another-build"),
        "{err}"
    );
    let (code, err) = failure(
        runner()
            .arg("rerun")
            .arg(&run)
            .arg("--output-dir")
            .arg(tmp.path().join("no")),
    );
    assert_eq!(code, 1);
    assert!(err.contains("--allow-drift"), "{err}");
    assert!(!tmp.path().join("no").exists(), "nothing was run");
}

#[test]
fn changed_data_is_drift_and_a_new_mtime_alone_is_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.tsv");
    std::fs::copy(repo().join("data/mnli-tiny/train.tsv"), &train).unwrap();
    let run = tmp.path().join("run");
    let set = format!("data.train_file={}", train.display());
    let mut args = SHORT.to_vec();
    args.push(&set);
    stdout(&mut tiny(&run, &args));

    // The same bytes written again: a new mtime, the same content.
    let bytes = std::fs::read(&train).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&train, &bytes).unwrap();
    let (code, err) = check(&run);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("note: data") && err.contains("same content"),
        "{err}"
    );

    // One more (valid) row: the last one again.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let last = text.lines().last().unwrap();
    let changed = format!("{text}{last}\n").into_bytes();
    std::fs::write(&train, &changed).unwrap();
    let (code, err) = check(&run);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("drift: data") && err.contains("train.tsv (data.train_file)"),
        "{err}"
    );

    // --allow-drift reruns and records what differed.
    let again = tmp.path().join("again");
    stdout(
        runner()
            .args(["--quiet", "rerun"])
            .arg(&run)
            .arg("--allow-drift")
            .arg("--output-dir")
            .arg(&again),
    );
    let drift = json_file(again.join("drift.json"));
    assert_eq!(drift["differences"][0]["section"], "data", "{drift}");
}

#[test]
fn the_dirty_patch_is_kept_and_a_changed_one_is_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let git = |args: &[&str]| {
        let out = StdCommand::new("git")
            .arg("-C")
            .arg(&work)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    let exp = work.join("exp.yaml");
    let text = format!(
        "name: dirty\nextends: {}\n",
        repo().join("experiments/mnli-tiny.yaml").display()
    );
    std::fs::write(&exp, &text).unwrap();
    git(&["add", "exp.yaml"]);
    git(&["commit", "-q", "-m", "exp"]);
    std::fs::write(&exp, format!("{text}# an uncommitted note\n")).unwrap();
    std::fs::write(work.join("notes.txt"), "untracked beside the experiment\n").unwrap();

    let run = tmp.path().join("run");
    stdout(
        runner()
            .args(["--quiet", "run"])
            .arg(&exp)
            .arg("--output-dir")
            .arg(&run)
            .args(SHORT),
    );
    let record = json_file(run.join("record.json"));
    assert_eq!(record["code"]["dirty"], true, "{record}");
    let patch = std::fs::read_to_string(run.join("code/git.patch")).unwrap();
    assert!(patch.contains("+# an uncommitted note"), "{patch}");
    assert_eq!(
        std::fs::read_to_string(run.join("code/untracked/notes.txt")).unwrap(),
        "untracked beside the experiment\n"
    );
    let (code, err) = check(&run);
    assert_eq!(code, 0, "{err}");

    std::fs::write(&exp, format!("{text}# another note\n")).unwrap();
    let (code, err) = check(&run);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("drift: code: uncommitted changes"), "{err}");
    let (_, err) = failure(runner().arg("rerun").arg(&run));
    assert!(
        err.contains("git -C") && err.contains("apply"),
        "restore commands: {err}"
    );
}
