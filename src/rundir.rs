//! The run directory: what a run leaves behind so that it can be understood and reproduced.
//!
//! `config.resolved.yaml` (feed it back to `runner run` to repeat the run), `provenance.yaml`
//! (the `show --explain` view: who set each value), and `meta.json` (runner version, git
//! state of the experiment's repository, command line, host, backend, start time, and how the
//! run stands). Every file is written durably (`crate::durable`).
//!
//! A running run's `meta.json` names its process (pid and start time, host) and carries a
//! heartbeat, renewed every [`HEARTBEAT`]: a run killed outright (SIGKILL, a lost machine)
//! cannot say so itself, so whatever reads the record judges it with [`Meta::status_now`] —
//! `running` only while that process lives (same host) or the heartbeat is fresh (another
//! host), `interrupted` otherwise. A live run's directory is never taken over.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Resolved;
use crate::config::render::{Format, render};
use crate::{durable, host};

pub const RESOLVED_CONFIG: &str = "config.resolved.yaml";
pub const PROVENANCE: &str = "provenance.yaml";
pub const META: &str = "meta.json";

/// How often a running run renews its heartbeat in `meta.json`.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A heartbeat older than this, from another host, means the run is gone.
pub const STALE: Duration = Duration::from_secs(60);

/// Lifecycle of a run directory, recorded in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    /// Written by `runner run --dry-run`: configuration only, no training happened.
    Prepared,
    /// Training is going on (see [`Meta::status_now`] for a record whose process died).
    Running,
    /// Training finished; `summary.json` says how it went.
    Completed,
    /// Training stopped on an error, recorded in `error`.
    Failed,
    /// Stopped by a signal at a step boundary (`signal`), or killed outright; `resume=auto`
    /// continues from the last checkpoint.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
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
    /// Every file the configuration was read from (the experiment, the bases it extends,
    /// profile files) with its sha256, so that a base changed later shows in `runner diff`
    /// instead of silently rewriting what this run was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// Values read from secret-looking variables (`${env:HF_TOKEN}`): the recorded
    /// configuration keeps them unresolved; this says whether each was set, and a hash of
    /// its value to tell a rerun whether it is the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
    /// The process that trains (rank 0's), and when it started (clock ticks since boot, to
    /// tell it from a later process with the same pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Renewed every [`HEARTBEAT`] while the run is going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// When training completed, failed or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why training failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The signal that interrupted training (`SIGINT`, `SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Why a completed run took fewer steps than planned (early stopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// The sweep cell this run is (`runner sweep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_cell: Option<CellRecord>,
}

/// A sweep cell as its run directory records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub index: usize,
    pub name: String,
    /// The swept keys and this cell's values.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Of the resolved configuration without `output_dir` and `resume`
    /// (`config::sweep::config_sha256`): a sweep run again compares it with what its files
    /// resolve to now, and never overwrites a cell whose configuration changed.
    pub config_sha256: String,
}

impl CellRecord {
    pub fn of(resolved: &Resolved) -> Option<CellRecord> {
        let cell = resolved.cell.as_ref()?;
        Some(CellRecord {
            index: cell.index,
            name: cell.name.clone(),
            values: cell.values.iter().cloned().collect(),
            config_sha256: crate::config::sweep::config_sha256(&resolved.experiment),
        })
    }
}

/// A file the configuration was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its absolute path.
    pub path: String,
    /// `experiment`, `base` or `profile`.
    pub role: String,
    /// Of the file's bytes when the run started.
    pub sha256: String,
}

/// A secret a configuration read, as the record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretUse {
    pub key: String,
    pub variable: String,
    pub set: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The files `resolved` was read from that are on disk (built-in presets are part of the
/// binary, whose version the record names).
pub fn sources(resolved: &Resolved) -> Vec<Source> {
    use crate::config::diagnostic::FileRole;
    use crate::config::layers::LayerKind;
    use sha2::Digest as _;
    resolved
        .layers
        .layers()
        .iter()
        .filter_map(|l| {
            let LayerKind::File { role, path, .. } = &l.kind else {
                return None;
            };
            let bytes = std::fs::read(path).ok()?;
            let role = match role {
                FileRole::Experiment => "experiment",
                FileRole::Base { .. } => "base",
                FileRole::Profile(_) => "profile",
            };
            Some(Source {
                path: host::absolute(path).display().to_string(),
                role: role.into(),
                sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
            })
        })
        .collect()
}

impl Meta {
    /// The status as it stands now: a `running` record whose process is gone (same host) or
    /// whose heartbeat is stale (another host) reads as interrupted.
    pub fn status_now(&self) -> Status {
        if self.status == Status::Running && !self.is_live() {
            Status::Interrupted
        } else {
            self.status
        }
    }

    /// Whether the process this record names is still training.
    pub fn is_live(&self) -> bool {
        if self.status != Status::Running {
            return false;
        }
        if self.hostname == host::hostname()
            && let Some(pid) = self.pid
        {
            return host::is_alive(pid, self.pid_start);
        }
        self.heartbeat
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| {
                let age = chrono::Utc::now().signed_duration_since(t);
                age.to_std().is_ok_and(|a| a < STALE) || age < chrono::TimeDelta::zero()
            })
    }

    /// Where this record says the process is, for messages.
    pub fn whereabouts(&self) -> String {
        let pid = self.pid.map(|p| format!("pid {p} on ")).unwrap_or_default();
        let beat = self
            .heartbeat
            .as_deref()
            .map(|t| format!(", heartbeat {t}"))
            .unwrap_or_default();
        format!("{pid}{}{beat}", self.hostname)
    }
}

/// What a directory holds before a run uses it.
#[derive(Debug, Clone)]
pub enum Existing {
    /// Nothing (or no readable `meta.json`).
    Nothing,
    /// A `--dry-run`'s configuration.
    Prepared,
    /// A run whose process is still training.
    Live(Meta),
    /// A run that completed.
    Completed(Meta),
    /// A run that failed or was interrupted (or whose process died).
    Ended(Meta),
}

/// What `dir` holds.
pub fn inspect(dir: &Path) -> Existing {
    let Some(meta) = read_meta(dir) else {
        return Existing::Nothing;
    };
    match meta.status_now() {
        Status::Prepared => Existing::Prepared,
        Status::Running => Existing::Live(meta),
        Status::Completed => Existing::Completed(meta),
        Status::Failed | Status::Interrupted => Existing::Ended(meta),
    }
}

/// `dir`'s `meta.json`, if it has a readable one.
pub fn read_meta(dir: &Path) -> Option<Meta> {
    let text = std::fs::read_to_string(dir.join(META)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Why a run directory cannot be used (a configuration problem: exit 2).
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refusal {}

/// The refusal for a directory a live run trains in.
pub fn live_refusal(dir: &Path, meta: &Meta) -> Refusal {
    Refusal(format!(
        "`{}` is being trained right now ({}); runner never takes over a live run. Wait for it \
         or stop it, or choose another directory (`--output-dir`)",
        dir.display(),
        meta.whereabouts()
    ))
}

/// Who set each value of a recorded run, read back from its `provenance.yaml` (dotted key →
/// origin as `--explain` printed it), empty when the file is missing.
pub fn recorded_origins(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join(PROVENANCE)) else {
        return out;
    };
    let mut sections: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let depth = (line.len() - line.trim_start().len()) / 2;
        sections.truncate(depth);
        let content = line.trim_start();
        match content.rfind("  # ") {
            Some(at) => {
                let Some((key, _)) = content[..at].split_once(':') else {
                    continue;
                };
                let mut path = sections.clone();
                path.push(key.to_string());
                out.insert(path.join("."), content[at + 4..].trim().to_string());
            }
            None => {
                if let Some(section) = content.strip_suffix(':') {
                    sections.push(section.to_string());
                }
            }
        }
    }
    out
}

/// `req` aimed at the run in `dir`: its recorded configuration, without the environment's
/// `RUNNER_…` variables (they were applied when it ran; the rest of the environment serves
/// the `${env:…}` a recorded configuration keeps for secrets).
pub fn recorded_request(dir: &Path, mut req: crate::config::Request) -> crate::config::Request {
    req.experiment = dir.join(RESOLVED_CONFIG);
    req.env
        .retain(|(k, _)| !k.starts_with(crate::config::loader::ENV_PREFIX));
    req
}

/// Whether `path` is a run directory (it holds a recorded configuration).
pub fn is_run_dir(path: &Path) -> bool {
    path.is_dir() && path.join(RESOLVED_CONFIG).is_file()
}

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
/// the configuration resumes it; a live run is refused either way.
pub fn check_reusable(dir: &Path, resuming: bool) -> Result<(), Refusal> {
    inspect(dir).check(dir, resuming)
}

impl Existing {
    /// [`check_reusable`] for what `dir` was found to hold.
    pub fn check(&self, dir: &Path, resuming: bool) -> Result<(), Refusal> {
        match self {
            Existing::Nothing | Existing::Prepared => Ok(()),
            Existing::Live(meta) => Err(live_refusal(dir, meta)),
            Existing::Completed(_) | Existing::Ended(_) if resuming => Ok(()),
            Existing::Completed(_) | Existing::Ended(_) => Err(Refusal(format!(
                "`{}` already holds a run; refusing to overwrite it. Choose another directory \
                 (`--output-dir`, or `{{timestamp}}` in output_dir), or continue it with `--set \
                 resume=auto`",
                dir.display()
            ))),
        }
    }
}

/// A run directory's `meta.json`, shared by whatever updates it (the heartbeat, the end of
/// training, the data-parallel watchdog); every update is one durable write.
pub struct Record {
    dir: PathBuf,
    meta: Mutex<Meta>,
}

impl Record {
    fn lock(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the record and writes it.
    pub fn update(&self, change: impl FnOnce(&mut Meta)) -> Result<()> {
        let mut meta = self.lock();
        change(&mut meta);
        write_meta(&self.dir, &meta)
    }

    /// Renews the heartbeat every [`HEARTBEAT`] on a thread of its own, until the returned
    /// guard is dropped.
    pub fn keep_alive(self: &Arc<Self>) -> Heartbeat {
        let (tx, rx) = channel::<()>();
        let record = self.clone();
        let handle = std::thread::Builder::new()
            .name("runner-heartbeat".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                    if let Err(e) = record.update(|m| m.heartbeat = Some(now_text())) {
                        tracing::warn!("cannot renew the heartbeat in meta.json: {e:#}");
                    }
                }
            })
            .ok();
        Heartbeat {
            stop: Some(tx),
            handle,
        }
    }

    /// Records how training ended: completed, failed (with the error) or interrupted (by the
    /// named signal).
    pub fn finish(&self, end: End) -> Result<()> {
        self.update(|m| {
            m.end_time = Some(now_text());
            m.heartbeat = None;
            match end {
                End::Completed => m.status = Status::Completed,
                End::Failed(error) => {
                    m.status = Status::Failed;
                    m.error = Some(error);
                }
                End::Interrupted(signal) => {
                    m.status = Status::Interrupted;
                    m.signal = Some(signal);
                }
            }
        })
    }
}

/// How a run ended, for [`Record::finish`].
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Completed,
    Failed(String),
    Interrupted(String),
}

/// Stops the heartbeat thread when dropped.
pub struct Heartbeat {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let json = serde_json::to_string_pretty(meta).expect("meta serializes") + "\n";
    durable::write(&dir.join(META), json.as_bytes())
}

/// Creates the run directory and writes the configuration files and `meta.json` (with this
/// process and a first heartbeat when `status` is running).
pub fn prepare(
    resolved: &Resolved,
    dir: &Path,
    status: Status,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Arc<Record>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the run directory `{}`", dir.display()))?;
    let mut config = String::from(
        "# Resolved by runner: every layer merged, defaults filled in. `runner run` on this file\n\
         # repeats the run; `derived:` is recomputed and ignored on input.\n",
    );
    config.push_str(&render(resolved, Format::Yaml, false));
    durable::write(&dir.join(RESOLVED_CONFIG), config.as_bytes())?;
    let sources = sources(resolved);
    let mut provenance = String::from(
        "# Each resolved value and the layer that set it (`runner show --explain`).\n",
    );
    for source in &sources {
        provenance.push_str(&format!(
            "# {} {} sha256:{}\n",
            source.role, source.path, source.sha256
        ));
    }
    provenance.push_str(&render(resolved, Format::Yaml, true));
    durable::write(&dir.join(PROVENANCE), provenance.as_bytes())?;

    let exp_path = &resolved_experiment_path(resolved);
    // The code, the build, the data's fingerprints and the environment (`record.json`).
    let started = std::time::Instant::now();
    let exp_dir = exp_path.parent().unwrap_or(Path::new("."));
    // A run repeated from a run directory's recorded configuration (`runner rerun`) works in
    // the code that run's record names.
    let code_dir = read_meta(exp_dir)
        .filter(|_| exp_path.ends_with(RESOLVED_CONFIG) && crate::record::read(exp_dir).is_some())
        .and_then(|m| {
            Path::new(&m.experiment_file)
                .parent()
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| exp_dir.to_path_buf());
    let (record, code) = crate::record::take(resolved, &code_dir);
    tracing::debug!("run record in {:.3}s", started.elapsed().as_secs_f64());
    let running = status == Status::Running;
    let pid = std::process::id();
    let meta = Meta {
        status,
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment_file: host::absolute(exp_path).display().to_string(),
        profiles: resolved.profiles.clone(),
        command_line: std::env::args().collect(),
        working_dir: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        hostname: host::hostname(),
        backend: resolved.experiment.hardware.backend.as_str().to_string(),
        device: resolved.experiment.hardware.device.to_string(),
        start_time: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git: code.as_ref().map(|t| GitState {
            root: t.code.root.clone(),
            commit: t.code.commit.clone(),
            dirty: t.code.dirty,
        }),
        sources,
        secrets: resolved
            .interpolated
            .secrets
            .iter()
            .map(|s| SecretUse {
                key: s.path.clone(),
                variable: s.var.clone(),
                set: s.set,
                sha256: s.sha256.clone(),
            })
            .collect(),
        pid: running.then_some(pid),
        pid_start: running.then(|| host::start_time(pid)).flatten(),
        heartbeat: running.then(now_text),
        end_time: None,
        error: None,
        signal: None,
        stopped_early: None,
        sweep_cell: CellRecord::of(resolved),
    };
    write_meta(dir, &meta)?;
    crate::record::write(dir, &record, code.as_ref())?;
    Ok(Arc::new(Record {
        dir: dir.to_path_buf(),
        meta: Mutex::new(meta),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(status: Status) -> Meta {
        Meta {
            status,
            runner_version: "0".into(),
            experiment_file: "e.yaml".into(),
            profiles: vec![],
            command_line: vec![],
            working_dir: ".".into(),
            hostname: host::hostname(),
            backend: "flex".into(),
            device: "cpu".into(),
            start_time: now_text(),
            git: None,
            sources: vec![],
            secrets: vec![],
            pid: None,
            pid_start: None,
            heartbeat: None,
            end_time: None,
            error: None,
            signal: None,
            stopped_early: None,
            sweep_cell: None,
        }
    }

    #[test]
    fn a_running_record_reads_as_interrupted_once_its_process_is_gone() {
        let me = std::process::id();
        let live = Meta {
            pid: Some(me),
            pid_start: host::start_time(me),
            ..meta(Status::Running)
        };
        assert_eq!(live.status_now(), Status::Running);
        let dead = Meta {
            pid_start: live.pid_start.map(|t| t + 1),
            ..live.clone()
        };
        assert_eq!(dead.status_now(), Status::Interrupted, "the pid was reused");
        // Another host: the heartbeat decides.
        let remote = |beat: chrono::DateTime<chrono::Utc>| Meta {
            hostname: "elsewhere".into(),
            pid: Some(1),
            heartbeat: Some(beat.to_rfc3339()),
            ..meta(Status::Running)
        };
        assert_eq!(remote(chrono::Utc::now()).status_now(), Status::Running);
        let old = chrono::Utc::now() - chrono::TimeDelta::seconds(600);
        assert_eq!(remote(old).status_now(), Status::Interrupted);
        assert_eq!(meta(Status::Completed).status_now(), Status::Completed);
    }

    #[test]
    fn provenance_reads_back_as_origins_by_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PROVENANCE),
            "# header\n# experiment e.yaml sha256:00\nname: t                  # e.yaml:1:1\ntrain:\n  epochs: 3               # default\n  note: \"a  # b\"          # command line --set train.note=x\nderived:\n  model:\n    width: 4        # derived\n",
        )
        .unwrap();
        let o = recorded_origins(dir.path());
        assert_eq!(o["name"], "e.yaml:1:1");
        assert_eq!(o["train.epochs"], "default");
        assert_eq!(o["train.note"], "command line --set train.note=x");
        assert_eq!(o["derived.model.width"], "derived");
    }

    #[test]
    fn a_live_run_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let live = Meta {
            pid: Some(me),
            pid_start: host::start_time(me),
            ..meta(Status::Running)
        };
        write_meta(dir.path(), &live).unwrap();
        let refusal = check_reusable(dir.path(), true).unwrap_err();
        assert!(refusal.0.contains("being trained right now"), "{refusal}");
        assert!(refusal.0.contains(&format!("pid {me}")), "{refusal}");
        write_meta(dir.path(), &meta(Status::Interrupted)).unwrap();
        assert!(check_reusable(dir.path(), true).is_ok());
        assert!(check_reusable(dir.path(), false).is_err());
    }
}
