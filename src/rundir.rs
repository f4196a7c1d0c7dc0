//! The run directory: what a run leaves behind so that it can be understood and reproduced.
//!
//! `config.resolved.yaml` (feed it back to `runner run` to repeat the run), `provenance.yaml`
//! (the `show --explain` view: who set each value), and `meta.json` (runner version, git
//! state of the experiment's repository, command line, host, backend, start time).
//! Files are written atomically (temporary file, fsync, rename).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Resolved;
use crate::config::render::{Format, render};

pub const RESOLVED_CONFIG: &str = "config.resolved.yaml";
pub const PROVENANCE: &str = "provenance.yaml";
pub const META: &str = "meta.json";

/// Lifecycle of a run directory, recorded in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written by `runner run --dry-run`: configuration only, no training happened.
    Prepared,
    /// Training started (and is still going, or the process was killed).
    Running,
    /// Training finished; `summary.json` says how it went.
    Completed,
    /// Training stopped on an error, recorded in `error`.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitState {
    pub root: String,
    pub commit: Option<String>,
    pub dirty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub status: Status,
    pub runner_version: String,
    pub experiment_file: String,
    pub profiles: Vec<String>,
    pub command_line: Vec<String>,
    pub working_dir: String,
    pub hostname: String,
    pub backend: String,
    pub device: String,
    pub start_time: String,
    /// `null` when the experiment file is not inside a git work tree.
    pub git: Option<GitState>,
    /// When training completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why training failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a run directory cannot be used.
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refusal {}

/// The run directory of `resolved`, with `{timestamp}` filled in.
pub fn run_dir_path(resolved: &Resolved, now: chrono::DateTime<chrono::Utc>) -> PathBuf {
    PathBuf::from(
        resolved
            .derived
            .output_dir
            .replace("{timestamp}", &now.format("%Y%m%d-%H%M%S").to_string()),
    )
}

/// Refuses a directory that already holds a run (anything beyond a `--dry-run`), unless
/// the configuration resumes.
pub fn check_reusable(dir: &Path, resuming: bool) -> Result<(), Refusal> {
    let meta = dir.join(META);
    if resuming || !meta.exists() {
        return Ok(());
    }
    let status = std::fs::read_to_string(&meta)
        .ok()
        .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
        .map(|m| m.status);
    if status == Some(Status::Prepared) {
        return Ok(());
    }
    Err(Refusal(format!(
        "`{}` already holds a run; refusing to overwrite it. Choose another directory \
         (`--output-dir`, or `{{timestamp}}` in output_dir), or continue it with `--set resume=auto`",
        dir.display()
    )))
}

/// Creates the run directory and writes the configuration files.
pub fn prepare(
    resolved: &Resolved,
    dir: &Path,
    status: Status,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Meta> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the run directory `{}`", dir.display()))?;
    let mut config = String::from(
        "# Resolved by runner: every layer merged, defaults filled in. `runner run` on this file\n\
         # repeats the run; `derived:` is recomputed and ignored on input.\n",
    );
    config.push_str(&render(resolved, Format::Yaml, false));
    write_atomic(&dir.join(RESOLVED_CONFIG), config.as_bytes())?;
    let mut provenance = String::from(
        "# Each resolved value and the layer that set it (`runner show --explain`).\n",
    );
    provenance.push_str(&render(resolved, Format::Yaml, true));
    write_atomic(&dir.join(PROVENANCE), provenance.as_bytes())?;

    let exp_path = &resolved_experiment_path(resolved);
    let meta = Meta {
        status,
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment_file: absolute(exp_path).display().to_string(),
        profiles: resolved.profiles.clone(),
        command_line: std::env::args().collect(),
        working_dir: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        backend: resolved.experiment.hardware.backend.as_str().to_string(),
        device: resolved.experiment.hardware.device.to_string(),
        start_time: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git: git_state(exp_path.parent().unwrap_or(Path::new("."))),
        end_time: None,
        error: None,
    };
    let json = serde_json::to_string_pretty(&meta).expect("meta serializes") + "\n";
    write_atomic(&dir.join(META), json.as_bytes())?;
    Ok(meta)
}

/// Records how training ended in `meta.json`.
pub fn finish(dir: &Path, meta: &Meta, error: Option<String>) -> Result<()> {
    let mut meta = meta.clone();
    meta.status = if error.is_some() {
        Status::Failed
    } else {
        Status::Completed
    };
    meta.end_time = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    meta.error = error;
    let json = serde_json::to_string_pretty(&meta).expect("meta serializes") + "\n";
    write_atomic(&dir.join(META), json.as_bytes())
}

fn resolved_experiment_path(resolved: &Resolved) -> PathBuf {
    use crate::config::diagnostic::FileRole;
    use crate::config::layers::LayerKind;
    resolved
        .layers
        .layers()
        .iter()
        .find_map(|l| match &l.kind {
            LayerKind::File {
                role: FileRole::Experiment,
                path,
                ..
            } => Some(path.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Git state of the repository containing `dir`, by asking the `git` binary (cheaper to
/// build than libgit2 bindings, and it is what users have). `None` outside a work tree or
/// without git.
pub fn git_state(dir: &Path) -> Option<GitState> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let root = git(&["rev-parse", "--show-toplevel"])?;
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(GitState {
        root,
        commit,
        dirty,
    })
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    let result = (|| -> std::io::Result<()> {
        tmp.1.write_all(bytes)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp.0);
    }
    result.with_context(|| format!("cannot write `{}`", path.display()))
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write in `{}`", dir.display()))?;
    Ok((tmp, file))
}
