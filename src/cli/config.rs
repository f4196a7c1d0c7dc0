//! `runner config [KEY]`: the configuration reference (`config::reference`) in the terminal,
//! as `ruff config` prints ruff's: every key, a section's keys, or one key in full.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use super::refuse;
use crate::config::reference::{Entry, entries};
use crate::config::suggest::{self, Alias};

/// Prints `text` at once; a reader that stopped early (`runner config | head`) is not an
/// error.
fn emit(text: &str) -> Result<ExitCode> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// One line per entry: its title and facts, aligned.
fn list(out: &mut String, entries: &[&Entry], indent: &str) {
    let width = entries.iter().map(|e| e.title().len()).max().unwrap_or(0);
    for e in entries {
        let _ = writeln!(out, "{indent}{:<width$}  {}", e.title(), e.facts());
    }
}

pub fn config(key: Option<&str>) -> Result<ExitCode> {
    let all = entries();
    let mut out = String::new();
    let Some(key) = key else {
        list(&mut out, &all.iter().collect::<Vec<_>>(), "");
        return emit(&out);
    };
    let key = key.trim_start_matches('-');
    let exact: Vec<&Entry> = all.iter().filter(|e| e.path == key).collect();
    let prefix = format!("{key}.");
    let within: Vec<&Entry> = all.iter().filter(|e| e.path.starts_with(&prefix)).collect();
    if let Some(first) = exact.first() {
        if within.is_empty() {
            let texts: Vec<String> = exact.iter().map(|e| e.text()).collect();
            out = texts.join("\n");
        } else {
            // A section: its documentation, then one line per key.
            out = format!("{}\n", first.text());
            list(&mut out, &within, "  ");
        }
        return emit(&out);
    }
    // A seed tool's name for a key, or one runner rejects with its reason.
    if let Some((tool, alias)) = suggest::alias(key) {
        return Ok(match alias {
            Alias::Key(target, _) => {
                out = format!("`{key}` is {}'s name for `{target}`.\n\n", tool.name());
                for e in all.iter().filter(|e| e.path == target) {
                    out.push_str(&e.text());
                }
                emit(&out)?
            }
            Alias::Rejected(why) => refuse(&format!(
                "`{key}` ({}) has no counterpart in runner: {why}",
                tool.name()
            )),
        });
    }
    let known: Vec<String> = all.iter().map(|e| e.path.clone()).collect();
    let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let help = suggest::unknown_key_help(parent, leaf, &known)
        .map(|h| format!("\n  = help: {h}"))
        .unwrap_or_default();
    Ok(refuse(&format!(
        "no configuration key `{key}` (`runner config` lists them all){help}"
    )))
}
