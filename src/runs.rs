//! `runner runs`: the run directories under some folders, as rows of one table: status, the
//! configuration keys whose values differ between them (found by comparing their recorded
//! configurations), final loss, the best and last value of every evaluation metric, steps and
//! duration.
//!
//! Each run is read from its own files only (`meta.json`, `config.resolved.yaml`,
//! `summary.json`, and `metrics.jsonl` for what a run still going or stopped has not
//! summarised), so the table is as true for a run killed an hour ago as for one completed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::render::leaves;
use crate::rundir::{self, RESOLVED_CONFIG};
use crate::train::metrics::METRICS_FILE;
use crate::train::trainer::SUMMARY_FILE;

/// How deep below a folder run directories are looked for (`runs/<name>/<cell>` is 2).
const MAX_DEPTH: usize = 4;

/// Keys that differ between any two runs without saying anything about them.
const NOT_COMPARED: &[&str] = &["output_dir", "resume", "logging.dir", "description"];

/// One evaluation metric of a run: its best and last values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricSummary {
    pub best: f64,
    pub best_step: u64,
    pub last: f64,
}

/// One run as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The directory, as found under the folder given.
    pub run: String,
    pub status: String,
    /// The sweep cell's name, when the run is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// The values of the keys that differ between the listed runs.
    pub config: BTreeMap<String, Json>,
    pub final_loss: Option<f64>,
    /// `<set>.<metric>` → best and last value.
    pub eval: BTreeMap<String, MetricSummary>,
    pub steps: Option<u64>,
    pub total_steps: Option<u64>,
    pub seconds: Option<f64>,
    /// Why it stopped before its last step (early stopping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// The best of the listed runs by the metric the table is sorted or judged by.
    pub best: bool,
    /// Every recorded key, for finding the ones that differ (not printed).
    #[serde(skip)]
    leaves: BTreeMap<String, Json>,
}

/// The run directories under `folders`: a run directory is itself; a sweep directory is its
/// cells; another folder is searched (a few levels down) for both. Sorted by path.
pub fn find(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in folders {
        walk(f, 0, &mut out);
    }
    // `run-2` before `run-10`, `bs=8` before `bs=16`.
    out.sort_by(|a, b| natord::compare(&a.display().to_string(), &b.display().to_string()));
    out.dedup();
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if rundir::is_run_dir(dir) {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), depth + 1, out);
        }
    }
}

/// Reads every run in `dirs` into a row (a directory whose files cannot be read shows as
/// `unreadable`), fills in the keys that differ and marks the best run by `judge`.
pub fn rows(dirs: &[PathBuf], judge: Option<&str>) -> Vec<Row> {
    let mut rows: Vec<Row> = dirs.iter().map(|d| read(d)).collect();
    let varying = varying_keys(&rows);
    for r in &mut rows {
        r.config = varying
            .iter()
            .filter_map(|k| r.leaves.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
    }
    let judge = judge.map(str::to_owned).or_else(|| default_judge(&rows));
    if let Some(metric) = judge
        && let Some(best) = best_index(&rows, &metric)
    {
        rows[best].best = true;
    }
    rows
}

/// The keys whose values are not the same in every row (absent counts as a value).
fn varying_keys(rows: &[Row]) -> Vec<String> {
    let mut all: BTreeMap<&str, ()> = BTreeMap::new();
    for r in rows {
        for k in r.leaves.keys() {
            all.insert(k, ());
        }
    }
    all.into_keys()
        .filter(|k| {
            let first = rows.first().and_then(|r| r.leaves.get(*k));
            rows.iter().any(|r| r.leaves.get(*k) != first)
        })
        .map(str::to_owned)
        .collect()
}

fn read(dir: &Path) -> Row {
    let meta = rundir::read_meta(dir);
    let status = meta
        .as_ref()
        .map_or("unreadable", |m| m.status_now().as_str())
        .to_string();
    let mut leaves_map = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(RESOLVED_CONFIG))
        && let Ok(v) = serde_yaml::from_str::<Json>(&text)
    {
        leaves(&v, "", &mut |k, v| {
            if !k.starts_with("derived.") && !NOT_COMPARED.contains(&k) {
                leaves_map.insert(k.to_string(), v.clone());
            }
        });
    }
    let summary: Option<Json> = std::fs::read(dir.join(SUMMARY_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // The run's own `eval.greater_is_better` for its `metric_for_best`, else the name's.
    let judged = leaves_map
        .get("eval.metric_for_best")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let stated = leaves_map
        .get("eval.greater_is_better")
        .and_then(Json::as_bool);
    let higher = |key: &str| match (&judged, stated) {
        (Some(m), Some(h)) if m == key => h,
        _ => crate::config::metric::greater_is_better(key),
    };
    let curves = Curves::read(&dir.join(METRICS_FILE), &higher);
    let num = |k: &str| {
        summary
            .as_ref()
            .and_then(|s| s.get(k))
            .and_then(Json::as_f64)
    };
    let seconds = num("train_seconds").or_else(|| {
        let m = meta.as_ref()?;
        let start = chrono::DateTime::parse_from_rfc3339(&m.start_time).ok()?;
        let end = m.end_time.as_deref().or(m.heartbeat.as_deref())?;
        let end = chrono::DateTime::parse_from_rfc3339(end).ok()?;
        Some((end - start).num_milliseconds() as f64 / 1000.0)
    });
    Row {
        run: dir.display().to_string(),
        status,
        cell: meta
            .as_ref()
            .and_then(|m| m.sweep_cell.as_ref())
            .map(|c| c.name.clone()),
        config: BTreeMap::new(),
        final_loss: num("final_loss").or(curves.last_loss),
        eval: curves.eval,
        steps: num("steps").map(|s| s as u64).or(curves.last_step),
        total_steps: num("total_steps").map(|s| s as u64),
        seconds,
        stopped_early: meta.as_ref().and_then(|m| m.stopped_early.clone()),
        best: false,
        leaves: leaves_map,
    }
}

/// What `metrics.jsonl` says: the last training record and every metric's best and last.
#[derive(Default)]
struct Curves {
    last_loss: Option<f64>,
    last_step: Option<u64>,
    eval: BTreeMap<String, MetricSummary>,
}

impl Curves {
    fn read(path: &Path, greater_is_better: &dyn Fn(&str) -> bool) -> Curves {
        let mut c = Curves::default();
        for (step, values) in crate::train::metrics::read_scalars(path) {
            for (key, v) in values {
                if !key.contains('.') {
                    if key == "loss" {
                        c.last_loss = Some(v);
                        c.last_step = Some(step);
                    }
                    continue;
                }
                let higher = greater_is_better(&key);
                let e = c.eval.entry(key).or_insert(MetricSummary {
                    best: v,
                    best_step: step,
                    last: v,
                });
                e.last = v;
                if (higher && v > e.best) || (!higher && v < e.best) {
                    e.best = v;
                    e.best_step = step;
                }
            }
        }
        c
    }
}

/// The value `metric` has in a row: `final_loss`, `steps`, `seconds`, an evaluation metric
/// (its best value), or a configuration key.
pub fn value_of(row: &Row, metric: &str) -> Option<f64> {
    match metric {
        "final_loss" | "loss" => row.final_loss,
        "steps" => row.steps.map(|s| s as f64),
        "seconds" | "duration" => row.seconds,
        m => row
            .eval
            .get(m)
            .map(|s| s.best)
            .or_else(|| row.leaves.get(m).and_then(Json::as_f64)),
    }
}

/// Whether `metric` names something a row has.
pub fn knows(rows: &[Row], metric: &str) -> bool {
    ["final_loss", "loss", "steps", "seconds", "duration"].contains(&metric)
        || rows
            .iter()
            .any(|r| r.eval.contains_key(metric) || r.leaves.contains_key(metric))
}

/// Every name `--sort` takes for these rows.
pub fn sortable(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = ["final_loss", "steps", "seconds"]
        .map(String::from)
        .to_vec();
    let mut evals: Vec<String> = rows.iter().flat_map(|r| r.eval.keys().cloned()).collect();
    evals.sort();
    evals.dedup();
    names.extend(evals);
    names
}

/// Best first: higher first for accuracy-like metrics, lower first for loss-like ones; rows
/// without the value last.
pub fn sort(rows: &mut [Row], metric: &str) {
    let higher = higher_is_better(rows, metric);
    rows.sort_by(|a, b| match (value_of(a, metric), value_of(b, metric)) {
        (Some(x), Some(y)) if higher => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// The runs' `eval.metric_for_best`, when they all name the same one.
pub fn metric_for_best(rows: &[Row]) -> Option<String> {
    let named: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.leaves.get("eval.metric_for_best").and_then(Json::as_str))
        .collect();
    match named.first() {
        Some(Some(first)) if named.iter().all(|n| n == &Some(*first)) => Some(first.to_string()),
        _ => None,
    }
}

/// The metric the best run is judged by when `--sort` names none: the runs'
/// `eval.metric_for_best`, else the final loss.
fn default_judge(rows: &[Row]) -> Option<String> {
    Some(metric_for_best(rows).unwrap_or_else(|| "final_loss".into()))
}

/// Which way `metric` is better for these rows: as their `eval.greater_is_better` says when
/// it is their `metric_for_best`, else by its name; counts and durations lower.
fn higher_is_better(rows: &[Row], metric: &str) -> bool {
    if ["steps", "seconds", "duration", "final_loss"].contains(&metric) {
        return false;
    }
    rows.iter()
        .find_map(|r| {
            let judged = r.leaves.get("eval.metric_for_best")?.as_str()?;
            (judged == metric).then(|| r.leaves.get("eval.greater_is_better")?.as_bool())?
        })
        .unwrap_or_else(|| crate::config::metric::greater_is_better(metric))
}

fn best_index(rows: &[Row], metric: &str) -> Option<usize> {
    let higher = higher_is_better(rows, metric);
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.status == "completed")
        .filter_map(|(i, r)| value_of(r, metric).map(|v| (i, v)))
        .reduce(|a, b| {
            let better = if higher { b.1 > a.1 } else { b.1 < a.1 };
            if better { b } else { a }
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(leaves: &[(&str, Json)], loss: f64) -> Row {
        Row {
            run: String::new(),
            status: "completed".into(),
            cell: None,
            config: BTreeMap::new(),
            final_loss: Some(loss),
            eval: BTreeMap::new(),
            steps: None,
            total_steps: None,
            seconds: None,
            stopped_early: None,
            best: false,
            leaves: leaves
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn only_keys_that_differ_are_kept() {
        let rows = [
            row(&[("seed", 1.into()), ("optimizer.lr", 0.1.into())], 1.0),
            row(&[("seed", 2.into()), ("optimizer.lr", 0.1.into())], 0.5),
            row(
                &[
                    ("seed", 2.into()),
                    ("optimizer.lr", 0.1.into()),
                    ("x", 1.into()),
                ],
                0.7,
            ),
        ];
        assert_eq!(varying_keys(&rows), ["seed", "x"]);
        assert_eq!(best_index(&rows, "final_loss"), Some(1));
        let mut sorted = rows.to_vec();
        sort(&mut sorted, "final_loss");
        let losses: Vec<f64> = sorted.iter().filter_map(|r| r.final_loss).collect();
        assert_eq!(losses, [0.5, 0.7, 1.0]);
    }
}
