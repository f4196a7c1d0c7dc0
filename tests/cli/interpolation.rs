//! `${…}` through the real binary: references, arithmetic, the environment, derived values,
//! an override that changes every value referring to it, mistakes with file:line:column, and
//! secrets that recorded files keep unresolved.

use crate::common::*;

const EXPERIMENT: &str = "\
name: interp
job: mae
data:
  path: ${env:DATA_ROOT,images}
  input_size: ${model.patch_size * 14}
model:
  arch: mae_vit_tiny_patch16
  patch_size: 16
optimizer:
  lr: ${1.0e-3 * train.per_device_batch_size / 256}
train:
  per_device_batch_size: 64
  log_every_steps: ${train.per_device_batch_size // 3}
  epochs: ${env:EPOCHS,2}
eval:
  per_device_batch_size: ${derived.global_batch_size * 2}
description: patch ${model.patch_size}, literal $${not.a.reference}
";

#[test]
fn references_arithmetic_and_the_environment_resolve_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", EXPERIMENT);
    let (config, sources) = explain(runner_in(dir.path()).args(["show", "e.yaml"]));
    assert_eq!(config["data"]["path"], "images");
    assert_eq!(config["data"]["input_size"], 224);
    assert_eq!(config["optimizer"]["lr"], 0.00025);
    assert_eq!(config["train"]["log_every_steps"], 21);
    assert_eq!(config["train"]["epochs"], 2);
    assert_eq!(config["eval"]["per_device_batch_size"], 128);
    // The value is `… literal ${not.a.reference}`; printed configurations escape it again so
    // that they resolve to themselves.
    assert_eq!(
        config["description"],
        "patch 16, literal $${not.a.reference}"
    );
    assert_eq!(
        sources["train.log_every_steps"],
        "e.yaml:13:3 = ${train.per_device_batch_size // 3} (train.per_device_batch_size: e.yaml:12:3)"
    );
    assert_eq!(
        sources["data.path"],
        "e.yaml:4:3 = ${env:DATA_ROOT,images} (env DATA_ROOT (unset: default))"
    );
    // The environment, and a command-line override of a referenced key: every value that
    // refers to it follows (derived ones too).
    let (config, sources) = explain(
        runner_in(dir.path())
            .args(["show", "e.yaml", "train.per_device_batch_size=32"])
            .env("DATA_ROOT", "/data/imagenet")
            .env("EPOCHS", "7"),
    );
    assert_eq!(config["data"]["path"], "/data/imagenet");
    assert_eq!(config["train"]["epochs"], 7);
    assert_eq!(config["train"]["log_every_steps"], 10);
    assert_eq!(config["optimizer"]["lr"], 0.000125);
    assert_eq!(config["eval"]["per_device_batch_size"], 64);
    assert!(
        sources["train.log_every_steps"]
            .as_str()
            .unwrap()
            .ends_with(
                "(train.per_device_batch_size: command line --set train.per_device_batch_size=32)"
            ),
        "{}",
        sources["train.log_every_steps"]
    );
    // The plain `show` prints results, which resolve to themselves when fed back.
    let printed = stdout(runner_in(dir.path()).args(["show", "e.yaml"]));
    assert!(!printed.replace("$${", "").contains("${"), "{printed}");
    assert!(
        printed.contains("literal $${not.a.reference}"),
        "a literal `${{` stays escaped"
    );
    write(dir.path(), "again.yaml", &printed);
    let (again, _) = explain(runner_in(dir.path()).args(["show", "again.yaml"]));
    let (orig, _) = explain(runner_in(dir.path()).args(["show", "e.yaml"]));
    assert_eq!(again, orig);
    // Placeholders of output_dir keep working beside interpolation.
    let (config, _) = explain(runner_in(dir.path()).args([
        "show",
        "e.yaml",
        "output_dir=runs/{name}-${train.per_device_batch_size}",
    ]));
    assert_eq!(config["derived"]["output_dir"], "runs/interp-64");
}

#[test]
fn mistakes_are_diagnostics_at_the_key_that_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "e.yaml",
        "name: t\njob: mae\ndata: {path: x}\noptimizer:\n  lr: ${train.per_device_batchsize * 2}\ntrain:\n  epochs: ${1 // 0}\n  max_steps: ${train.log_every_steps}\n  log_every_steps: ${train.max_steps}\n  per_device_batch_size: ${name * 2}\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "e.yaml"]));
    assert_eq!(code, 2, "{err}");
    for (what, at) in [
        (
            "refers to an unknown key `train.per_device_batchsize`",
            "e.yaml:5:3",
        ),
        ("did you mean `train.per_device_batch_size`?", "e.yaml:5:3"),
        ("`${1 // 0}`: division by zero", "e.yaml:7:3"),
        ("refers to itself", "e.yaml:"),
        ("`name` is the string \"t\", not a number", "e.yaml:10:3"),
    ] {
        assert!(
            err.contains(what) && err.contains(at),
            "{what} at {at}:\n{err}"
        );
    }
    insta::assert_snapshot!("interpolation_mistakes", err);
    write(
        dir.path(),
        "u.yaml",
        "name: t\njob: mae\ndata: {path: \"${env:NO_SUCH_VAR}\"}\noptimizer: {lr: 0.1}\n",
    );
    let (code, err) = failure(runner_in(dir.path()).args(["validate", "u.yaml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("the environment variable `NO_SUCH_VAR` is not set"),
        "{err}"
    );
    assert!(err.contains("${env:NO_SUCH_VAR,default}"), "{err}");
}

#[test]
fn secrets_are_read_but_recorded_unresolved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    write(
        dir.path(),
        "e.yaml",
        "name: s\njob: mae\ndata: {path: images}\noptimizer: {lr: 0.1}\ndescription: \"key ${env:WANDB_API_KEY}\"\n",
    );
    let out = stdout(
        runner_in(dir.path())
            .args(["run", "e.yaml", "--dry-run"])
            .env("WANDB_API_KEY", "hunter2"),
    );
    assert!(out.starts_with("prepared"), "{out}");
    let run = dir.path().join("runs/s");
    for f in ["config.resolved.yaml", "provenance.yaml", "meta.json"] {
        let text = std::fs::read_to_string(run.join(f)).unwrap();
        assert!(!text.contains("hunter2"), "{f} holds the secret:\n{text}");
    }
    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    assert!(resolved.contains("key ${env:WANDB_API_KEY}"), "{resolved}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["secrets"][0]["variable"], "WANDB_API_KEY");
    assert_eq!(meta["secrets"][0]["key"], "description");
    assert_eq!(meta["secrets"][0]["set"], true);
    assert_eq!(meta["secrets"][0]["sha256"].as_str().unwrap().len(), 64);
    // Fed back where the variable is set, the recorded file resolves again.
    let (config, _) = explain(
        runner_in(dir.path())
            .args(["show", "runs/s/config.resolved.yaml"])
            .env("WANDB_API_KEY", "other"),
    );
    assert_eq!(
        config["description"], "key ${env:WANDB_API_KEY}",
        "printed unresolved"
    );
    let (code, err) =
        failure(runner_in(dir.path()).args(["validate", "runs/s/config.resolved.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`WANDB_API_KEY` is not set"), "{err}");
}
