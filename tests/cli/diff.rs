//! `runner diff` and `runner show RUN_DIR` through the real binary: between two files, a file
//! and a run directory (a base changed since the run), two runs; exit codes as `diff`'s.

use std::path::Path;

use crate::common::*;

fn diff_json(dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = runner_in(dir)
        .arg("diff")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, json)
}

fn keys(json: &serde_json::Value) -> Vec<String> {
    json["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_string())
        .collect()
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir(dir.join("images")).unwrap();
    write(
        &dir.join("base"),
        "mae.yaml",
        "job: mae\ndata:\n  path: images\noptimizer:\n  lr: 1.0e-3\ntrain:\n  epochs: 4\n",
    );
    write(dir, "a.yaml", "name: a\nextends: base/mae.yaml\n");
    write(
        dir,
        "b.toml",
        "name = \"a\"\nextends = \"base/mae.yaml\"\n[train]\nper_device_batch_size = 16\n",
    );
}

#[test]
fn two_files_differ_in_their_values_and_derived_ones() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (code, json) = diff_json(dir.path(), &["a.yaml", "b.toml"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(
        keys(&json),
        [
            "derived.eval_per_device_batch_size",
            "derived.global_batch_size",
            "train.per_device_batch_size"
        ]
    );
    let d = &json["differences"][2];
    assert_eq!(d["a"]["value"], 8);
    assert_eq!(d["a"]["origin"], "default");
    assert_eq!(d["b"]["value"], 16);
    assert_eq!(d["b"]["origin"], "b.toml:4:1");
    // Overrides for one side, or both.
    let (code, _) = diff_json(
        dir.path(),
        &[
            "a.yaml",
            "b.toml",
            "--a-set",
            "train.per_device_batch_size=16",
        ],
    );
    assert_eq!(code, 0);
    let (code, json) = diff_json(dir.path(), &["a.yaml", "a.yaml", "train.epochs=9"]);
    assert_eq!((code, json["same"].clone()), (0, serde_json::json!(true)));
    // The text form names both values and their origins.
    let out = runner_in(dir.path())
        .args(["diff", "a.yaml", "b.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("train.per_device_batch_size: 8 → 16\n    a: default\n    b: b.toml:4:1"),
        "{text}"
    );
    assert!(text.ends_with("3 keys differ\n"), "{text}");
    // A configuration error is exit 2, as for diff.
    write(
        dir.path(),
        "bad.yaml",
        "name: a\nextends: base/mae.yaml\ntrain: {epochs: zero}\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["diff", "a.yaml", "bad.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`train.epochs` must be an integer"), "{err}");
}

#[test]
fn a_run_directory_against_todays_files_shows_a_changed_base() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    stdout(runner_in(dir.path()).args(["run", "a.yaml", "--dry-run", "--output-dir", "runs/one"]));
    stdout(runner_in(dir.path()).args(["run", "b.toml", "--dry-run", "--output-dir", "runs/two"]));
    // Right after the run: the same, once output_dir is the run's.
    let (code, json) = diff_json(
        dir.path(),
        &["runs/one", "a.yaml", "--b-set", "output_dir=runs/one"],
    );
    assert_eq!(code, 0, "{json}");
    // The base changes later: the run keeps what it was, and the diff says so.
    write(
        &dir.path().join("base"),
        "mae.yaml",
        "job: mae\ndata:\n  path: images\noptimizer:\n  lr: 2.0e-3\ntrain:\n  epochs: 4\n",
    );
    let (code, json) = diff_json(
        dir.path(),
        &["runs/one", "a.yaml", "--b-set", "output_dir=runs/one"],
    );
    assert_eq!(code, 1, "{json}");
    assert_eq!(keys(&json), ["derived.lr", "optimizer.lr"]);
    let lr = &json["differences"][1];
    assert_eq!(lr["a"]["value"], 0.001);
    assert_eq!(
        lr["a"]["origin"],
        "base/mae.yaml:5:3, via a.yaml (recorded)"
    );
    assert_eq!(lr["b"]["origin"], "base/mae.yaml:5:3, via a.yaml");
    let changed = json["changed_files"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{json}");
    assert!(
        changed[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("base/mae.yaml")
    );
    // Two runs.
    let (code, json) = diff_json(dir.path(), &["runs/one", "runs/two"]);
    assert_eq!(code, 1);
    assert!(
        keys(&json).contains(&"train.per_device_batch_size".to_string()),
        "{json}"
    );
    assert!(keys(&json).contains(&"output_dir".to_string()), "{json}");
}

#[test]
fn show_of_a_run_directory_prints_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    stdout(runner_in(dir.path()).args(["run", "a.yaml", "--dry-run", "--set", "train.epochs=2"]));
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "runs/a"]));
    assert_eq!(config["train"]["epochs"], 2);
    assert_eq!(
        sources["train.epochs"],
        "command line --set train.epochs=2 (recorded)"
    );
    assert_eq!(
        sources["optimizer.lr"],
        "base/mae.yaml:5:3, via a.yaml (recorded)"
    );
    // The recorded configuration, whatever today's files say.
    std::fs::remove_dir_all(dir.path().join("base")).unwrap();
    let yaml = stdout(runner_in(dir.path()).args(["show", "runs/a"]));
    assert!(yaml.contains("epochs: 2"), "{yaml}");
}
