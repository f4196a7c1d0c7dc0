//! Files that build on each other (`extends`), through the real binary: a three-level chain
//! mixing YAML and TOML, where each value comes from and how it was reached, cycles and
//! missing bases named with the whole chain, and a run directory that stands alone.

use std::path::Path;

use crate::common::*;

/// top.yaml → mid.toml → base.yaml (partial: no name, no job in the bases).
fn three_levels(dir: &Path) {
    std::fs::create_dir_all(dir.join("bases/deep")).unwrap();
    write(
        &dir.join("bases/deep"),
        "base.yaml",
        "job: mae\ndata:\n  path: images\noptimizer:\n  lr: 1.0e-3\n  weight_decay: 0.01\ntrain:\n  epochs: 5\n  log_every_steps: 7\n",
    );
    write(
        &dir.join("bases"),
        "mid.toml",
        "extends = \"deep/base.yaml\"\n[train]\nepochs = 6\n[optimizer]\nbetas = [0.9, 0.95]\n",
    );
    write(
        dir,
        "top.yaml",
        "name: chain\nextends: [bases/mid.toml]\ntrain:\n  epochs: 9\n",
    );
}

#[test]
fn a_three_level_chain_merges_lowest_first_and_says_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    three_levels(dir.path());
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "top.yaml"]));
    assert_eq!(config["job"], "mae");
    assert_eq!(config["train"]["epochs"], 9);
    assert_eq!(config["train"]["log_every_steps"], 7);
    assert_eq!(config["optimizer"]["betas"], serde_json::json!([0.9, 0.95]));
    assert!(
        config.get("extends").is_none(),
        "the result has no `extends`"
    );
    assert_eq!(sources["train.epochs"], "top.yaml:4:3");
    assert_eq!(
        sources["optimizer.betas"],
        "bases/mid.toml:5:1, via top.yaml"
    );
    assert_eq!(
        sources["train.log_every_steps"],
        "bases/deep/base.yaml:9:3, via top.yaml → bases/mid.toml"
    );
    // A command-line override still wins over every file.
    let (config, _) = explain(runner_in(dir.path()).args(["show", "top.yaml", "train.epochs=1"]));
    assert_eq!(config["train"]["epochs"], 1);
    // A problem with a value set in a base points into the base, naming the way there.
    write(
        &dir.path().join("bases/deep"),
        "base.yaml",
        "job: mae\ndata:\n  path: images\noptimizer:\n  lr: fast\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "top.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "--> bases/deep/base.yaml:5:3, via top.yaml → bases/mid.toml (key `optimizer.lr`)"
        ),
        "{err}"
    );
    insta::assert_snapshot!("a_value_in_a_base", err);
}

#[test]
fn cycles_and_missing_bases_name_the_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    three_levels(dir.path());
    write(
        &dir.path().join("bases/deep"),
        "base.yaml",
        "extends: ../../top.yaml\njob: mae\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "top.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "`extends` makes a cycle: top.yaml:2:11 extends bases/mid.toml, bases/mid.toml:1:1 \
             extends deep/base.yaml, bases/deep/base.yaml:1:1 extends ../../top.yaml"
        ),
        "{err}"
    );
    write(
        &dir.path().join("bases/deep"),
        "base.yaml",
        "extends: [gone.yaml]\njob: mae\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "top.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("base file `bases/deep/gone.yaml` does not exist (top.yaml:2:11 extends bases/mid.toml, bases/mid.toml:1:1 extends deep/base.yaml, bases/deep/base.yaml:1:11 extends gone.yaml)"),
        "{err}"
    );
    insta::assert_snapshot!("a_missing_base", err);
    write(dir.path(), "bad.yaml", "name: t\nextends: {a: 1}\n");
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "bad.yaml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("`extends` must be a file path or a list of them"),
        "{err}"
    );
}

#[test]
fn a_run_directory_stands_alone_and_records_every_file_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    three_levels(dir.path());
    std::fs::create_dir(dir.path().join("images")).unwrap();
    stdout(runner_in(dir.path()).args(["run", "top.yaml", "--dry-run"]));
    let run = dir.path().join("runs/chain");
    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    assert!(!resolved.contains("extends"), "{resolved}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    let sources: Vec<(String, String)> = meta["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().into(),
                s["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    let root = dir.path().canonicalize().unwrap();
    let here = |p: &str| root.join(p).display().to_string();
    let sources: Vec<(String, String)> = sources
        .into_iter()
        .map(|(p, r)| {
            (
                std::path::Path::new(&p)
                    .canonicalize()
                    .unwrap()
                    .display()
                    .to_string(),
                r,
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            (here("bases/deep/base.yaml"), "base".to_string()),
            (here("bases/mid.toml"), "base".into()),
            (here("top.yaml"), "experiment".into()),
        ]
    );
    for s in meta["sources"].as_array().unwrap() {
        assert_eq!(s["sha256"].as_str().unwrap().len(), 64, "{s}");
    }
    let provenance = std::fs::read_to_string(run.join("provenance.yaml")).unwrap();
    assert!(
        provenance.contains("bases/mid.toml sha256:"),
        "{provenance}"
    );
    assert!(
        provenance.contains("# base /"),
        "absolute paths: {provenance}"
    );
    // The recorded configuration resolves alone, without the bases.
    std::fs::remove_dir_all(dir.path().join("bases")).unwrap();
    stdout(runner_in(dir.path()).args(["validate", "runs/chain/config.resolved.yaml"]));
}

#[test]
fn the_shipped_experiments_extend_a_base_per_job_family() {
    for (experiment, base) in [
        ("experiments/mnli.yaml", "base/mnli.yaml"),
        ("experiments/mnli.toml", "base/mnli.yaml"),
        ("experiments/mnli-tiny.yaml", "base/mnli.yaml"),
        ("experiments/mae.yaml", "base/mae.yaml"),
        ("experiments/mae-tiny.yaml", "base/mae.yaml"),
        ("experiments/causalvae.yaml", "base/causalvae.yaml"),
        ("experiments/causalvae-tiny.yaml", "base/causalvae.yaml"),
    ] {
        let (_, sources) = explain(runner().args(["show", experiment]));
        let text = std::fs::read_to_string(repo().join("experiments").join(base)).unwrap();
        let line = text.lines().position(|l| l.starts_with("job:")).unwrap() + 1;
        assert_eq!(
            sources["job"],
            format!("experiments/{base}:{line}:1, via {experiment}"),
            "{experiment}"
        );
    }
}
