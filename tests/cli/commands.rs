//! The commands end to end: schema, show round trips, run directories, init, profiles.

use crate::common::*;

#[test]
fn committed_schemas_are_up_to_date() {
    // Fails when the config types changed without `cargo run -- schema --write`.
    let out = stdout(runner().args(["schema", "--check"]));
    assert!(out.starts_with("ok:"), "{out}");
    let printed = stdout(runner().arg("schema"));
    assert_eq!(
        printed,
        std::fs::read_to_string(repo().join("schema/runner.schema.json")).unwrap()
    );
}

#[test]
fn schema_check_fails_on_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    stdout(
        runner()
            .args(["schema", "--write", "--root"])
            .arg(dir.path()),
    );
    for file in ["schema/runner.schema.json", "docs/reference.md"] {
        let path = dir.path().join(file);
        let fresh = std::fs::read_to_string(&path).unwrap();
        let stale = fresh.replace("Passes over the training set", "Stale");
        assert_ne!(stale, fresh, "{file} documents train.epochs");
        std::fs::write(&path, stale).unwrap();
        let (code, err) = failure(
            runner()
                .args(["schema", "--check", "--root"])
                .arg(dir.path()),
        );
        assert_eq!(code, 1);
        assert!(
            err.contains("stale") && err.contains(file) && err.contains("schema --write"),
            "{err}"
        );
        std::fs::write(&path, fresh).unwrap();
    }
}

#[test]
fn config_documents_a_key_a_section_and_a_seed_tools_name() {
    let epochs = stdout(runner().args(["config", "train.epochs"]));
    for part in [
        "integer ≥ 1",
        "default `3`",
        "`--num_train_epochs`",
        "Passes over",
    ] {
        assert!(epochs.contains(part), "{part} in\n{epochs}");
    }
    // The same text as docs/reference.md.
    let reference = std::fs::read_to_string(repo().join("docs/reference.md")).unwrap();
    assert!(reference.contains("### `train.epochs`\n\ninteger ≥ 1 · default `3`"));
    let section = stdout(runner().args(["config", "precision"]));
    assert!(
        section.contains("precision.dtype") && section.contains("one of `fp32`, `bf16`, `fp16`"),
        "{section}"
    );
    // A job's key is documented once per job that has it.
    let arch = stdout(runner().args(["config", "model.arch"]));
    assert!(
        arch.contains("model.arch (mae)") && arch.contains("`bert-base`"),
        "{arch}"
    );
    let alias = stdout(runner().args(["config", "--learning_rate"]));
    assert!(
        alias.starts_with("`learning_rate` is Hugging Face"),
        "{alias}"
    );
    assert!(alias.contains("optimizer.lr"), "{alias}");
    let (code, err) = failure(runner().args(["config", "disc_start"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("no counterpart") && err.contains("LPIPS"),
        "{err}"
    );
    let (code, err) = failure(runner().args(["config", "train.epoch"]));
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `train.epochs`"), "{err}");
    // Every key, one line each.
    let all = stdout(runner().arg("config"));
    assert!(all.lines().count() > 80, "{all}");
}

/// The files in `experiments/` (or one of its folders).
fn files_in(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn experiments() -> Vec<std::path::PathBuf> {
    files_in("experiments")
}

#[test]
fn every_shipped_experiment_validates_and_points_editors_at_the_schema() {
    let files = experiments();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let rel = f.strip_prefix(repo()).unwrap().to_path_buf();
        let out = stdout(runner().arg("validate").arg(&rel));
        assert!(out.starts_with("ok:"), "{out}");
        // Editors complete from the job's own schema (config::editor_schema says why).
        let shown: serde_json::Value = serde_json::from_str(&stdout(
            runner().arg("show").arg(&rel).args(["--format", "json"]),
        ))
        .unwrap();
        let job = shown["job"].as_str().unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let first = text.lines().next().unwrap();
        match f.extension().unwrap().to_str().unwrap() {
            "yaml" => assert_eq!(
                first,
                format!("# yaml-language-server: $schema=../schema/{job}.schema.json")
            ),
            "toml" => assert_eq!(first, format!("#:schema ../schema/{job}.schema.json")),
            other => panic!("unexpected experiment file type {other}"),
        }
    }
    // The bases are partial; the job's schema requires nothing.
    let bases = files_in("experiments/base");
    assert!(bases.len() >= 3, "a base per job family: {bases:?}");
    for f in bases {
        let text = std::fs::read_to_string(&f).unwrap();
        let base: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let job = base["job"].as_str().unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            format!("# yaml-language-server: $schema=../../schema/{job}.schema.json"),
            "{f:?}"
        );
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            experiments().iter().any(|e| std::fs::read_to_string(e)
                .unwrap()
                .contains(&format!("base/{name}"))),
            "no shipped experiment extends {name}"
        );
    }
}

#[test]
fn yaml_and_toml_versions_of_mnli_resolve_alike() {
    let yaml = stdout(runner().args(["show", "experiments/mnli.yaml", "--format", "json"]));
    let toml = stdout(runner().args(["show", "experiments/mnli.toml", "--format", "json"]));
    assert_eq!(yaml, toml);
}

#[test]
fn show_output_fed_back_resolves_to_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    for f in experiments() {
        for (format, ext) in [("yaml", "yaml"), ("toml", "toml"), ("json", "json")] {
            let first = stdout(runner().arg("show").arg(&f).args([
                "--format",
                format,
                "--set",
                "train.log_every_steps=7",
            ]));
            let path = write(dir.path(), &format!("again.{ext}"), &first);
            let second = stdout(runner().arg("show").arg(&path).args(["--format", format]));
            assert_eq!(first, second, "{} as {format}", f.display());
        }
    }
}

#[test]
fn mnli_with_8xa100_derives_the_data_parallel_batch() {
    let (config, sources) = explain(runner().args([
        "show",
        "experiments/mnli.yaml",
        "--profile",
        "8xA100",
        "--set",
        "train.epochs=1",
    ]));
    let d = &config["derived"];
    assert_eq!(d["world_size"], 8);
    assert_eq!(d["data_parallel_size"], 8);
    assert_eq!(d["global_batch_size"], 256);
    assert_eq!(d["lr"], 2.0e-5);
    assert_eq!(d["model"]["hidden_size"], 768);
    assert_eq!(config["hardware"]["backend"], "tch");
    assert_eq!(
        sources["hardware.nproc_per_node"],
        "profile 8xA100 (presets/8xA100.toml:11:1)"
    );
}

#[test]
fn mae_paper_recipe_gives_the_paper_learning_rate() {
    // 64 per device × 16 GPUs × accumulation 4 = 4096; lr = 1.5e-4 × 4096 / 256.
    let (config, _) = explain(runner().args(["show", "experiments/mae.yaml"]));
    assert_eq!(config["derived"]["global_batch_size"], 4096);
    assert!((config["derived"]["lr"].as_f64().unwrap() - 2.4e-3).abs() < 1e-12);
    // The example: 64 per device × 8 devices × 8 nodes, accumulation 1.
    let (config, _) = explain(runner().args([
        "show",
        "experiments/mae.yaml",
        "--set",
        "hardware.nnodes=8",
        "--set",
        "train.global_batch_size=4096",
    ]));
    assert_eq!(config["derived"]["grad_accum_steps"], 1);
    assert!((config["derived"]["lr"].as_f64().unwrap() - 2.4e-3).abs() < 1e-12);
}

#[test]
fn run_dry_run_writes_a_reproducible_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let out = stdout(runner_in(dir.path()).args([
        "run",
        "e.yaml",
        "--dry-run",
        "--set",
        "train.epochs=2",
    ]));
    assert!(out.starts_with("prepared runs/t"), "{out}");
    let run = dir.path().join("runs/t");
    for f in ["config.resolved.yaml", "provenance.yaml", "meta.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "prepared");
    assert_eq!(meta["backend"], "flex");
    assert_eq!(meta["runner_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        meta["command_line"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "train.epochs=2")
    );
    assert!(meta["git"].is_null(), "a temp dir is no git work tree");
    assert!(meta["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    let provenance = std::fs::read_to_string(run.join("provenance.yaml")).unwrap();
    assert!(
        provenance.contains("epochs: 2")
            && provenance.contains("# command line --set train.epochs=2"),
        "{provenance}"
    );

    // The resolved config reproduces the run's configuration.
    let again = stdout(runner_in(dir.path()).args([
        "show",
        "runs/t/config.resolved.yaml",
        "--format",
        "json",
    ]));
    let orig = stdout(runner_in(dir.path()).args([
        "show",
        "e.yaml",
        "--format",
        "json",
        "--set",
        "train.epochs=2",
    ]));
    assert_eq!(again, orig);

    // A prepared directory may be prepared again; one that holds a run may not.
    stdout(runner_in(dir.path()).args(["run", "e.yaml", "--dry-run"]));
    let text = std::fs::read_to_string(run.join("meta.json"))
        .unwrap()
        .replace("\"prepared\"", "\"running\"");
    std::fs::write(run.join("meta.json"), text).unwrap();
    let (code, err) = failure(runner_in(dir.path()).args(["run", "e.yaml", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("already holds a run") && err.contains("resume=auto"),
        "{err}"
    );
    stdout(runner_in(dir.path()).args(["run", "e.yaml", "--dry-run", "--set", "resume=auto"]));
}

#[test]
fn run_checks_the_machine_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.yaml", MINIMAL_MAE);
    let (code, err) = failure(runner_in(dir.path()).args(["run", "e.yaml", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("image data `images` does not exist") && err.contains("e.yaml:4:3"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists());
    // validate judges the config only; --strict adds the machine checks.
    stdout(runner_in(dir.path()).args(["validate", "e.yaml", "--profile", "8xA100"]));
    let (code, err) = failure(runner_in(dir.path()).args([
        "validate",
        "--strict",
        "e.yaml",
        "--profile",
        "8xA100",
    ]));
    assert_eq!(code, 2);
    if cfg!(feature = "tch") {
        // With libtorch built in, the 8xA100 profile's CUDA devices are looked for (and this
        // machine has none).
        assert!(err.contains("finds no CUDA device"), "{err}");
    } else {
        assert!(
            err.contains("built without the libtorch (`tch`) backend")
                && err.contains("just setup-tch && just build-tch"),
            "{err}"
        );
    }
}

#[test]
fn init_writes_a_starter_that_validates_for_every_job() {
    let dir = tempfile::tempdir().unwrap();
    for job in ["mae", "text_classification", "causal_vae"] {
        let path = dir.path().join(format!("{job}.yaml"));
        stdout(runner_in(dir.path()).args(["init", job]).arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{text}"
        );
        // In a repository laid out as this one, the file points at its job's schema.
        std::fs::create_dir_all(dir.path().join("schema")).unwrap();
        std::fs::write(dir.path().join("schema/runner.schema.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
        let inside = dir.path().join(format!("experiments/{job}.yaml"));
        stdout(runner_in(dir.path()).args(["init", job]).arg(&inside));
        assert_eq!(
            std::fs::read_to_string(&inside)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
            format!("# yaml-language-server: $schema=../schema/{job}.schema.json")
        );
        assert!(
            text.contains("# grad_accum_steps:")
                && text.contains("# mask_ratio: 0.75") == (job == "mae"),
            "{text}"
        );
        stdout(runner_in(dir.path()).arg("validate").arg(&path));
        let (code, err) = failure(runner_in(dir.path()).args(["init", job]).arg(&path));
        assert_eq!(code, 1);
        assert!(err.contains("never overwrites"), "{err}");
    }
}

#[test]
fn profiles_lists_every_preset_with_its_description() {
    let out = stdout(runner().arg("profiles"));
    for name in PRESETS {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}:\n{out}"));
        assert!(line.len() > name.len() + 20, "{line}");
    }
}

#[test]
fn presets_hold_only_hardware_precision_loader_and_batch_keys() {
    for entry in std::fs::read_dir(repo().join("presets")).unwrap() {
        let path = entry.unwrap().path();
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            table
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| !d.is_empty()),
            "{path:?}"
        );
        for (section, value) in &table {
            match section.as_str() {
                "description" | "hardware" | "precision" | "loader" => {}
                "train" | "eval" => {
                    for key in value.as_table().unwrap().keys() {
                        assert!(
                            [
                                "per_device_batch_size",
                                "grad_accum_steps",
                                "gradient_checkpointing"
                            ]
                            .contains(&key.as_str()),
                            "{path:?}: {section}.{key} is not a batch/memory key"
                        );
                    }
                }
                other => panic!("{path:?}: section {other} does not belong in a hardware profile"),
            }
        }
    }
}

#[test]
fn the_binary_works_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "e.toml",
        "name = \"t\"\njob = \"mae\"\nprofile = [\"cpu\"]\n[data]\npath = \"x\"\n[optimizer]\nlr = 0.001\n",
    );
    let (_, sources) = explain(runner_in(dir.path()).args(["show", "e.toml"]));
    assert_eq!(
        sources["hardware.backend"],
        "profile cpu (<built-in>/cpu.toml:5:1)"
    );
    let out = stdout(runner_in(dir.path()).arg("profiles"));
    assert!(out.contains("[built in]"), "{out}");
}

#[test]
fn completions_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = stdout(runner().args(["completions", shell]));
        assert!(
            out.contains("validate") && out.contains("profile") && out.contains("explain"),
            "{shell}"
        );
    }
}

#[test]
fn help_comes_from_the_doc_comments() {
    let out = stdout(runner().args(["show", "--help"]));
    assert!(
        out.contains("--explain") && out.contains("layer that set it"),
        "{out}"
    );
}

#[test]
fn launch_slurm_print_writes_the_batch_script_into_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let text = stdout(
        runner()
            .args([
                "launch",
                "experiments/mnli.yaml",
                "--profile",
                "2x8xH100",
                "--slurm",
                "--print",
                "--partition",
                "gpu",
                "--time",
                "1-00:00:00",
                "--sbatch=--mem=64G",
                "--output-dir",
            ])
            .arg(&run)
            .args(["--set", "optimizer.betas=[0.9, 0.95]", "--seed", "7"]),
    );
    let run = std::path::absolute(&run).unwrap();
    for line in [
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --mem=64G",
        &format!("#SBATCH --output={}/slurm-%j.out", run.display()),
        "export MASTER_PORT=29500",
        "srun --kill-on-bad-exit=1",
        "--profile 2x8xH100",
        "--seed 7",
        "--set 'optimizer.betas=[0.9, 0.95]'",
        &format!("--output-dir {}", run.display()),
    ] {
        assert!(text.contains(line), "`{line}` missing:\n{text}");
    }
    assert!(text.contains("scontrol show hostnames"), "{text}");
    assert_eq!(
        std::fs::read_to_string(run.join("slurm.sbatch")).unwrap(),
        text
    );
    // Only the script: rank 0 of the job writes the rest.
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 1);
    // `runner launch` needs a scheduler to write for.
    let (code, err) = failure(runner().args(["launch", "experiments/mnli.yaml"]));
    assert_eq!(code, 2);
    assert!(err.contains("--slurm"), "{err}");
}

#[test]
fn a_launcher_world_size_that_disagrees_with_the_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = failure(
        runner()
            .args(["run", "experiments/mnli-tiny.yaml", "--output-dir"])
            .arg(tmp.path().join("run"))
            .env("RANK", "0")
            .env("WORLD_SIZE", "4"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("WORLD_SIZE=4") && err.contains("hardware.nproc_per_node=4"),
        "{err}"
    );
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn the_committed_general_schema_validates_every_job_and_rejects_another_jobs_keys() {
    // Shaping the committed schemas for editors (config::editor_schema) must not change what
    // they accept: every shipped experiment, resolved, validates against
    // schema/runner.schema.json, and a key of another job's `model` does not.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/runner.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).expect("valid draft-07");
    for f in experiments() {
        let rel = f.strip_prefix(repo()).unwrap().to_path_buf();
        let shown: serde_json::Value = serde_json::from_str(&stdout(
            runner().arg("show").arg(&rel).args(["--format", "json"]),
        ))
        .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&shown)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", rel.display());
        let mut wrong = shown.clone();
        let foreign = if shown["job"] == "mae" {
            "num_labels"
        } else {
            "mask_ratio"
        };
        wrong["model"][foreign] = serde_json::json!(2);
        assert!(
            !validator.is_valid(&wrong),
            "{}: {foreign} accepted",
            rel.display()
        );
    }
}
