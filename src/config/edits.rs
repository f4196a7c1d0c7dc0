//! List edits at the environment and command-line layers: `key+=VALUE` appends to the list
//! the lower layers give (a scalar, or every item of a flow list), `key-=VALUE` removes the
//! matching items (an error when none matches), `~key` restores the built-in default. In
//! `RUNNER_…` variables, whose names cannot hold `+`, `-` or `~`, they are spelled with a
//! suffix: `RUNNER_DATA__VALIDATION_FILES__APPEND=x.tsv`, `…__REMOVE=x.tsv`,
//! `RUNNER_TRAIN__MAX_STEPS__RESET=` (any value).
//!
//! An edit is a layer like any other override; before the merge it is turned into the plain
//! value it produces (the lower layers' list, edited), so `--explain` names the edit as the
//! source of the result and higher layers still win over it.

use figment::Figment;
use figment::value::{Dict, Value};
use serde_json::Value as Json;

use super::diagnostic::Diagnostic;
use super::layers::{Layer, LayerKind, LayerProvider};

/// What an edit does to its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Add these items at the end.
    Append(Vec<Value>),
    /// Drop every item equal to one of these.
    Remove(Vec<Value>),
    /// Back to the built-in default.
    Reset,
}

impl Op {
    /// `list` with this edit applied; `None` when a removal matches nothing. A reset gives
    /// the empty list (what the caller replaces by the key's default).
    pub fn edit(&self, mut list: Vec<Value>) -> Option<Vec<Value>> {
        match self {
            Op::Append(new) => {
                list.extend(new.iter().cloned());
                Some(list)
            }
            Op::Remove(gone) => {
                let gone: Vec<Json> = gone.iter().map(to_json).collect();
                let before = list.len();
                list.retain(|item| !gone.contains(&to_json(item)));
                (list.len() < before).then_some(list)
            }
            Op::Reset => Some(Vec::new()),
        }
    }
}

/// One edit of `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub key: String,
    pub op: Op,
}

/// The suffixes that spell edits in `RUNNER_…` variable names (lower-cased, after `__`).
pub const ENV_SUFFIXES: [(&str, &str); 3] = [("append", "+="), ("remove", "-="), ("reset", "~")];

/// Splits a command-line override into (key, edit operator, value): `a.b+=x` → ("a.b",
/// "+=", "x"), `~a.b` → ("a.b", "~", ""), `a.b=x` → ("a.b", "=", "x"); `None` without `=`
/// or `~`.
pub fn split(text: &str) -> Option<(&str, &'static str, &str)> {
    if let Some(key) = text.strip_prefix('~') {
        return Some((key.trim(), "~", ""));
    }
    let (k, v) = text.split_once('=')?;
    Some(match (k.strip_suffix('+'), k.strip_suffix('-')) {
        (Some(k), _) => (k.trim(), "+=", v),
        (_, Some(k)) => (k.trim(), "-=", v),
        _ => (k.trim(), "=", v),
    })
}

/// The items an edit's value gives: a flow list's items, or the one scalar.
pub fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(_, items) => items,
        other => vec![other],
    }
}

/// Replaces every edit layer's value by what it produces from the layers below it. Problems
/// (an edit of something that is not a list, a removal that matches nothing, a key without a
/// default) are diagnostics; the edit then sets nothing.
pub fn apply(layers: &mut [Layer], schema: &Json) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for i in 0..layers.len() {
        let Some(edit) = layers[i].edit.clone() else {
            continue;
        };
        let below = layers[..i]
            .iter()
            .enumerate()
            .fold(Figment::new(), |f, (id, l)| {
                f.merge(LayerProvider {
                    id,
                    dict: l.dict.clone(),
                })
            });
        let current: Option<Value> = below.find_value(&edit.key).ok();
        let job = below
            .find_value("job")
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        let fail = |message: String, help: &str| {
            let origin = match &layers[i].kind {
                LayerKind::Env { var } => super::Origin::Env { var: var.clone() },
                LayerKind::Cli { flag } => super::Origin::Cli { flag: flag.clone() },
                LayerKind::Sweep { cell } => super::Origin::Sweep { cell: cell.clone() },
                LayerKind::File { .. } => super::Origin::Default,
            };
            Diagnostic::error("override", message)
                .key(edit.key.clone())
                .origin(origin)
                .help(help)
        };
        let default = || default_at(schema, job.as_deref(), &edit.key);
        let result: Result<Value, Diagnostic> = match &edit.op {
            Op::Reset => default().ok_or_else(|| {
                fail(
                    format!("`{}` has no built-in default to restore", edit.key),
                    "set it instead, e.g. `--set key=value`",
                )
            }),
            Op::Append(new) | Op::Remove(new) => {
                let list = match current.or_else(default) {
                    Some(Value::Array(_, items)) => Ok(items),
                    Some(Value::Empty(..)) | None => Ok(Vec::new()),
                    Some(other) => Err(fail(
                        format!(
                            "`{}` is not a list (it is {}), so it cannot be {}",
                            edit.key,
                            describe(&other),
                            if matches!(edit.op, Op::Append(_)) {
                                "appended to"
                            } else {
                                "removed from"
                            }
                        ),
                        "use `key=value` to replace a single value",
                    )),
                };
                list.and_then(|list| {
                    edit.op.edit(list.clone()).ok_or_else(|| {
                        let shown: Vec<String> =
                            list.iter().map(|v| to_json(v).to_string()).collect();
                        let wanted: Vec<String> =
                            new.iter().map(|v| to_json(v).to_string()).collect();
                        fail(
                            format!(
                                "nothing in `{}` matches {} (it holds [{}])",
                                edit.key,
                                wanted.join(", "),
                                shown.join(", ")
                            ),
                            "remove an item that is in the list, written as it is there",
                        )
                    })
                })
                .map(Value::from)
            }
        };
        match result {
            Ok(value) => {
                layers[i].dict = figment::util::nest(&edit.key, value)
                    .into_dict()
                    .unwrap_or_default();
            }
            Err(d) => {
                layers[i].dict = Dict::new();
                problems.push(d);
            }
        }
    }
    problems
}

fn to_json(v: &Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

fn describe(v: &Value) -> String {
    format!("`{}`", to_json(v))
}

/// The schema's default for `key` (a top-level key or one inside a section; `model`/`data`
/// keys from `job`'s branch).
pub fn default_at(schema: &Json, job: Option<&str>, key: &str) -> Option<Value> {
    let defs = &schema["definitions"];
    let mut parts = key.splitn(2, '.');
    let top = parts.next()?;
    let prop = &schema["properties"][top];
    let json = match parts.next() {
        None => prop.get("default")?.clone(),
        Some(rest) => {
            let section = match (top, job.and_then(super::types::JobKind::parse)) {
                ("model" | "data", Some(job)) => {
                    let (model, data) = job.section_schema_names();
                    &defs[if top == "model" { model } else { data }]
                }
                _ => &defs[super::schema::field_reference(prop)?],
            };
            match section["properties"].get(rest) {
                Some(p) => p.get("default")?.clone(),
                // A key the section's default object holds (a nested default).
                None => section.get("default")?.get(rest)?.clone(),
            }
        }
    };
    serde_json::from_value::<Value>(json).ok()
}

/// An edit layer for `key` from the environment or command line; `raw` is the value text.
pub fn layer(key: &str, op: &str, raw: &str, kind: LayerKind) -> Result<Layer, Diagnostic> {
    // Parsed as any override (the key's form and the value, through the same checks); a
    // reset has no value of its own.
    let parsed = Layer::from_override(key, if op == "~" { "null" } else { raw }, kind.clone())?;
    let value = || {
        Figment::from(LayerProvider {
            id: 0,
            dict: parsed.dict.clone(),
        })
        .find_value(key)
        .unwrap_or(Value::from(Vec::<Value>::new()))
    };
    let op = match op {
        "~" => Op::Reset,
        "+=" => Op::Append(items(value())),
        "-=" => Op::Remove(items(value())),
        other => unreachable!("`{other}` is not an edit"),
    };
    Ok(Layer {
        kind,
        dict: Dict::new(),
        edit: Some(Edit {
            key: key.to_string(),
            op,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_split_into_key_operator_and_value() {
        assert_eq!(split("a.b=1"), Some(("a.b", "=", "1")));
        assert_eq!(split("a.b+=[1, 2]"), Some(("a.b", "+=", "[1, 2]")));
        assert_eq!(split("a.b-=x"), Some(("a.b", "-=", "x")));
        assert_eq!(split("~a.b"), Some(("a.b", "~", "")));
        assert_eq!(split("a.b"), None);
        // `=` inside the value stays there.
        assert_eq!(split("a=b=c"), Some(("a", "=", "b=c")));
    }

    #[test]
    fn defaults_come_from_the_schema_and_the_jobs_branch() {
        let schema = crate::config::schema::experiment_schema().to_value();
        let json = |v: Option<Value>| v.as_ref().map(to_json);
        assert_eq!(
            json(default_at(&schema, None, "train.epochs")),
            Some(Json::from(3))
        );
        assert_eq!(
            json(default_at(&schema, None, "profile")),
            Some(Json::Array(vec![]))
        );
        assert!(default_at(&schema, Some("text_classification"), "data.max_seq_length").is_some());
        assert_eq!(default_at(&schema, None, "name"), None);
    }
}
