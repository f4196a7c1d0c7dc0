//! The libtorch backend (`--features tch`, libtorch from the torch wheel): every job takes
//! the same steps on libtorch's CPU as on the embedded flex backend, the tiny experiment trains
//! on it, and a missing GPU is named before any work. CI runs these with
//! `cargo test --locked --features tch --test cli tch::`; without the feature the module is left out.

use std::path::Path;

use crate::common::*;

/// Two steps of `exp` on `backend` (no warmup, so the first update is a full one; every step
/// logged; no evaluation or checkpoints): the logged losses and the final weights.
fn two_steps(exp: &str, backend: &str, out: &Path, extra: &[&str]) -> (Vec<f64>, Weights) {
    let run = out.join(backend);
    let mut cmd = runner();
    cmd.args(["run", exp, "--quiet", "--output-dir"])
        .arg(&run)
        .args([
            &format!("hardware.backend={backend}"),
            "train.max_steps=2",
            "train.log_every_steps=1",
            "eval.strategy=no",
            "eval.on_start=false",
            "checkpoint.strategy=no",
            "logging.tensorboard=false",
            // AdamW's first updates are lr · g / (|g| + eps), about lr · sign(g): a gradient
            // that is zero but for rounding (a key bias's, say) moves by up to lr on one
            // backend and not the other. A larger eps keeps such updates proportional to g,
            // so the comparison measures the engines, not the sign of rounding noise.
            "optimizer.eps=1e-3",
        ])
        .args(extra);
    stdout(&mut cmd);
    let losses = metrics(&run)
        .iter()
        .filter_map(|r| r.get("loss")?.as_f64())
        .collect();
    (losses, weights(&run.join("model.safetensors")))
}

/// Same losses (relative `loss_tol`) and weights (absolute `weight_tol`, small against the
/// learning rate that moved them) on flex and libtorch.
fn assert_parity(exp: &str, extra: &[&str], loss_tol: f64, weight_tol: f32) {
    let tmp = tempfile::tempdir().unwrap();
    let (flex_loss, flex_w) = two_steps(exp, "flex", tmp.path(), extra);
    let (tch_loss, tch_w) = two_steps(exp, "tch", tmp.path(), extra);
    assert_eq!(flex_loss.len(), 2, "{flex_loss:?}");
    for (a, b) in flex_loss.iter().zip(&tch_loss) {
        assert!(
            (a - b).abs() <= loss_tol * a.abs(),
            "{exp}: losses flex {flex_loss:?} vs tch {tch_loss:?}"
        );
    }
    let worst = largest_difference(&flex_w, &tch_w);
    eprintln!(
        "{exp}: losses flex {flex_loss:?} tch {tch_loss:?}; largest weight difference {} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= weight_tol,
        "{exp}: weights differ by {} in {}",
        worst.0,
        worst.1
    );
}

#[test]
fn text_classification_steps_match_the_embedded_backend() {
    // Dropout draws from each backend's own generator: off, so both see the same network.
    assert_parity(
        "experiments/mnli-tiny.yaml",
        &["model.dropout=0", "scheduler.warmup_ratio=null"],
        1e-5,
        1e-6,
    );
}

#[test]
fn mae_steps_match_the_embedded_backend() {
    // Masks are drawn on the host from the seed: the same on both.
    assert_parity(
        "experiments/mae-tiny.yaml",
        &["scheduler.warmup_steps=null"],
        1e-5,
        1e-6,
    );
}

#[test]
fn causal_vae_steps_match_the_embedded_backend() {
    // The posterior noise is drawn on the host from the seed: the same on both.
    assert_parity(
        "experiments/causalvae-tiny.yaml",
        &["scheduler.warmup_steps=null"],
        1e-5,
        1e-6,
    );
}

#[test]
fn the_tiny_experiment_trains_on_libtorch_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    stdout(
        runner()
            .args([
                "run",
                "experiments/mnli-tiny.yaml",
                "--quiet",
                "--output-dir",
            ])
            .arg(&run)
            .arg("hardware.backend=tch"),
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "completed");
    // The same bar as the flex run's test (tests/train.rs): well above the majority class.
    for set in ["dev_matched", "dev_mismatched"] {
        let acc = summary["eval"][set]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.6, "{set}: accuracy {acc}");
    }
    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    assert!(resolved.contains("backend: tch"), "{resolved}");
}

#[test]
fn an_absent_gpu_is_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (code, err) = failure(
        runner()
            .args(["run", "experiments/mnli-tiny.yaml", "--output-dir"])
            .arg(&run)
            .args(["hardware.backend=tch", "hardware.device=cuda:7"]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cuda:7") && err.contains("hardware.device"),
        "{err}"
    );
    assert!(!run.exists(), "nothing is written");
}

/// `just gpu-check`'s preparation, with the binary this build already has (the recipe uses the
/// release `runner-tch`): the bundle holds the stripped executable and the check's data within
/// 55 MiB, and the command to run on the GPU host fits in 2,000 characters.
#[test]
fn the_gpu_check_bundle_fits_and_names_its_command() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("gpu-check");
    let out = std::process::Command::new("python3")
        .arg(repo().join("bench/gpu_check.py"))
        .args(["prepare", "--binary"])
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("command: "))
        .expect("the command is printed");
    assert!(command.len() <= 2000, "{command}");
    assert!(
        command.starts_with("python3 bench/gpu_check.py run --bundle ")
            && command.ends_with("--out $OUT"),
        "{command}"
    );
    assert!(text.contains("carry: ["), "{text}");
    let mut bytes = 0;
    let mut files = Vec::new();
    for e in walk(&bundle) {
        bytes += std::fs::metadata(&e).unwrap().len();
        files.push(
            e.strip_prefix(&bundle)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert!(bytes <= 55 << 20, "{bytes} bytes");
    for want in [
        "bin/runner-tch",
        "data/fashion-mnist/train-images-idx3-ubyte.gz",
        "data/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "data/long/train.tsv",
        "data/clips/bikes/000001.jpg",
        "manifest.json",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} missing: {files:?}");
    }
    // Stripped: no symbol table left.
    let nm = std::process::Command::new("nm")
        .arg(bundle.join("bin/runner-tch"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&nm.stderr).contains("no symbols"),
        "{}",
        String::from_utf8_lossy(&nm.stderr)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
