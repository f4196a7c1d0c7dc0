//! `runner schema`: the JSON Schemas generated from the config types; `--check` fails on a stale
//! committed copy, `--write` refreshes it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::schema::{self, BASE_SCHEMA_FILE, EXPERIMENT_SCHEMA_FILE, PROFILE_SCHEMA_FILE};

/// Which schema `runner schema` prints.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Experiment,
    Profile,
    Base,
}

pub fn schema(which: Which, check: bool, write: bool, root: &Path) -> Result<ExitCode> {
    let files = [
        (
            root.join(EXPERIMENT_SCHEMA_FILE),
            schema::render(&schema::experiment_schema()),
        ),
        (
            root.join(PROFILE_SCHEMA_FILE),
            schema::render(&schema::profile_schema()),
        ),
        (
            root.join(BASE_SCHEMA_FILE),
            schema::render(&schema::base_schema()),
        ),
    ];
    if check {
        let stale: Vec<String> = files
            .iter()
            .filter(|(path, text)| {
                std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str())
            })
            .map(|(path, _)| path.display().to_string())
            .collect();
        if stale.is_empty() {
            println!(
                "ok: {}, {} and {} are up to date",
                files[0].0.display(),
                files[1].0.display(),
                files[2].0.display()
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
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            crate::durable::write(path, text.as_bytes())?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let index = match which {
        Which::Experiment => 0,
        Which::Profile => 1,
        Which::Base => 2,
    };
    print!("{}", files[index].1);
    Ok(ExitCode::SUCCESS)
}
