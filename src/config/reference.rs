//! The configuration reference, generated from the config types: every key with its type,
//! range, default, the seed tools' names for it and its documentation. `docs/reference.md`
//! is [`markdown`] (committed, checked for staleness with the schemas) and `runner config
//! [KEY]` prints [`Entry::text`] in the terminal, as `ruff config` does.

use std::fmt::Write as _;

use serde_json::Value;

use super::editor_schema::{self, Shape};
use super::schema::strict_experiment_schema;
use super::suggest::{ALIASES, Alias, Tool};
use super::types::JobKind;

/// Where the generated reference is committed, relative to the repository root.
pub const REFERENCE_FILE: &str = "docs/reference.md";

/// One documented key.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Dotted path: `train.epochs`.
    pub path: String,
    /// The job whose `model`/`data` the key belongs to; `None` for every job's keys.
    pub job: Option<JobKind>,
    /// `integer ≥ 1`, `one of `fp32`, `bf16`, `fp16``, …
    pub kind: String,
    /// The default as the files write it; `None` when the key is required or unset.
    pub default: Option<String>,
    pub required: bool,
    /// The seed tools' names for this key: (tool, flag, note).
    pub aliases: Vec<(Tool, String, Option<&'static str>)>,
    pub description: String,
    /// A section (a table of keys) rather than a value.
    pub section: bool,
}

/// Every key, in the order files write them: the top level, then each section (`model` and
/// `data` once per job).
pub fn entries() -> Vec<Entry> {
    let schema = editor_schema::shape(&strict_experiment_schema().to_value(), Shape::General);
    let required = names(&schema["required"]);
    let mut out = vec![];
    let props = schema["properties"]
        .as_object()
        .expect("the root has properties");
    for (key, node) in props {
        if key == "derived" {
            continue;
        }
        let section = key == "model" || key == "data" || table(node).is_some();
        out.push(entry(key, None, node, required.contains(key), section));
    }
    for (key, node) in props {
        let sections: Vec<(Option<JobKind>, &Value)> = if key == "model" || key == "data" {
            JobKind::ALL
                .iter()
                .map(|job| (Some(*job), job_section(&schema, *job, key)))
                .collect()
        } else {
            table(node).map(|t| (None, t)).into_iter().collect()
        };
        for (job, section) in sections {
            let required = names(&section["required"]);
            for (sub, node) in section["properties"].as_object().into_iter().flatten() {
                let path = format!("{key}.{sub}");
                out.push(entry(&path, job, node, required.contains(sub), false));
            }
        }
    }
    out
}

/// The table of keys a node is, or may be (`sweep`: a table or null).
fn table(node: &Value) -> Option<&Value> {
    if node.get("properties").is_some() {
        return Some(node);
    }
    ["anyOf", "oneOf"]
        .iter()
        .filter_map(|c| node[*c].as_array())
        .flatten()
        .find(|b| b.get("properties").is_some())
}

/// A job's `model` or `data` schema: the `then` of its branch.
fn job_section<'a>(schema: &'a Value, job: JobKind, key: &str) -> &'a Value {
    schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["if"]["properties"]["job"]["const"] == job.as_str())
        .map(|b| &b["then"]["properties"][key])
        .expect("one branch per job")
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn entry(path: &str, job: Option<JobKind>, node: &Value, required: bool, section: bool) -> Entry {
    let description = node["description"].as_str().unwrap_or_default();
    // The shaped schema ends each description with its default; the entry shows it apart.
    let description = description
        .rsplit_once("\n\nDefault: ")
        .map_or(description, |(head, _)| head);
    let default = match node.get("default") {
        Some(Value::Object(_)) | None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Entry {
        path: path.to_owned(),
        job,
        kind: match (section, kind(node)) {
            (true, k) if k.ends_with("(optional)") => "table (optional)".into(),
            (true, _) => "table".into(),
            (false, k) => k,
        },
        default,
        required,
        aliases: ALIASES
            .iter()
            .filter(|(_, tool, _)| job.is_none_or(|j| speaks_for(*tool, j)))
            .filter_map(|(name, tool, alias)| match alias {
                Alias::Key(target, note) if *target == path => {
                    Some((*tool, flag(*tool, name), *note))
                }
                _ => None,
            })
            .collect(),
        description: unwrap_lines(description),
        section,
    }
}

/// Whether `tool`'s names for `model`/`data` keys are about `job`: MAE trains the MAE job,
/// Hugging Face's run_glue the text classifier, Open-Sora-Plan the CausalVAE; Megatron's
/// names are generic.
fn speaks_for(tool: Tool, job: JobKind) -> bool {
    match tool {
        Tool::Mae => job == JobKind::Mae,
        Tool::HuggingFace => job == JobKind::TextClassification,
        Tool::OpenSoraPlan => job == JobKind::CausalVae,
        Tool::Megatron => true,
    }
}

/// A seed-table name as its tool spells it on the command line (the table keeps them
/// normalised: lowercase, `_` for `-`).
fn flag(tool: Tool, name: &str) -> String {
    match tool {
        Tool::Megatron => format!("--{}", name.replace('_', "-")),
        Tool::Mae | Tool::HuggingFace | Tool::OpenSoraPlan => format!("--{name}"),
    }
}

/// Doc comments wrap at 100 columns; a paragraph reads better as one line.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// What a value may be, in words: `integer ≥ 1`, `list of 2 numbers`, `one of …`.
fn kind(node: &Value) -> String {
    let quoted = |v: &Value| match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    };
    if let Some(values) = node["enum"].as_array() {
        let values: Vec<String> = values.iter().map(quoted).collect();
        return format!("one of {}", values.join(", "));
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(branches) = node[combinator].as_array() {
            if branches.iter().all(|b| b.get("const").is_some()) {
                let values: Vec<String> = branches.iter().map(|b| quoted(&b["const"])).collect();
                return format!("one of {}", values.join(", "));
            }
            let nullable = branches.iter().any(|b| b["type"] == "null");
            let kinds: Vec<String> = branches
                .iter()
                .filter(|b| b["type"] != "null")
                .map(kind)
                .collect();
            let text = kinds.join(" or ");
            return if nullable {
                format!("{text} (optional)")
            } else {
                text
            };
        }
    }
    let types = match &node["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let nullable = types.contains(&"null");
    let mut parts: Vec<String> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "array" => {
                let items = kind(&node["items"]);
                let count = match (node["minItems"].as_u64(), node["maxItems"].as_u64()) {
                    (Some(a), Some(b)) if a == b => format!("{a} "),
                    (Some(a), None) if a > 0 => format!("at least {a} "),
                    _ => String::new(),
                };
                let items = match items.as_str() {
                    "" => "values".to_owned(),
                    "string" | "number" | "integer" | "boolean" => format!("{items}s"),
                    _ => grouped(items),
                };
                format!("list of {count}{items}")
            }
            "object" => match (
                node.get("additionalProperties"),
                node["properties"].as_object(),
            ) {
                (Some(v), _) if v.is_object() => format!("table of {}", grouped(kind(v))),
                (_, Some(props)) if !props.is_empty() => {
                    let keys: Vec<&str> = props.keys().map(String::as_str).collect();
                    format!("`{{{}}}`", keys.join(", "))
                }
                _ => "table".into(),
            },
            other => other.to_owned(),
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    let mut bounds = vec![];
    for (key, sign) in [
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ] {
        if let Some(v) = node.get(key) {
            bounds.push(format!("{sign} {v}"));
        }
    }
    match node["minLength"].as_u64() {
        Some(1) => bounds.push("non-empty".into()),
        Some(n) if n > 1 => bounds.push(format!("at least {n} characters")),
        _ => {}
    }
    if let Some(n) = node["maxLength"].as_u64() {
        bounds.push(format!("at most {n} characters"));
    }
    if let Some(p) = node["pattern"].as_str() {
        bounds.push(format!("matching `{p}`"));
    }
    if !bounds.is_empty() {
        let first = parts.remove(0);
        parts.insert(0, format!("{first} {}", bounds.join(", ")));
    }
    let text = parts.join(" or ");
    if nullable {
        format!("{text} (optional)")
    } else {
        text
    }
}

/// A kind inside another, in parentheses when it has alternatives of its own.
fn grouped(kind: String) -> String {
    if kind.contains(" or ") {
        format!("({kind})")
    } else {
        kind
    }
}

impl Entry {
    /// `model.mask_ratio (mae)`: the path, with the job where it is one job's.
    pub fn title(&self) -> String {
        match self.job {
            Some(job) => format!("{} ({})", self.path, job.as_str()),
            None => self.path.clone(),
        }
    }

    /// One line: type, default or required, the seed tools' names.
    pub fn facts(&self) -> String {
        let mut facts = vec![self.kind.clone()];
        if self.required {
            facts.push("required".into());
        } else if let Some(d) = &self.default {
            facts.push(format!("default `{d}`"));
        }
        if !self.aliases.is_empty() {
            let names: Vec<String> = self
                .aliases
                .iter()
                .map(|(tool, flag, note)| match note {
                    Some(n) => format!("{} `{flag}` ({n})", tool.name()),
                    None => format!("{} `{flag}`", tool.name()),
                })
                .collect();
            facts.push(format!("as {}", names.join(", ")));
        }
        facts.retain(|f| !f.is_empty());
        facts.join(" · ")
    }

    /// The entry as `runner config KEY` prints it.
    pub fn text(&self) -> String {
        format!(
            "{}\n  {}\n\n{}\n",
            self.title(),
            self.facts(),
            indent(&self.description)
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("  {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// GitHub's anchor for a heading: lowercase, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `docs/reference.md`.
pub fn markdown() -> String {
    let entries = entries();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Configuration reference\n\n\
         <!-- Generated from the config types (src/config/types/) by `runner schema --write`; \
         a test fails when it is stale. Do not edit by hand. -->\n\n\
         Every key an experiment, base or profile may set, in the order files write them. \
         Each entry gives what the value may be, its default (a key with no default and not \
         required is unset unless given), the names the tools of the seed tables give it \
         (MAE `main_pretrain.py`, Megatron/MindSpeed-MM, Hugging Face `TrainingArguments`, \
         Open-Sora-Plan `train_causalvae.py`), and its documentation. `model` and `data` take \
         the keys of the file's `job`. Wherever a number, switch, list or enum goes, a `${{…}}` \
         string may stand instead (resolved before validation). In the terminal, `runner \
         config KEY` prints the same.\n"
    );
    // The contents: the top level, then each section.
    let sections: Vec<&Entry> = entries.iter().filter(|e| e.section).collect();
    let _ = writeln!(out, "- [Top level](#top-level)");
    for s in &sections {
        if s.path == "model" || s.path == "data" {
            for job in JobKind::ALL {
                let heading = format!("{} ({})", s.path, job.as_str());
                let _ = writeln!(out, "- [`{heading}`](#{})", anchor(&heading));
            }
        } else {
            let _ = writeln!(out, "- [`{}`](#{})", s.path, anchor(&s.path));
        }
    }
    let _ = writeln!(
        out,
        "- [Arguments with no counterpart](#arguments-with-no-counterpart)"
    );
    let _ = writeln!(out, "\n## Top level\n");
    for e in entries.iter().filter(|e| !e.path.contains('.')) {
        write_entry(&mut out, e);
    }
    for s in &sections {
        let jobs: Vec<Option<JobKind>> = if s.path == "model" || s.path == "data" {
            JobKind::ALL.iter().map(|j| Some(*j)).collect()
        } else {
            vec![None]
        };
        for job in jobs {
            let heading = match job {
                Some(j) => format!("{} ({})", s.path, j.as_str()),
                None => s.path.clone(),
            };
            let _ = writeln!(out, "## `{heading}`\n\n{}\n", s.description);
            let prefix = format!("{}.", s.path);
            for e in entries
                .iter()
                .filter(|e| e.path.starts_with(&prefix) && e.job == job)
            {
                write_entry(&mut out, e);
            }
        }
    }
    let _ = writeln!(
        out,
        "## Arguments with no counterpart\n\n\
         What runner says when a file, `--set` or `runner init --from-command` uses one of \
         these names of the seed tools.\n\n| tool | argument | why |\n|---|---|---|"
    );
    for (name, tool, alias) in ALIASES {
        if let Alias::Rejected(why) = alias {
            let why = unwrap_lines(why).replace('|', "\\|");
            let _ = writeln!(out, "| {} | `{}` | {why} |", tool.name(), flag(*tool, name));
        }
    }
    out
}

fn write_entry(out: &mut String, e: &Entry) {
    let _ = writeln!(
        out,
        "### `{}`\n\n{}\n\n{}\n",
        e.title(),
        e.facts(),
        e.description
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(path: &str, job: Option<JobKind>) -> Entry {
        entries()
            .into_iter()
            .find(|e| e.path == path && e.job == job)
            .unwrap_or_else(|| panic!("{path}"))
    }

    #[test]
    fn an_entry_has_its_type_range_default_and_seed_names() {
        let epochs = find("train.per_device_batch_size", None);
        assert_eq!(epochs.kind, "integer ≥ 1");
        assert_eq!(epochs.default.as_deref(), Some("8"));
        let facts = epochs.facts();
        assert!(
            facts.contains("MAE main_pretrain.py `--batch_size`"),
            "{facts}"
        );
        assert!(
            facts.contains("Megatron/MindSpeed-MM `--micro-batch-size`"),
            "{facts}"
        );
        assert!(
            !epochs.description.contains("Default:"),
            "{}",
            epochs.description
        );
        let dtype = find("precision.dtype", None);
        assert_eq!(dtype.kind, "one of `fp32`, `bf16`, `fp16`");
        assert!(find("name", None).required);
        let mask = find("model.mask_ratio", Some(JobKind::Mae));
        assert!(mask.kind.starts_with("number"), "{}", mask.kind);
        assert!(entries().iter().all(|e| e.path != "derived"));
    }

    #[test]
    fn every_key_of_every_job_is_in_the_reference() {
        let schema = strict_experiment_schema().to_value();
        let text = markdown();
        for job in JobKind::ALL {
            for key in super::super::suggest::known_keys(&schema, Some(job.as_str())) {
                let heading = match key.split_once('.') {
                    Some(("model" | "data", _)) => format!("### `{key} ({})`", job.as_str()),
                    _ => format!("### `{key}`"),
                };
                assert!(text.contains(&heading), "{heading} missing");
            }
        }
        assert!(text.contains("| Open-Sora-Plan train_causalvae.py | `--disc_start` |"));
    }

    #[test]
    fn anchors_are_githubs() {
        assert_eq!(anchor("model (mae)"), "model-mae");
        assert_eq!(anchor("train"), "train");
    }
}
