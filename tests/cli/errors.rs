//! Every class of configuration error: exit code 2, the key, where it was set, and a fix.

use crate::common::*;

fn validate(dir: &std::path::Path, file: &str, text: &str) -> String {
    write(dir, file, text);
    let (code, err) = failure(runner_in(dir).args(["validate", file]));
    assert_eq!(code, 2, "exit code for a configuration error\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn unknown_keys_suggest_runner_names_for_seed_tool_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!(
            "{MINIMAL_MAE}train:\n  accum_iter: 4\nper_device_train_batch_size: 8\nlr_scheduler_type: cosine\nvideo_num_frames: 9\n"
        ),
    );
    for (key, line, fix) in [
        (
            "train.accum_iter",
            "e.yaml:8:3",
            "did you mean `train.grad_accum_steps`?",
        ),
        (
            "per_device_train_batch_size",
            "e.yaml:9:1",
            "did you mean `train.per_device_batch_size`?",
        ),
        (
            "lr_scheduler_type",
            "e.yaml:10:1",
            "did you mean `scheduler.style`?",
        ),
        (
            "video_num_frames",
            "e.yaml:11:1",
            "did you mean `data.num_frames`?",
        ),
    ] {
        assert!(
            err.contains(&format!("unknown key `{key}`")),
            "{key}\n{err}"
        );
        assert!(err.contains(line), "{line}\n{err}");
        assert!(err.contains(fix), "{fix}\n{err}");
    }
    assert!(err.contains("4 problems"), "{err}");
    insta::assert_snapshot!("unknown_keys", err);
}

#[test]
fn rejected_seed_arguments_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}amp_level: O2\njit_level: O1\n"),
    );
    assert!(
        err.contains("`amp_level` (Open-Sora-Plan train_causalvae.py) is not supported"),
        "{err}"
    );
    assert!(err.contains("graph-compiler"), "{err}");
    insta::assert_snapshot!("rejected_seed_arguments", err);
}

#[test]
fn wrong_types_name_file_line_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}train:\n  epochs: three\n"),
    );
    assert!(
        err.contains("`train.epochs` must be an integer, found string \"three\""),
        "{err}"
    );
    assert!(err.contains("e.yaml:8:3"), "{err}");
    assert!(
        err.contains("Passes over the training set"),
        "the fix quotes the key's documentation\n{err}"
    );

    let err = validate(
        dir.path(),
        "e.toml",
        "name = \"t\"\njob = \"mae\"\n[data]\npath = 3\n[optimizer]\nlr = 0.1\n",
    );
    assert!(
        err.contains("`data.path` must be a string, found number `3`"),
        "{err}"
    );
    assert!(err.contains("e.toml:4:1"), "{err}");
    insta::assert_snapshot!("wrong_type_toml", err);
}

#[test]
fn bad_enum_values_suggest_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}scheduler:\n  style: cosin\n"),
    );
    assert!(
        err.contains("must be one of constant, linear, cosine, inverse_sqrt, wsd"),
        "{err}"
    );
    assert!(err.contains("did you mean `cosine`?"), "{err}");
}

#[test]
fn malformed_yaml_and_toml_report_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        "name: t\njob: mae\ndata:\n  path: [unclosed\n",
    );
    assert!(
        err.contains("malformed YAML") && err.contains("e.yaml:"),
        "{err}"
    );
    let err = validate(dir.path(), "e.yaml", "name: t\n  job: mae\n");
    assert!(
        err.contains("malformed YAML") && err.contains("e.yaml:2:"),
        "{err}"
    );
    let err = validate(dir.path(), "e.toml", "name = \"t\"\njob = mae\n");
    assert!(
        err.contains("malformed TOML") && err.contains("e.toml:2:"),
        "{err}"
    );
    let err = validate(dir.path(), "e.yaml", "name: t\nname: u\njob: mae\n");
    assert!(err.contains("duplicate"), "{err}");
    let err = validate(dir.path(), "e.yaml", "- just\n- a list\n");
    assert!(err.contains("top level must be a mapping"), "{err}");
}

#[test]
fn missing_files_and_unknown_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "nope.yaml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read experiment file `nope.yaml`") && err.contains("check the path"),
        "{err}"
    );
    let err = validate(dir.path(), "e.ini", "name = t\n");
    assert!(err.contains("*.yaml") && err.contains("*.toml"), "{err}");
}

#[test]
fn unknown_profiles_list_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "e.yaml", "--profile", "8xA10"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown profile `8xA10`") && err.contains("did you mean `8xA100`?"),
        "{err}"
    );
    for name in PRESETS {
        assert!(err.contains(name), "{name} missing from\n{err}");
    }
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "e.yaml", "--profile", "./missing.toml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read profile file `./missing.toml`"),
        "{err}"
    );
}

#[test]
fn inconsistent_batch_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    // Same layer: global ≠ per-device × accumulation × data-parallel.
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!(
            "{MINIMAL_MAE}train:\n  per_device_batch_size: 8\n  grad_accum_steps: 2\n  global_batch_size: 100\n"
        ),
    );
    assert!(err.contains("global_batch_size 100 ≠ per_device_batch_size 8 × grad_accum_steps 2 × data-parallel size 1 = 16"), "{err}");
    assert!(err.contains("e.yaml:10:3"), "{err}");
    // Global batch alone must divide exactly (Megatron's rule).
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}train:\n  per_device_batch_size: 8\n  global_batch_size: 100\n"),
    );
    assert!(
        err.contains("not a multiple of per_device_batch_size 8"),
        "{err}"
    );
}

#[test]
fn absurd_batch_sizes_are_errors_not_clamped() {
    // Found by the fuzzer: the derived accumulation used to be clamped to u32::MAX silently.
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!(
            "{MINIMAL_MAE}train:\n  per_device_batch_size: 2\n  global_batch_size: 4291385062655036262\n"
        ),
    );
    assert!(
        err.contains("accumulation steps per optimizer step, more than runner counts"),
        "{err}"
    );
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!(
            "{MINIMAL_MAE}train:\n  per_device_batch_size: 4294967295\n  grad_accum_steps: 4294967295\nhardware: {{backend: tch, nproc_per_node: 4294967295, nnodes: 2}}\n"
        ),
    );
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn global_batch_derives_accumulation() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}train:\n  per_device_batch_size: 8\n  global_batch_size: 64\n"),
    );
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "e.yaml"]));
    assert_eq!(config["derived"]["grad_accum_steps"], 8);
    // A profile's accumulation under a file's global batch is recomputed, not a conflict.
    let (config, sources2) = explain(runner_in(dir.path()).args([
        "show",
        "e.yaml",
        "-p",
        "huge-model",
        "--set",
        "train.per_device_batch_size=8",
    ]));
    assert_eq!(config["train"]["grad_accum_steps"], 8);
    assert_eq!(sources2["train.grad_accum_steps"], "derived");
    assert_eq!(sources["train.global_batch_size"], "e.yaml:9:3");
}

#[test]
fn lr_and_base_lr_both_set_or_neither() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        "name: t\njob: mae\ndata: {path: x}\noptimizer:\n  lr: 1.0e-3\n  base_lr: 1.5e-4\n",
    );
    assert!(
        err.contains("both optimizer.lr and optimizer.base_lr are set")
            && err.contains("e.yaml:6:3"),
        "{err}"
    );
    let err = validate(dir.path(), "e.yaml", "name: t\njob: mae\ndata: {path: x}\n");
    assert!(err.contains("no learning rate"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        "name: bad name\njob: mae\ndata: {input_size: abc}\ntrain: {per_device_batch_size: 0, accum_iter: 2}\n\
         optimizer: {lr: 1.0e-3, base_lr: 1.0e-4}\nhardware: {device: gpu}\n",
    );
    for what in [
        "`name` has an invalid form",
        "missing required key `data.path`",
        "`data.input_size` must be an integer",
        "`train.per_device_batch_size` must be at least 1",
        "unknown key `train.accum_iter`",
        "both optimizer.lr and optimizer.base_lr are set",
        "`hardware.device` has an invalid form",
    ] {
        assert!(err.contains(what), "{what}\n{err}");
    }
    assert!(err.contains("7 problems"), "{err}");
    insta::assert_snapshot!("every_problem_at_once", err);
}

#[test]
fn cross_key_rules() {
    let dir = tempfile::tempdir().unwrap();
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}hardware: {{tensor_parallel: 2}}\n"),
    );
    assert!(err.contains("tensor parallelism is not supported"), "{err}");
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}precision: {{dtype: bf16}}\n"),
    );
    assert!(err.contains("flex backend computes in fp32 only"), "{err}");
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}hardware: {{nproc_per_node: 2}}\n"),
    );
    assert!(err.contains("single-process"), "{err}");
    insta::assert_snapshot!("flex_is_single_process", err);
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}data: {{path: x, input_size: 100}}\n")
            .replace("data:\n  path: images\n", ""),
    );
    assert!(
        err.contains("input_size 100 is not a multiple of the patch size 16"),
        "{err}"
    );
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}train: {{max_steps: 10}}\nscheduler: {{warmup_steps: 20}}\n"),
    );
    assert!(
        err.contains("warmup (20 steps) is not shorter than training (10 steps)"),
        "{err}"
    );
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}model: {{mask_ratio: 1.0}}\n"),
    );
    assert!(
        err.contains("`model.mask_ratio` must be less than 1"),
        "{err}"
    );
    let err = validate(
        dir.path(),
        "e.yaml",
        "name: t\njob: causal_vae\ndata: {video_path: v, num_frames: 16}\noptimizer: {lr: 0.1}\n",
    );
    assert!(
        err.contains("num_frames 16 is not 1 + a multiple of temporal_compression 4")
            && err.contains("use 13 or 17"),
        "{err}"
    );
    let err = validate(
        dir.path(),
        "e.yaml",
        &format!("{MINIMAL_MAE}output_dir: runs/{{nmae}}\n"),
    );
    assert!(err.contains("unknown placeholder `{nmae}`"), "{err}");
}

#[test]
fn overrides_with_bad_syntax() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "e.yaml", "--set", "train.epochs"]));
    assert_eq!(code, 2);
    assert!(err.contains("not a `key.path=value` override"), "{err}");
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "e.yaml", "--set", "train..epochs=1"]));
    assert_eq!(code, 2);
    assert!(err.contains("is not a key path"), "{err}");
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "e.yaml", "optimizer.lr=.inf"]));
    assert_eq!(code, 2);
    assert!(err.contains("finite number"), "{err}");
}
