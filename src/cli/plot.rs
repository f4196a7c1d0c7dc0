//! `runner plot`: the curves of several runs in one PNG (`crate::plot`), labelled by the
//! configuration keys that differ between them (`crate::runs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use super::refuse;
use crate::config::sweep::{labels, value_text};
use crate::plot::{self, Chart, Curve};
use crate::runs;
use crate::train::metrics::METRICS_FILE;

/// Training records' own curves; anything else is an evaluation metric `<set>.<metric>`.
const TRAIN_CURVES: &[&str] = &["loss", "lr", "grad_norm", "samples_per_s"];

pub fn plot(dirs: &[PathBuf], metric: &str, output: &Path) -> Result<ExitCode> {
    if let Err(code) = super::folders_or_refuse(dirs) {
        return Ok(code);
    }
    let found = runs::find(dirs);
    if found.is_empty() {
        return Ok(refuse(&format!(
            "no run directories under {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rows = runs::rows(&found, None);
    let mut available: Vec<String> = TRAIN_CURVES.iter().map(|s| s.to_string()).collect();
    let mut curves = Vec::new();
    for (dir, row) in found.iter().zip(&rows) {
        let points = points(dir, metric, &mut available);
        if points.is_empty() {
            continue;
        }
        let label = if row.config.is_empty() {
            dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        } else {
            // As sweep cells are named: `lr=1e-3 bs=16 seed=1`.
            let keys: Vec<String> = row.config.keys().cloned().collect();
            labels(&keys)
                .iter()
                .zip(row.config.values())
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        curves.push(Curve { label, points });
    }
    if curves.is_empty() {
        available.sort();
        available.dedup();
        let close = crate::config::suggest::closest_value(metric, &available)
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        return Ok(refuse(&format!(
            "none of the {} run(s) has a `{metric}` curve in its {METRICS_FILE}; {close}they have: {}",
            found.len(),
            available.join(", ")
        )));
    }
    let title = format!(
        "{metric} of {} run{}",
        curves.len(),
        if curves.len() == 1 { "" } else { "s" }
    );
    let chart = Chart {
        title: &title,
        x_label: "step",
        y_label: metric,
        log_y: metric == "lr" && curves.iter().all(|c| c.points.iter().all(|p| p.1 > 0.0)),
    };
    plot::draw(output, &chart, &curves)?;
    println!(
        "wrote {} ({} curves of {metric})",
        output.display(),
        curves.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// (step, value) of `metric` in a run's metrics.jsonl; every curve it has is added to
/// `available`.
fn points(dir: &Path, metric: &str, available: &mut Vec<String>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (step, values) in crate::train::metrics::read_scalars(&dir.join(METRICS_FILE)) {
        for (name, v) in values {
            if name == metric {
                out.push((step as f64, v));
            }
            available.push(name);
        }
    }
    out
}
