//! What `runner diff` and `runner show RUN_DIR` read: a configuration as a flat list of keys,
//! each with its value and who set it, from an experiment file (with the usual profiles and
//! overrides) or from a run directory (its recorded configuration and provenance), and the
//! files it was read from with their sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::render::{full_value, leaves};
use crate::config::{Diagnostics, Request, Resolved, resolve_for_show};
use crate::rundir::{self, Source};

/// One side of a comparison.
pub struct Side {
    /// As given on the command line.
    pub name: PathBuf,
    /// Whether it is a run directory.
    pub run: bool,
    pub resolved: Resolved,
    /// Recorded origins (a run directory's provenance).
    recorded: BTreeMap<String, String>,
    /// A run's recorded files with their sha256 (a file's are read when compared).
    recorded_sources: Vec<Source>,
    /// A run's record (code, build, data), when it has one.
    pub record: Option<crate::record::RunRecord>,
}

impl Side {
    /// `path` (an experiment file or a run directory) with `request`'s profiles, overrides and
    /// environment. A run directory is its recorded configuration, without the environment's
    /// `RUNNER_…` variables (they were applied when it ran).
    pub fn load(path: &Path, request: &Request) -> Result<Side, Diagnostics> {
        let run = rundir::is_run_dir(path);
        let req = if run {
            rundir::recorded_request(path, request.clone())
        } else {
            Request {
                experiment: path.to_path_buf(),
                ..request.clone()
            }
        };
        let resolved = resolve_for_show(&req)?;
        let (recorded, recorded_sources) = if run {
            let meta = rundir::read_meta(path);
            (
                rundir::recorded_origins(path),
                meta.map(|m| m.sources).unwrap_or_default(),
            )
        } else {
            (BTreeMap::new(), Vec::new())
        };
        Ok(Side {
            name: path.to_path_buf(),
            run,
            resolved,
            recorded,
            recorded_sources,
            record: run.then(|| crate::record::read(path)).flatten(),
        })
    }

    /// Who set `key`: for a run directory, what its provenance recorded (unless an override
    /// given now changed it).
    pub fn origin(&self, key: &str) -> String {
        if key == "derived" || key.starts_with("derived.") {
            return "derived".into();
        }
        let now = self.resolved.origin_of(key);
        let from_record = matches!(
            &now,
            crate::config::Origin::File { path, .. } if path.ends_with(rundir::RESOLVED_CONFIG)
        ) || matches!(now, crate::config::Origin::Default);
        match (self.run && from_record, self.recorded.get(key)) {
            (true, Some(o)) => format!("{o} (recorded)"),
            _ => now.short(),
        }
    }

    /// The files this side was read from, with their sha256: recorded for a run, read now
    /// for a file.
    pub fn sources(&self) -> Vec<Source> {
        if self.run {
            self.recorded_sources.clone()
        } else {
            rundir::sources(&self.resolved)
        }
    }

    /// Every leaf (a list is one leaf), `derived` included.
    pub fn leaves(&self) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        leaves(&full_value(&self.resolved), "", &mut |k, v| {
            out.insert(k.to_string(), v.clone());
        });
        out
    }
}

/// One key that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub key: String,
    pub a: Option<Valued>,
    pub b: Option<Valued>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Valued {
    pub value: Json,
    pub origin: String,
}

/// A file both sides were read from whose content differs, or one only one side read.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// The comparison of two sides.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub differences: Vec<Difference>,
    /// Files read by both sides whose content changed (these count as differences).
    pub changed_files: Vec<FileChange>,
    /// Files only one side read (expected between two experiments; not a difference).
    pub other_files: Vec<FileChange>,
}

impl Comparison {
    pub fn same(&self) -> bool {
        self.differences.is_empty() && self.changed_files.is_empty()
    }
}

pub fn compare(a: &Side, b: &Side) -> Comparison {
    let (la, lb) = (a.leaves(), b.leaves());
    let mut keys: Vec<&String> = la.keys().chain(lb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut differences: Vec<Difference> = keys
        .into_iter()
        .filter(|k| la.get(*k) != lb.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            a: la.get(k).map(|v| Valued {
                value: v.clone(),
                origin: a.origin(k),
            }),
            b: lb.get(k).map(|v| Valued {
                value: v.clone(),
                origin: b.origin(k),
            }),
        })
        .collect();
    // Two runs' records: their code, build and data (the environment is the shell's).
    if let (Some(ra), Some(rb)) = (&a.record, &b.record) {
        let (ra, rb) = (crate::record::leaves(ra), crate::record::leaves(rb));
        let mut keys: Vec<&String> = ra.keys().chain(rb.keys()).collect();
        keys.sort();
        keys.dedup();
        let from = |r: &BTreeMap<String, Json>, k: &str| {
            r.get(k).map(|v| Valued {
                value: v.clone(),
                origin: crate::record::RECORD.to_string(),
            })
        };
        differences.extend(
            keys.into_iter()
                .filter(|k| !k.starts_with("record.environment.") && ra.get(*k) != rb.get(*k))
                .map(|k| Difference {
                    key: k.clone(),
                    a: from(&ra, k),
                    b: from(&rb, k),
                }),
        );
    }
    let by_path = |s: &Side| -> BTreeMap<String, String> {
        s.sources()
            .iter()
            .map(|f| (normalise(&f.path), f.sha256.clone()))
            .collect()
    };
    let (fa, fb) = (by_path(a), by_path(b));
    let mut changed_files = Vec::new();
    let mut other_files = Vec::new();
    let mut paths: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        let change = FileChange {
            path: p.clone(),
            a: fa.get(p).cloned(),
            b: fb.get(p).cloned(),
        };
        match (&change.a, &change.b) {
            (Some(x), Some(y)) if x != y => changed_files.push(change),
            (Some(_), Some(_)) => {}
            _ => other_files.push(change),
        }
    }
    Comparison {
        a: a.name.display().to_string(),
        b: b.name.display().to_string(),
        differences,
        changed_files,
        other_files,
    }
}

/// Recorded paths are absolute; a relative one (an older record) is taken from here.
fn normalise(path: &str) -> String {
    crate::host::absolute(Path::new(path)).display().to_string()
}
