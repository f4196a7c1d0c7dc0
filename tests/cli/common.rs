//! Helpers shared by the integration tests: the real binary, with a clean environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `runner` with no inherited `RUNNER_*` variables, run from `dir`.
pub fn runner_in(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("runner").expect("binary builds");
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir);
    cmd
}

/// `runner` run from the repository root.
pub fn runner() -> Command {
    runner_in(&repo())
}

pub fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs and returns (exit code, stderr).
pub fn failure(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `show --format json --explain` → (config, sources).
pub fn explain(cmd: &mut Command) -> (serde_json::Value, serde_json::Value) {
    let text = stdout(cmd.args(["--format", "json", "--explain"]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    (v["config"].clone(), v["sources"].clone())
}

/// Every line of a run's `metrics.jsonl`.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (step, value) of `metric` in every evaluation of the `held_out` set.
pub fn held_out(run: &Path, metric: &str) -> Vec<(u64, f64)> {
    metrics(run)
        .iter()
        .filter_map(|m| {
            Some((
                m["step"].as_u64()?,
                m.get("eval")?["held_out"][metric].as_f64()?,
            ))
        })
        .collect()
}

/// A safetensors file of fp32 weights, by tensor name.
pub type Weights = std::collections::HashMap<String, Vec<f32>>;

pub fn weights(path: &Path) -> Weights {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(
                view.dtype(),
                safetensors::Dtype::F32,
                "{name}: fp32 weights"
            );
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, v)
        })
        .collect()
}

/// The largest absolute difference between two sets of the same tensors, and where.
pub fn largest_difference(a: &Weights, b: &Weights) -> (f32, String) {
    assert_eq!(a.len(), b.len(), "the same tensors");
    let mut worst = (0.0f32, String::new());
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(y) {
            if (p - q).abs() > worst.0 {
                worst = ((p - q).abs(), name.clone());
            }
        }
    }
    worst
}

/// A free TCP port on localhost (for a run's rendezvous, a daemon under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub const MINIMAL_MAE: &str =
    "name: t\njob: mae\ndata:\n  path: images\noptimizer:\n  lr: 1.0e-3\n";

/// The presets the repository ships.
pub const PRESETS: [&str; 7] = [
    "cpu",
    "1xRTX3090",
    "1xA100",
    "8xA100",
    "2x8xH100",
    "tpu-v4-8",
    "huge-model",
];
