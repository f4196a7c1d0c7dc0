//! `runner init --from-command`: the commands printed in the seed documents and the upstream
//! READMEs (verbatim, in `fixtures/from_command/`, each naming its source) become experiment
//! files whose resolved values are the scripts' own: global batch, learning rate, length.

use std::path::Path;

use crate::common::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/cli/fixtures/from_command").join(name)).unwrap()
}

/// Runs `runner init [job] FILE --from-command <fixture>` in a fresh folder: (exit code,
/// stderr, the file written, the folder).
fn init(job: Option<&str>, name: &str) -> (i32, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exp.yaml");
    let mut cmd = runner_in(dir.path());
    cmd.arg("init");
    if let Some(job) = job {
        cmd.arg(job);
    }
    let out = cmd
        .arg(&file)
        .args(["--from-command", &fixture(name)])
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        text,
        dir,
    )
}

/// `runner show FILE --format json` with `extra` overrides (what the command left to fill in).
fn resolved(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = stdout(
        runner_in(dir)
            .args(["show", "exp.yaml", "--format", "json"])
            .args(extra),
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn mae_pretrain_md_on_eight_nodes_keeps_its_global_batch_and_lr() {
    let (code, err, text, dir) = init(None, "mae_pretrain_8_nodes.sh");
    // ${IMAGENET_DIR} is not set by the command: data.path is left to fill in.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data.path"), "{err}");
    for line in [
        "job: mae",
        "  nnodes: 8  # --nodes 8",
        "  nproc_per_node: 8  # submitit_pretrain.py (its default --ngpus 8)",
        "  base_lr: 0.00015  # --blr 1.5e-4",
        "  norm_pix_loss: true  # --norm_pix_loss",
        "#   data.path (from --data_path ${IMAGENET_DIR})",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(
        text.contains("#   --use_volta32: a Slurm request"),
        "{text}"
    );
    assert!(
        text.contains("#   --job_dir ${JOB_DIR}: submitit's folder"),
        "{text}"
    );
    let v = resolved(dir.path(), &["data.path=/data/imagenet/train"]);
    // 64 per GPU × 8 GPUs × 8 nodes; lr = blr × 4096 / 256 (PRETRAIN.md's own arithmetic).
    assert_eq!(v["derived"]["global_batch_size"], 4096);
    assert!((v["derived"]["lr"].as_f64().unwrap() - 2.4e-3).abs() < 1e-12);
    assert_eq!(v["train"]["epochs"], 800);
    assert_eq!(v["scheduler"]["warmup_epochs"], 40.0);
    assert_eq!(v["model"]["arch"], "mae_vit_large_patch16");
    assert_eq!(v["optimizer"]["weight_decay"], 0.05);
}

#[test]
fn mae_single_node_launch_with_accumulation() {
    let (code, err, text, dir) = init(None, "mae_pretrain_launch.sh");
    assert_eq!(code, 2, "no --data_path: {err}");
    assert!(err.contains("data.path"), "{err}");
    assert!(
        text.contains("#   CUDA_VISIBLE_DEVICES=0,1: an environment variable"),
        "{text}"
    );
    assert!(
        text.contains("  grad_accum_steps: 16  # --accum_iter 16"),
        "{text}"
    );
    let v = resolved(dir.path(), &["data.path=/data/imagenet/train"]);
    // 128 × 16 accumulation × 2 processes = 4096.
    assert_eq!(v["derived"]["global_batch_size"], 4096);
    assert_eq!(v["hardware"]["nproc_per_node"], 2);
    assert!((v["derived"]["lr"].as_f64().unwrap() - 2.4e-3).abs() < 1e-12);
}

#[test]
fn run_glue_readme_command() {
    let (code, err, text, dir) = init(None, "run_glue_readme.sh");
    // run_glue.py fetches GLUE from the Hub by --task_name; runner reads local files.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data.train_file"), "{err}");
    for line in [
        "job: text_classification",
        "output_dir: /tmp/mrpc/  # --output_dir /tmp/$TASK_NAME/",
        "  task: mrpc  # --task_name $TASK_NAME",
        "  pretrained: google-bert/bert-base-cased  # --model_name_or_path google-bert/bert-base-cased",
        "  strategy: epoch  # --do_eval",
        "#   --do_train: `runner run` always trains",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let v = resolved(dir.path(), &["data.train_file=/data/mrpc/train.tsv"]);
    assert_eq!(v["derived"]["global_batch_size"], 32);
    assert_eq!(v["derived"]["lr"], 2e-5);
    assert_eq!(v["train"]["epochs"], 3);
    assert_eq!(v["data"]["max_seq_length"], 128);
}

#[test]
fn seed_003_tpu_command_keeps_its_cores_and_batch() {
    let (code, err, text, dir) = init(None, "seed_003_xla_spawn.sh");
    assert_eq!(code, 2, "no data files: {err}");
    assert!(err.contains("add data.train_file"), "{err}");
    for line in [
        "  device: tpu  # xla_spawn.py (TPU cores)",
        "  nproc_per_node: 8  # xla_spawn.py --num_cores 8",
        "  epochs: 3  # --num_train_epochs 3.0",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let v = resolved(dir.path(), &["data.train_file=/data/mnli/train.jsonl"]);
    // 8 per core × 8 cores.
    assert_eq!(v["derived"]["global_batch_size"], 64);
    assert_eq!(v["model"]["pretrained"], "google-bert/bert-large-uncased");
    assert_eq!(v["data"]["task"], "mnli");
}

#[test]
fn seed_003_torchrun_needs_the_job_and_lists_tensor_parallelism() {
    let (code, err, _, _dir) = init(None, "seed_003_torchrun_tp.sh");
    assert_eq!(code, 2);
    assert!(
        err.contains("train_script.py") && err.contains("name the job"),
        "{err}"
    );
    let (code, err, text, dir) = init(Some("text_classification"), "seed_003_torchrun_tp.sh");
    // A generic script sets no learning rate and no data.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("add data.train_file"), "{err}");
    assert!(
        text.contains("#   TP_SIZE=2: runner trains data-parallel only"),
        "{err}\n{text}"
    );
    assert!(text.contains("  master_port: 29503  # torchrun --rdzv_endpoint=localhost:29503"));
    let v = resolved(
        dir.path(),
        &[
            "data.train_file=/data/train.tsv",
            "data.tokenizer=/data/vocab.txt",
            "optimizer.lr=2e-5",
        ],
    );
    assert_eq!(v["hardware"]["nproc_per_node"], 4);
    assert_eq!(v["hardware"]["master_addr"], "localhost");
    assert_eq!(v["derived"]["global_batch_size"], 32);
}

#[test]
fn seed_004_sixteen_frames_get_the_thirteen_or_seventeen_error_on_their_line() {
    let (code, err, text, _dir) = init(None, "seed_004_causalvae.sh");
    assert_eq!(code, 2, "{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with("  num_frames: 16"))
        .expect("num_frames is written")
        + 1;
    assert!(err.contains("13 or 17"), "{err}");
    assert!(
        err.contains(&format!("exp.yaml:{line}:")),
        "line {line}: {err}"
    );
    for line in [
        "  betas: [0.9, 0.999]  # --betas 0.9 0.999",
        "  clip_grad_norm: 1.0  # --clip_grad True",
        "  dtype: bf16  # --precision bf16",
        "#   --mode 0: MindSpore's execution mode",
        "#   --amp_level O2: runner's mixed precision",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
}

#[test]
fn the_command_after_a_double_dash_and_on_stdout() {
    let out = runner()
        .args([
            "init",
            "--",
            "python",
            "main_pretrain.py",
            "--batch_size",
            "32",
        ])
        .args(["--data_path", "/data/imagenet/train"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  per_device_batch_size: 32  # --batch_size 32"),
        "{text}"
    );
}
