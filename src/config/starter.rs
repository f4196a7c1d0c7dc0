//! `runner init JOB`: a commented starter experiment, written from the schema so that it
//! lists every key with its documentation and default and never goes stale.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::suggest::{SchemaKey, schema_keys};
use super::types::JobKind;
use super::validate::SCHEMA;

/// Keys the starter sets (required ones, plus a learning rate), with placeholder values.
fn active(job: JobKind) -> &'static [(&'static str, &'static str)] {
    match job {
        JobKind::Mae => &[
            ("data.path", "data/imagenet/train"),
            ("optimizer.base_lr", "1.5e-4"),
        ],
        JobKind::TextClassification => &[
            ("data.train_file", "data/mnli/train.jsonl"),
            ("data.tokenizer", "data/bert-base-uncased/vocab.txt"),
            ("optimizer.lr", "2.0e-5"),
        ],
        JobKind::CausalVae => &[
            ("data.video_path", "data/UCF101/train"),
            ("optimizer.lr", "3.0e-5"),
        ],
    }
}

fn wrap_comment(text: &str, indent: &str, out: &mut String) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if line.len() + word.len() > 88 - indent.len() && !line.is_empty() {
            let _ = writeln!(out, "{indent}# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}# {line}");
    }
}

/// A value as a YAML flow scalar or list (`[0.9, 0.999]`), for one-line keys.
pub fn yaml_value(v: &Json) -> String {
    match v {
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_value).collect::<Vec<_>>().join(", ")
        ),
        _ => serde_yaml::to_string(v)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

/// `# key: default` (just `# key:` for keys without one), commented out for the user to enable.
fn commented_default(out: &mut String, indent: &str, key: &str, schema_key: &SchemaKey) {
    let default = schema_key
        .schema
        .get("default")
        .map(yaml_value)
        .unwrap_or_default();
    let _ = writeln!(out, "{}", format!("{indent}# {key}: {default}").trim_end());
}

/// The starter file. `schema_ref` is the `$schema` path editors should use.
pub fn starter(job: JobKind, schema_ref: &str) -> String {
    let keys = schema_keys(&SCHEMA.json, Some(job.as_str()));
    let set = active(job);
    let mut out = String::new();
    let _ = writeln!(out, "# yaml-language-server: $schema={schema_ref}");
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# Starter experiment for `job: {job}`, written by `runner init {job}`."
    );
    let _ = writeln!(
        out,
        "# Every key is listed with its default; uncomment what you change."
    );
    let _ = writeln!(
        out,
        "# `runner show THIS_FILE --explain` prints each resolved value and who set it;"
    );
    let _ = writeln!(
        out,
        "# `runner validate THIS_FILE --strict` also checks that the data paths exist."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "name: my-{}", job.as_str().replace('_', "-"));
    let _ = writeln!(out, "job: {job}");
    for top in keys.iter().filter(|k| !k.path.contains('.')) {
        let path = top.path.as_str();
        if matches!(path, "name" | "job") {
            continue;
        }
        let children: Vec<_> = keys
            .iter()
            .filter(|k| {
                k.path
                    .strip_prefix(path)
                    .is_some_and(|r| r.starts_with('.'))
            })
            .collect();
        let _ = writeln!(out);
        if let Some(d) = top.description() {
            wrap_comment(d, "", &mut out);
        }
        if children.is_empty() {
            commented_default(&mut out, "", path, top);
            continue;
        }
        let any_active = set.iter().any(|(k, _)| k.starts_with(&format!("{path}.")));
        let _ = writeln!(out, "{}{path}:", if any_active { "" } else { "# " });
        for child in children {
            let leaf = &child.path[path.len() + 1..];
            if let Some(d) = child.description() {
                wrap_comment(d, "  ", &mut out);
            }
            match set.iter().find(|(k, _)| *k == child.path) {
                Some((_, v)) => {
                    let _ = writeln!(out, "  {leaf}: {v}");
                }
                None => {
                    commented_default(&mut out, "  ", leaf, child);
                }
            }
        }
    }
    out
}
