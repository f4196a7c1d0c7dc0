//! `runner sweep`: every cell resolved and judged before any runs, then the cells run, each as
//! its own `runner run --sweep-cell` process.
//!
//! The sweep directory (the experiment's `output_dir`) holds `sweep.yaml` (what was swept,
//! over which experiment), `cells.json` (the index: each cell's name, values, directory and
//! configuration hash) and one ordinary run directory per cell. A cell's directory records
//! its hash in `meta.json` (`sweep_cell`), which is what a sweep run again compares: equal,
//! a completed cell is skipped and an interrupted or failed one resumed (`resume: auto`);
//! different, the cell is reported and its directory left alone.

pub mod exec;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::config::sweep::{Cell, config_sha256};
use crate::config::{Request, Resolved, loader::SweepPlan};
use crate::durable;
use crate::rundir::{self, Existing};

pub const SWEEP_FILE: &str = "sweep.yaml";
pub const CELLS_FILE: &str = "cells.json";

/// What a cell's directory holds, against what the files make of the cell now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing yet (or a dry run's configuration): it runs.
    New,
    /// Failed or interrupted with the same configuration: it runs again and resumes.
    Resume,
    /// Completed with the same configuration: skipped.
    Done,
    /// Another process is training it.
    Live,
    /// Its directory holds a run of another configuration (the experiment or a base
    /// changed since): reported, never overwritten.
    Changed,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::New => "new",
            State::Resume => "resume",
            State::Done => "done",
            State::Live => "running elsewhere",
            State::Changed => "changed",
        }
    }
    /// Whether this sweep runs the cell.
    pub fn runs(&self) -> bool {
        matches!(self, State::New | State::Resume)
    }
}

/// One cell, resolved and judged.
pub struct Judged<'a> {
    pub cell: &'a Cell,
    pub resolved: &'a Resolved,
    pub dir: PathBuf,
    pub state: State,
    pub config_sha256: String,
}

/// Judges every (valid) cell of `plan` against its directory.
pub fn judge(plan: &SweepPlan) -> Vec<Judged<'_>> {
    plan.sweep
        .cells
        .iter()
        .zip(&plan.cells)
        .filter_map(|(cell, r)| r.as_ref().ok().map(|r| (cell, r)))
        .map(|(cell, resolved)| {
            let dir = PathBuf::from(&resolved.derived.output_dir);
            let hash = config_sha256(&resolved.experiment);
            let recorded = |m: &rundir::Meta| {
                m.sweep_cell
                    .as_ref()
                    .is_some_and(|c| c.config_sha256 == hash)
            };
            let state = match rundir::inspect(&dir) {
                Existing::Nothing | Existing::Prepared => State::New,
                Existing::Live(_) => State::Live,
                Existing::Completed(m) if recorded(&m) => State::Done,
                Existing::Ended(m) if recorded(&m) => State::Resume,
                Existing::Completed(_) | Existing::Ended(_) => State::Changed,
            };
            Judged {
                cell,
                resolved,
                dir,
                state,
                config_sha256: hash,
            }
        })
        .collect()
}

/// `sweep.yaml`: what was swept over which experiment, as the sweep command was given it.
#[derive(Serialize)]
struct SweepRecord<'a> {
    experiment: String,
    profiles: &'a [String],
    overrides: &'a [String],
    multirun: &'a [String],
    keys: &'a [String],
    cells: usize,
    max_parallel: u32,
    runner_version: &'static str,
    /// The experiment's resolved configuration, the base of every cell.
    base: serde_json::Value,
}

#[derive(Serialize)]
struct IndexEntry<'a> {
    index: usize,
    name: &'a str,
    dir: String,
    values: serde_json::Map<String, serde_json::Value>,
    config_sha256: &'a str,
}

/// Writes `sweep.yaml` and `cells.json` into `dir` (durably; rewritten by every run of the
/// sweep, so the index lists the cells the files make now).
pub fn write_record(dir: &Path, req: &Request, plan: &SweepPlan, judged: &[Judged]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        crate::error::fail(
            format!("cannot create the sweep directory `{}`: {e}", dir.display()),
            "check the permissions of output_dir, or pick another with --output-dir",
        )
    })?;
    let req_base = &plan.base;
    let record = SweepRecord {
        experiment: crate::host::absolute(&req.experiment).display().to_string(),
        profiles: &req_base.profiles,
        overrides: &req.overrides,
        multirun: &req.multirun,
        keys: &plan.sweep.keys,
        cells: plan.sweep.cells.len(),
        max_parallel: plan.sweep.max_parallel,
        runner_version: env!("CARGO_PKG_VERSION"),
        base: crate::config::render::full_value(req_base),
    };
    let mut text = String::from(
        "# Written by `runner sweep`: the sweep and the experiment every cell builds on.\n",
    );
    text.push_str(&serde_yaml::to_string(&record)?);
    durable::write(&dir.join(SWEEP_FILE), text.as_bytes())?;
    let index: Vec<IndexEntry> = judged
        .iter()
        .map(|j| IndexEntry {
            index: j.cell.index,
            name: &j.cell.name,
            dir: j.dir.display().to_string(),
            values: j.cell.values.iter().cloned().collect(),
            config_sha256: &j.config_sha256,
        })
        .collect();
    durable::write(&dir.join(CELLS_FILE), &serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}

/// Whether `dir` is a sweep directory.
pub fn is_sweep_dir(dir: &Path) -> bool {
    dir.join(SWEEP_FILE).is_file()
}
