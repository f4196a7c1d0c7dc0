//! `runner init`: a commented starter experiment listing every key of a job.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::schema::EXPERIMENT_SCHEMA_FILE;
use crate::config::starter;
use crate::config::types::JobKind;

pub fn init(job: &str, path: Option<&Path>) -> Result<ExitCode> {
    let Some(job) = JobKind::parse(job) else {
        // clap offers only the jobs' names; this is for a caller that skipped it.
        anyhow::bail!("unknown job `{job}`");
    };
    let target_dir = match path {
        Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::new(),
    };
    let schema_ref = schema_reference(&target_dir);
    let text = starter::starter(job, &schema_ref);
    match path {
        None => print!("{text}"),
        Some(p) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "`{}` already exists; runner init never overwrites a file",
                            p.display()
                        )
                    } else {
                        anyhow::anyhow!("cannot create `{}`: {e}", p.display())
                    }
                })?;
            file.write_all(text.as_bytes())
                .with_context(|| format!("cannot write `{}`", p.display()))?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `$schema` path for a file in `dir`: relative to the nearest `schema/runner.schema.json`
/// above it, else the conventional `../schema/runner.schema.json`.
fn schema_reference(dir: &Path) -> String {
    let start = crate::host::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    });
    for (ups, ancestor) in start.ancestors().enumerate() {
        if ancestor.join(EXPERIMENT_SCHEMA_FILE).is_file() {
            return format!("{}{EXPERIMENT_SCHEMA_FILE}", "../".repeat(ups));
        }
    }
    format!("../{EXPERIMENT_SCHEMA_FILE}")
}
