//! `runner show`: the resolved configuration and its derived values; what the engine cannot
//! train is a warning here, so any configuration can be looked at. A run directory shows its
//! recorded configuration, and `--explain` its recorded provenance.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, report};
use crate::compare::Side;
use crate::config::render::{self, Format};

pub fn show(config: &ConfigArgs, format: Format, explain: bool) -> Result<ExitCode> {
    let side = match Side::load(&config.experiment, &config.request()) {
        Ok(s) => s,
        Err(d) => return Ok(report(&d, &config.experiment)),
    };
    crate::config::print_warnings(&side.resolved);
    // A sweep prints the experiment its cells build on; every cell must resolve too.
    if !side.run && (side.resolved.experiment.sweep.is_some() || !config.multirun.is_empty()) {
        match super::sweep::checked_for_show(&config.request(), &config.experiment) {
            Ok(crate::config::loader::Swept::Sweep(plan)) => eprintln!(
                "note: {}; this is the experiment they build on (`runner sweep --dry-run` lists them)",
                super::sweep::summary_line(&plan)
            ),
            Ok(_) => {}
            Err(code) => return Ok(code),
        }
    }
    let origin = |key: &str| side.origin(key);
    let text = if side.run {
        render::render_with(&side.resolved, format, explain, Some(&origin))
    } else {
        render::render(&side.resolved, format, explain)
    };
    // A run directory's record (code, build, data) beside its provenance.
    let text = match (&side.record, explain) {
        (Some(record), true) => with_record(text, format, record),
        _ => text,
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`runner show … | head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}

/// `--explain` of a run directory: its record.json as a `record` object (JSON), or as
/// comment lines after the configuration (YAML, TOML), so that the output still reads back
/// as the configuration it shows.
fn with_record(text: String, format: Format, record: &crate::record::RunRecord) -> String {
    if let Format::Json = format
        && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        v["record"] = serde_json::to_value(record).expect("record serializes");
        return serde_json::to_string_pretty(&v).expect("json serializes") + "\n";
    }
    let mut out = text;
    out.push_str("# record.json: the code, build and data this run trained with\n");
    for (k, v) in crate::record::leaves(record) {
        out.push_str(&format!("# {k}: {v}\n"));
    }
    out
}
