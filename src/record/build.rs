//! The build and engine a run trained with: runner's version and the commit it was built
//! from, the `Cargo.lock` it was built with (by hash) and burn's version in it, the backend,
//! libtorch's version (the `tch` feature: the torch wheel's), on CUDA the driver and the
//! devices, and the CPU and thread counts.

use std::process::Command;

use serde::{Deserialize, Serialize};

const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub runner_version: String,
    /// `git rev-parse HEAD` of runner's checkout at build time (`-dirty` with changes).
    pub runner_commit: String,
    pub cargo_lock_sha256: String,
    pub burn_version: String,
    pub backend: String,
    /// The torch wheel's version libtorch came from (`tch` builds).
    pub libtorch_version: Option<String>,
    /// `nvidia-smi`'s driver version and device names, on CUDA.
    pub cuda_driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuda_devices: Vec<String>,
    pub cpu_model: String,
    pub cpus: usize,
    /// `RAYON_NUM_THREADS` / `OMP_NUM_THREADS` as set.
    pub rayon_threads: Option<String>,
    pub omp_threads: Option<String>,
}

/// The version of `package` in the Cargo.lock runner was built with.
fn locked_version(package: &str) -> String {
    let mut lines = CARGO_LOCK.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{package}\"")
            && let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "unknown".into()
}

/// This binary and machine, for a run on `backend` (`cuda`: ask nvidia-smi too).
pub fn now(backend: &str, cuda: bool) -> Build {
    let (cuda_driver, cuda_devices) = if cuda {
        nvidia_smi()
    } else {
        (None, Vec::new())
    };
    let libtorch = env!("RUNNER_LIBTORCH_VERSION");
    Build {
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        runner_commit: env!("RUNNER_BUILD_COMMIT").to_string(),
        cargo_lock_sha256: super::code::sha256(CARGO_LOCK.as_bytes()),
        burn_version: locked_version("burn"),
        backend: backend.to_string(),
        libtorch_version: (!libtorch.is_empty()).then(|| libtorch.to_string()),
        cuda_driver,
        cuda_devices,
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        rayon_threads: std::env::var("RAYON_NUM_THREADS").ok(),
        omp_threads: std::env::var("OMP_NUM_THREADS").ok(),
    }
}

fn nvidia_smi() -> (Option<String>, Vec<String>) {
    let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
    else {
        return (None, Vec::new());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
        .collect();
    (
        rows.first().map(|r| r.1.clone()),
        rows.into_iter().map(|r| r.0).collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn burn_is_found_in_the_lock_file() {
        assert_eq!(super::locked_version("burn"), "0.22.1");
    }
}
