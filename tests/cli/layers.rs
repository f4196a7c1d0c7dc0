//! Layer precedence, driven through the real binary: defaults < profiles < experiment file
//! < RUNNER_* environment < command line, for every pair of layers, and `--explain`
//! naming each source.

use crate::common::*;

const KEY: &str = "train.log_every_steps";

/// Every subset of {profile, file, env, cli} setting the same key: the highest present wins,
/// and `--explain` names it. Covers every pair of layers (and the default below them).
#[test]
fn each_layer_overrides_the_ones_below() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.toml",
        "description = \"test profile\"\n[train]\nlog_every_steps = 11\n",
    );
    for mask in 0u8..16 {
        let (profile, file, env, cli) =
            (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0);
        let mut exp = String::from(MINIMAL_MAE);
        if file {
            exp.push_str("train:\n  log_every_steps: 12\n");
        }
        write(dir.path(), "e.yaml", &exp);
        let mut cmd = runner_in(dir.path());
        cmd.args(["show", "e.yaml"]);
        if profile {
            cmd.args(["--profile", "./p.toml"]);
        }
        if env {
            cmd.env("RUNNER_TRAIN__LOG_EVERY_STEPS", "13");
        }
        if cli {
            cmd.args(["--set", "train.log_every_steps=14"]);
        }
        let (config, sources) = explain(&mut cmd);
        let (want, source) = match () {
            _ if cli => (
                14,
                "command line --set train.log_every_steps=14".to_string(),
            ),
            _ if env => (13, "env RUNNER_TRAIN__LOG_EVERY_STEPS".to_string()),
            _ if file => (12, "e.yaml:8:3".to_string()),
            _ if profile => (11, "profile ./p.toml (./p.toml:3:1)".to_string()),
            _ => (10, "default".to_string()),
        };
        assert_eq!(
            config["train"]["log_every_steps"], want,
            "layers {mask:04b}"
        );
        assert_eq!(sources[KEY], source, "layers {mask:04b}");
    }
}

#[test]
fn profiles_apply_left_to_right_below_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        "[train]\nepochs = 5\nlog_every_steps = 5\n",
    );
    write(dir.path(), "b.toml", "[train]\nepochs = 6\n");
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (config, sources) =
        explain(runner_in(dir.path()).args(["show", "e.yaml", "-p", "./a.toml", "-p", "./b.toml"]));
    assert_eq!(config["train"]["epochs"], 6);
    assert_eq!(config["train"]["log_every_steps"], 5);
    assert_eq!(sources["train.epochs"], "profile ./b.toml (./b.toml:2:1)");
    assert_eq!(
        config["profile"],
        serde_json::json!(["./a.toml", "./b.toml"])
    );
}

#[test]
fn experiment_profile_list_applies_when_the_command_line_names_none() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}profile: [huge-model]\n"),
    );
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "e.yaml"]));
    assert_eq!(config["train"]["per_device_batch_size"], 2);
    assert!(
        sources["train.per_device_batch_size"]
            .as_str()
            .unwrap()
            .starts_with("profile huge-model (<built-in>/huge-model.toml:")
    );
    // The command line replaces the file's list.
    let (config, _) = explain(runner_in(dir.path()).args(["show", "e.yaml", "--profile", "cpu"]));
    assert_eq!(config["train"]["per_device_batch_size"], 8);
    assert_eq!(config["profile"], serde_json::json!(["cpu"]));
}

#[test]
fn presets_folder_in_the_working_directory_wins_over_built_ins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("presets")).unwrap();
    write(
        &dir.path().join("presets"),
        "cpu.toml",
        "description = \"local\"\n[loader]\nnum_workers = 9\n",
    );
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "e.yaml", "-p", "cpu"]));
    assert_eq!(config["loader"]["num_workers"], 9);
    assert_eq!(
        sources["loader.num_workers"],
        "profile cpu (presets/cpu.toml:3:1)"
    );
    // $RUNNER_PRESETS is searched after ./presets.
    let extra = tempfile::tempdir().unwrap();
    write(extra.path(), "mine.toml", "[loader]\nnum_workers = 7\n");
    let (config, _) = explain(
        runner_in(dir.path())
            .env("RUNNER_PRESETS", extra.path())
            .args(["show", "e.yaml", "-p", "mine"]),
    );
    assert_eq!(config["loader"]["num_workers"], 7);
}

#[test]
fn command_line_forms_and_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (config, sources) = explain(runner_in(dir.path()).args([
        "show",
        "e.yaml",
        "optimizer.betas=[0.9,0.95]",
        "--seed",
        "7",
        "--output-dir",
        "out/{name}",
        "--set",
        "scheduler.style=cosine",
    ]));
    assert_eq!(config["optimizer"]["betas"], serde_json::json!([0.9, 0.95]));
    assert_eq!(
        sources["optimizer.betas"],
        "command line --set optimizer.betas=[0.9,0.95]"
    );
    assert_eq!(config["seed"], 7);
    assert_eq!(sources["seed"], "command line --seed 7");
    assert_eq!(config["output_dir"], "out/{name}");
    assert_eq!(config["derived"]["output_dir"], "out/t");
    assert_eq!(config["scheduler"]["style"], "cosine");
    assert_eq!(sources["name"], "e.yaml:1:1");
    assert_eq!(sources["loader.shuffle"], "default");
    assert_eq!(sources["derived.world_size"], "derived");
}

#[test]
fn foreign_runner_variables_are_ignored_and_ours_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    // GitHub Actions sets these; RUNNER_NAME must not rename the experiment.
    let (config, _) = explain(
        runner_in(dir.path())
            .env("RUNNER_NAME", "gha-1")
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_SEED", "5")
            .args(["show", "e.yaml"]),
    );
    assert_eq!(config["name"], "t");
    assert_eq!(config["seed"], 5);
    let (code, err) = failure(
        runner_in(dir.path())
            .env("RUNNER_TRAIN__EPOCH", "1")
            .args(["validate", "e.yaml"]),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown key `train.epoch`")
            && err.contains("RUNNER_TRAIN__EPOCH")
            && err.contains("`train.epochs`"),
        "{err}"
    );
}

#[test]
fn explain_is_valid_yaml_with_a_source_per_leaf() {
    let text = stdout(runner().args([
        "show",
        "experiments/mnli.yaml",
        "--profile",
        "8xA100",
        "--set",
        "train.epochs=1",
        "--explain",
    ]));
    assert!(
        text.contains("epochs: 1") && text.contains("# command line --set train.epochs=1"),
        "{text}"
    );
    assert!(
        text.contains("# profile 8xA100 (presets/8xA100.toml:"),
        "{text}"
    );
    assert!(text.contains("# experiments/mnli.yaml:"), "{text}");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("explain output parses as YAML");
    assert_eq!(v["train"]["epochs"], serde_yaml::Value::from(1));
    insta::assert_snapshot!("show_explain_mnli_8xa100", text);
    let tiny = stdout(runner().args(["show", "experiments/mnli-tiny.yaml", "--explain"]));
    insta::assert_snapshot!("show_explain_mnli_tiny", tiny);
}

#[test]
fn lists_are_appended_to_removed_from_and_reset_from_the_command_line_and_environment() {
    let files = |cmd: &mut assert_cmd::Command| {
        let (config, sources) = explain(cmd);
        (
            config["data"]["validation_files"].clone(),
            sources["data.validation_files"].clone(),
        )
    };
    let (list, source) = files(runner().args([
        "show",
        "experiments/mnli-tiny.yaml",
        "data.validation_files+=extra.tsv",
    ]));
    assert_eq!(
        list,
        serde_json::json!([
            "data/mnli-tiny/dev_matched.tsv",
            "data/mnli-tiny/dev_mismatched.tsv",
            "extra.tsv"
        ])
    );
    assert_eq!(
        source,
        "command line --set data.validation_files+=extra.tsv"
    );
    // Edits apply in order over what the layers below give; a flow list appends each item.
    let (list, _) = files(runner().args([
        "show",
        "experiments/mnli-tiny.yaml",
        "--set",
        "data.validation_files-=data/mnli-tiny/dev_matched.tsv",
        "data.validation_files+=[a.tsv, b.tsv]",
    ]));
    assert_eq!(
        list,
        serde_json::json!(["data/mnli-tiny/dev_mismatched.tsv", "a.tsv", "b.tsv"])
    );
    // The environment spells them with a suffix, below the command line.
    let (list, source) = files(
        runner()
            .args(["show", "experiments/mnli-tiny.yaml"])
            .env(
                "RUNNER_DATA__VALIDATION_FILES__REMOVE",
                "data/mnli-tiny/dev_mismatched.tsv",
            )
            .env("RUNNER_DATA__VALIDATION_FILES__APPEND", "[c.tsv]"),
    );
    assert_eq!(
        list,
        serde_json::json!(["data/mnli-tiny/dev_matched.tsv", "c.tsv"])
    );
    assert!(
        source
            .as_str()
            .unwrap()
            .starts_with("env RUNNER_DATA__VALIDATION_FILES__"),
        "{source}"
    );
    // `~key` restores the built-in default, whatever the layers below said.
    let (config, sources) = explain(runner().args([
        "show",
        "experiments/mnli-tiny.yaml",
        "~train.epochs",
        "~profile",
    ]));
    assert_eq!(config["train"]["epochs"], 3);
    assert_eq!(sources["train.epochs"], "command line --set ~train.epochs");
    assert_eq!(config["profile"], serde_json::json!([]));
    assert_eq!(
        config["loader"]["num_workers"], 4,
        "the cpu profile is gone too"
    );
    let (config, _) = explain(
        runner()
            .args(["show", "experiments/mnli-tiny.yaml"])
            .env("RUNNER_TRAIN__EPOCHS__RESET", ""),
    );
    assert_eq!(config["train"]["epochs"], 3);
    // Mistakes are diagnostics.
    for (edit, said) in [
        (
            "data.validation_files-=nope.tsv",
            "nothing in `data.validation_files` matches \"nope.tsv\"",
        ),
        ("train.epochs+=1", "`train.epochs` is not a list"),
        ("~name", "`name` has no built-in default to restore"),
    ] {
        let (code, err) = failure(runner().args(["validate", "experiments/mnli-tiny.yaml", edit]));
        assert_eq!(code, 2, "{edit}: {err}");
        assert!(err.contains(said), "{edit}: {err}");
    }
}
