//! The run record beyond the configuration, so that a rerun a month later can tell whether
//! it is the same experiment: the code (commit, branch, remote, the dirty patch itself and
//! the untracked files beside the experiment), the build and engine, a fingerprint of every
//! input the run read, and the environment variables runner read. It is `record.json` in the
//! run directory, with the patch and the copied untracked files under `code/` (all written
//! durably); `runner rerun` compares it with now ([`drift`]).

pub mod build;
pub mod code;
pub mod data;
pub mod drift;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::Resolved;
use crate::config::interpolate::Input;

pub const RECORD: &str = "record.json";

/// `record.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `null` when the experiment file is not in a git work tree.
    pub code: Option<code::Code>,
    pub build: build::Build,
    /// Every input the run read, fingerprinted.
    pub data: Vec<data::Fingerprint>,
    /// The variables runner read, with their values (secrets redacted).
    pub environment: BTreeMap<String, String>,
}

/// Launcher variables `dist::contract` reads.
const LAUNCHER_VARS: &[&str] = &[
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_JOB_ID",
    "OMP_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
];

/// What this process can say about `resolved`'s run, with the code's patch and copies to
/// write beside it.
pub fn take(resolved: &Resolved, experiment_dir: &Path) -> (RunRecord, Option<code::Taken>) {
    let taken = code::take(experiment_dir);
    let exp = &resolved.experiment;
    let json = serde_json::to_value(exp).expect("config serializes");
    let data = data::inputs(&json)
        .into_iter()
        .map(|(key, path, hub)| data::Fingerprint {
            hub,
            ..data::fingerprint(&key, &path)
        })
        .collect();
    let record = RunRecord {
        code: taken.as_ref().map(|t| t.code.clone()),
        build: build::now(exp.hardware.backend.as_str(), exp.hardware.device.is_cuda()),
        data,
        environment: environment(resolved),
    };
    (record, taken)
}

fn environment(resolved: &Resolved) -> BTreeMap<String, String> {
    let secrets: Vec<&str> = resolved
        .interpolated
        .secrets
        .iter()
        .map(|s| s.var.as_str())
        .collect();
    let mut names: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| {
            k.starts_with(crate::config::loader::ENV_PREFIX) || LAUNCHER_VARS.contains(&k.as_str())
        })
        .collect();
    for e in resolved.interpolated.exprs.values() {
        for i in &e.inputs {
            if let Input::Env { var, .. } = i {
                names.push(var.clone());
            }
        }
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|k| {
            let v = std::env::var(&k).ok()?;
            let v = if secrets.contains(&k.as_str()) || crate::config::interpolate::is_secret(&k) {
                "(secret: redacted)".to_string()
            } else {
                v
            };
            Some((k, v))
        })
        .collect()
}

/// Writes `record.json` and the code's files into `dir`.
pub fn write(dir: &Path, record: &RunRecord, taken: Option<&code::Taken>) -> Result<()> {
    if let Some(t) = taken {
        t.write(dir)?;
    }
    crate::durable::write(&dir.join(RECORD), &serde_json::to_vec_pretty(record)?)
}

/// `dir`'s record, if it has a readable one.
pub fn read(dir: &Path) -> Option<RunRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

/// The record as flat `section.key → value` leaves, for `show --explain` and `diff`.
pub fn leaves(record: &RunRecord) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let mut v = serde_json::to_value(record).expect("record serializes");
    // Inputs by the key that named them (`record.data[data.train_file].xxh3`), not by
    // position; an mtime alone is no difference.
    let data = v
        .as_object_mut()
        .and_then(|o| o.remove("data"))
        .and_then(|d| match d {
            serde_json::Value::Array(a) => Some(a),
            _ => None,
        })
        .unwrap_or_default();
    crate::config::render::leaves(&v, "record", &mut |k, v| {
        out.insert(k.to_string(), v.clone());
    });
    for mut f in data {
        let key = f["key"].as_str().unwrap_or("?").to_string();
        if let Some(o) = f.as_object_mut() {
            o.remove("key");
            o.remove("mtime");
        }
        crate::config::render::leaves(&f, &format!("record.data[{key}]"), &mut |k, v| {
            out.insert(k.to_string(), v.clone());
        });
    }
    out
}
