//! `runner schema`: the JSON Schemas generated from the config types (`config::schema`);
//! `--check` fails on a stale committed copy, `--write` refreshes them all, and with them
//! `docs/reference.md` (`config::reference`), generated from the same types.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::reference::{self, REFERENCE_FILE};
use crate::config::schema::{self, BASE_SCHEMA_FILE, EXPERIMENT_SCHEMA_FILE, PROFILE_SCHEMA_FILE};
use crate::config::types::JobKind;

/// Which schema `runner schema` prints.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Experiment,
    Job(JobKind),
    Profile,
    Base,
}

pub fn schema(which: Which, check: bool, write: bool, root: &Path) -> Result<ExitCode> {
    let mut files = schema::committed();
    files.push((REFERENCE_FILE.to_owned(), reference::markdown()));
    if check {
        let stale: Vec<String> = files
            .iter()
            .filter(|(path, text)| {
                std::fs::read_to_string(root.join(path)).ok().as_deref() != Some(text.as_str())
            })
            .map(|(path, _)| root.join(path).display().to_string())
            .collect();
        if stale.is_empty() {
            println!(
                "ok: {} schemas under {} and {} are up to date",
                files.len() - 1,
                root.join("schema").display(),
                root.join(REFERENCE_FILE).display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: stale or missing: {}\n  = help: the config types changed; run `cargo run -- schema --write` and commit the result",
            stale.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    if write {
        for (path, text) in &files {
            let path = root.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            crate::durable::write(&path, text.as_bytes())?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = match which {
        Which::Experiment => EXPERIMENT_SCHEMA_FILE.to_owned(),
        Which::Job(job) => schema::job_schema_file(job),
        Which::Profile => PROFILE_SCHEMA_FILE.to_owned(),
        Which::Base => BASE_SCHEMA_FILE.to_owned(),
    };
    let (_, text) = files
        .iter()
        .find(|(path, _)| *path == wanted)
        .expect("every schema `runner schema` prints is committed");
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
