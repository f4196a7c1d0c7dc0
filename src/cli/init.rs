//! `runner init`: a commented starter experiment listing every key of a job, or the
//! experiment a training command of another tool describes (`--from-command`,
//! `config::from_command`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{EXIT_CONFIG, refuse};
use crate::config::from_command;
use crate::config::loader::{Request, resolve_text};
use crate::config::schema::{EXPERIMENT_SCHEMA_FILE, job_schema_file};
use crate::config::starter;
use crate::config::types::JobKind;

pub fn init(
    job: Option<&str>,
    path: Option<&Path>,
    from_command: Option<String>,
    command_words: &[String],
) -> Result<ExitCode> {
    let jobs = || {
        JobKind::ALL
            .iter()
            .map(|j| j.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let command = match (from_command, command_words) {
        (Some(c), []) => Some(c),
        (None, []) => None,
        (None, words) => Some(shlex::try_join(words.iter().map(String::as_str))?),
        (Some(_), _) => {
            return Ok(refuse(
                "give the command once: `--from-command '…'` or after `--`",
            ));
        }
    };
    let Some(command) = command else {
        return match job.map(|j| (j, JobKind::parse(j))) {
            Some((_, Some(job))) => write(path, &starter::starter(job, &schema_for(path, job))),
            Some((other, None)) => Ok(refuse(&format!(
                "unknown job `{other}`: runner init JOB [PATH] with JOB one of {}",
                jobs()
            ))),
            None => Ok(refuse(&format!(
                "name a job ({}) or give a command with --from-command",
                jobs()
            ))),
        };
    };
    // With a command the first argument is the job only when it names one.
    let (job, path) = match (job, path) {
        (Some(j), p) if JobKind::parse(j).is_some() => {
            (JobKind::parse(j), p.map(Path::to_path_buf))
        }
        (Some(p), None) => (None, Some(PathBuf::from(p))),
        (Some(j), Some(_)) => {
            return Ok(refuse(&format!("unknown job `{j}` (one of {})", jobs())));
        }
        (None, p) => (None, p.map(Path::to_path_buf)),
    };
    let imported = match from_command::import(&command, job) {
        Ok(i) => i,
        Err(why) => return Ok(refuse(&why)),
    };
    let text = from_command::render(
        &imported,
        &command,
        &schema_for(path.as_deref(), imported.job),
    );
    // Checked before anything is written, as `validate` would check the file.
    let shown = path
        .clone()
        .unwrap_or_else(|| PathBuf::from("from-command.yaml"));
    let request = Request {
        experiment: shown.clone(),
        ..Request::default()
    };
    let problems = resolve_text(&request, &text).err();
    let code = write(path.as_deref(), &text)?;
    if let Some(diags) = problems {
        eprintln!(
            "{}
",
            diags.render()
        );
        // What to add: the job's required keys the command leaves out, and the keys whose
        // value was a shell variable the command does not set.
        let mut missing = imported.missing_required();
        for (key, _) in &imported.unresolved {
            if !missing.contains(key) {
                missing.push(key.clone());
            }
        }
        eprintln!(
            "error: the command's experiment does not validate yet: add {}to `{}` (or pass \
             them as KEY=VALUE to `runner run`)",
            if missing.is_empty() {
                "what the problems above name ".to_string()
            } else {
                format!("{} ", missing.join(", "))
            },
            shown.display()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    Ok(code)
}

fn schema_for(path: Option<&Path>, job: JobKind) -> String {
    let target_dir = match path {
        Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::new(),
    };
    schema_reference(&target_dir, job)
}

/// Prints `text`, or writes it to a new file `path` (never over an existing one).
fn write(path: Option<&Path>, text: &str) -> Result<ExitCode> {
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

/// The `$schema` path for a file of `job` in `dir`: the job's schema (which both YAML and TOML
/// servers complete from; `config::editor_schema`) beside the nearest
/// `schema/runner.schema.json` above `dir`, else the conventional `../schema/<job>.schema.json`.
fn schema_reference(dir: &Path, job: JobKind) -> String {
    let start = crate::host::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    });
    let file = job_schema_file(job);
    for (ups, ancestor) in start.ancestors().enumerate() {
        if ancestor.join(EXPERIMENT_SCHEMA_FILE).is_file() {
            return format!("{}{file}", "../".repeat(ups));
        }
    }
    format!("../{file}")
}
