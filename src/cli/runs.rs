//! `runner runs`: a table of run directories (`crate::runs`), as text, CSV or JSON.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use comfy_table::{CellAlignment, Table, presets::NOTHING};

use super::args::RunsFormat;
use super::refuse;
use crate::config::sweep::compact;
use crate::runs::{self, Row};

pub fn runs(
    dirs: &[PathBuf],
    sort: Option<&str>,
    shown: &[String],
    format: RunsFormat,
) -> Result<ExitCode> {
    let default = [PathBuf::from("runs")];
    if dirs.is_empty() && !default[0].is_dir() {
        println!("no run directories: there is no `runs` folder here (give DIR…)");
        return Ok(ExitCode::SUCCESS);
    }
    let dirs = if dirs.is_empty() { &default[..] } else { dirs };
    if let Err(code) = super::folders_or_refuse(dirs) {
        return Ok(code);
    }
    let found = runs::find(dirs);
    let mut rows = runs::rows(&found, sort);
    if let Some(metric) = sort {
        if !runs::knows(&rows, metric) {
            let names = runs::sortable(&rows);
            let close = crate::config::suggest::closest_value(metric, &names)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            return Ok(refuse(&format!(
                "no listed run has `{metric}`; {close}--sort takes: {}, or a configuration key",
                names.join(", ")
            )));
        }
        runs::sort(&mut rows, metric);
    }
    let text = match format {
        RunsFormat::Json => serde_json::to_string_pretty(&rows)? + "\n",
        RunsFormat::Csv => csv_text(&rows)?,
        RunsFormat::Table if rows.is_empty() => format!(
            "no run directories under {}\n",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RunsFormat::Table => table(&rows, &table_metrics(&rows, shown, sort)).to_string() + "\n",
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}

/// The columns every format shares: keys that vary, then metrics.
fn columns(rows: &[Row]) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<String> = rows.iter().flat_map(|r| r.config.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    let mut metrics: Vec<String> = rows.iter().flat_map(|r| r.eval.keys().cloned()).collect();
    metrics.sort();
    metrics.dedup();
    (keys, metrics)
}

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

fn cells(row: &Row, keys: &[String], metrics: &[String]) -> Vec<String> {
    let mut c = vec![row.run.clone(), row.status.clone()];
    c.extend(
        keys.iter()
            .map(|k| row.config.get(k).map(compact).unwrap_or_default()),
    );
    c.push(num(row.final_loss));
    for m in metrics {
        let s = row.eval.get(m);
        c.push(num(s.map(|s| s.best)));
        c.push(num(s.map(|s| s.last)));
    }
    c.push(match (row.steps, row.total_steps) {
        (Some(s), Some(t)) if s != t => format!("{s}/{t}"),
        (Some(s), _) => s.to_string(),
        _ => String::new(),
    });
    c.push(row.seconds.map(|s| format!("{s:.1}s")).unwrap_or_default());
    c
}

fn header(keys: &[String], metrics: &[String]) -> Vec<String> {
    let mut h = vec!["run".to_string(), "status".into()];
    h.extend(keys.iter().cloned());
    h.push("final_loss".into());
    for m in metrics {
        h.push(format!("{m} best"));
        h.push(format!("{m} last"));
    }
    h.extend(["steps".into(), "duration".into()]);
    h
}

/// The metrics a table has room for: those asked for, else the one the runs judge by
/// (`eval.metric_for_best`, or `--sort`), else all.
fn table_metrics(rows: &[Row], shown: &[String], sort: Option<&str>) -> Vec<String> {
    let (_, all) = columns(rows);
    if !shown.is_empty() {
        return all.into_iter().filter(|m| shown.contains(m)).collect();
    }
    let judged = sort
        .map(str::to_owned)
        .or_else(|| runs::metric_for_best(rows))
        .filter(|m| all.contains(m));
    match judged {
        Some(m) => vec![m],
        None => all,
    }
}

fn table(rows: &[Row], metrics: &[String]) -> Table {
    let (keys, _) = columns(rows);
    let metrics = metrics.to_vec();
    let mut t = Table::new();
    t.load_preset(NOTHING);
    let mut h = vec![String::new()];
    h.extend(header(&keys, &metrics));
    t.set_header(h);
    for r in rows {
        let mut c = vec![if r.best {
            "*".to_string()
        } else {
            String::new()
        }];
        c.extend(cells(r, &keys, &metrics));
        t.add_row(c);
    }
    // Numbers read best right-aligned.
    for i in (3 + keys.len())..(3 + keys.len() + 1 + 2 * metrics.len() + 2) {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn csv_text(rows: &[Row]) -> Result<String> {
    let (keys, metrics) = columns(rows);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut h = header(&keys, &metrics);
    h.push("best".into());
    w.write_record(&h)?;
    for r in rows {
        let mut c = cells(r, &keys, &metrics);
        c.push(r.best.to_string());
        w.write_record(&c)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
