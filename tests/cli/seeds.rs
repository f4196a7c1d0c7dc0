//! Every argument in the seed tables (../shared/seeds: MAE main_pretrain.py, Megatron /
//! MindSpeed-MM, Hugging Face TrainingArguments, Open-Sora-Plan train_causalvae.py) is either
//! a runner key, mapped to one by the alias table, or rejected with a reason.

use std::path::PathBuf;

use runner::config::schema::experiment_schema;
use runner::config::suggest::{Alias, alias, known_keys, normalise};
use runner::config::types::JobKind;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds")
}

/// `--flag` tokens, `name=` keyword arguments in indented code, and `### name -` headings.
fn arguments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("--") {
        let start = i + off + 2;
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(0);
        if end > start
            && bytes[start].is_ascii_alphabetic()
            && (i + off == 0 || !bytes[i + off - 1].is_ascii_alphanumeric())
        {
            out.push(text[start..end].to_string());
        }
        i = start;
    }
    for line in text.lines() {
        let trimmed = line.trim_start();
        if line.len() > trimmed.len()
            && let Some((name, _)) = trimmed.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            out.push(name.to_string());
        }
        if let Some(rest) = line.strip_prefix("### ")
            && let Some((name, _)) = rest.split_once(" - ")
        {
            out.push(name.trim().to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_seed_argument_is_expressible_or_rejected_with_a_reason() {
    let dir = seeds_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: no seed tables at {}", dir.display());
        return;
    };
    let schema = experiment_schema().to_value();
    let known: Vec<String> = JobKind::ALL
        .iter()
        .flat_map(|j| known_keys(&schema, Some(j.as_str())))
        .collect();
    let mut checked = 0;
    let mut missing = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for arg in arguments(&text) {
            let name = normalise(&arg);
            // Arguments of this script, not training settings.
            if ["training_args", "use_reentrant"].contains(&name.as_str()) {
                continue;
            }
            checked += 1;
            let is_key = known.iter().any(|k| k == &name);
            match alias(&name) {
                Some((_, Alias::Key(target, _))) => {
                    assert!(known.iter().any(|k| k == target), "{name} → {target}")
                }
                Some((_, Alias::Rejected(reason))) => {
                    assert!(reason.len() > 20, "{name}: reason too thin")
                }
                None if is_key => {}
                None => missing.push(format!(
                    "{name} ({})",
                    path.file_name().unwrap().to_string_lossy()
                )),
            }
        }
    }
    assert!(
        checked > 80,
        "found only {checked} arguments: is the extraction broken?"
    );
    assert!(
        missing.is_empty(),
        "seed arguments with no runner key, alias or rejection: {missing:?}"
    );
}

#[test]
fn extraction_finds_the_known_forms() {
    let args = arguments(
        "| `--batch_size` | x |\n<code>--lr-decay-style</code>\n    learning_rate=5e-5,\n### do_eval - 评估开关\nA --> B\n",
    );
    assert_eq!(
        args,
        ["batch_size", "do_eval", "learning_rate", "lr-decay-style"]
    );
}
