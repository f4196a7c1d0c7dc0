//! Printing a resolved configuration: YAML, TOML or JSON, optionally with the layer that
//! set each leaf (`--explain`). Every output, fed back as an experiment, resolves to the
//! same configuration (`derived:` is ignored on input).

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::loader::{Resolved, resolved_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
    Json,
}

/// The resolved config with its `derived:` block.
pub fn full_value(resolved: &Resolved) -> Json {
    let mut v = resolved_json(resolved);
    // A literal `${` in a value (written `$${`) is printed escaped again, so that the
    // output, fed back, resolves to itself.
    escape_templates(&mut v);
    // What secret-looking variables gave is printed and recorded as written (`${env:…}`).
    for secret in &resolved.interpolated.secrets {
        super::interpolate::set(&mut v, &secret.path, Json::String(secret.written.clone()));
    }
    let derived = serde_json::to_value(&resolved.derived).expect("derived serializes");
    v.as_object_mut()
        .expect("config is an object")
        .insert("derived".into(), derived);
    v
}

pub fn render(resolved: &Resolved, format: Format, explain: bool) -> String {
    render_with(resolved, format, explain, None)
}

/// [`render`] with the origins `--explain` shows given by `origin_of` (a run directory's
/// recorded provenance) instead of the layers.
pub fn render_with(
    resolved: &Resolved,
    format: Format,
    explain: bool,
    origin_of: Option<&dyn Fn(&str) -> String>,
) -> String {
    let value = full_value(resolved);
    let layered = |key: &str| -> String {
        if key == "derived" || key.starts_with("derived.") {
            return "derived".into();
        }
        let set_by = resolved.origin_of(key).short();
        match resolved.interpolated.exprs.get(key) {
            None => set_by,
            // The expression and where its inputs came from.
            Some(e) => {
                let inputs: Vec<String> = e
                    .inputs
                    .iter()
                    .map(|i| match i {
                        super::interpolate::Input::Key(k) if k.starts_with("derived.") => {
                            format!("{k}: derived")
                        }
                        super::interpolate::Input::Key(k) => {
                            format!("{k}: {}", resolved.origin_of(k).short())
                        }
                        super::interpolate::Input::Env { var, set } => {
                            format!("env {var}{}", if *set { "" } else { " (unset: default)" })
                        }
                    })
                    .collect();
                format!("{set_by} = {} ({})", e.written, inputs.join("; "))
            }
        }
    };
    let origin = |key: &str| -> String {
        match origin_of {
            Some(f) => f(key),
            None => layered(key),
        }
    };
    match (format, explain) {
        (Format::Yaml, false) => serde_yaml::to_string(&value).expect("yaml serializes"),
        (Format::Yaml, true) => {
            let mut out = String::new();
            yaml_explained(&value, "", 0, &origin, &mut out);
            out
        }
        (Format::Toml, explain) => toml_text(
            &value,
            explain.then_some(&origin as &dyn Fn(&str) -> String),
        ),
        (Format::Json, false) => {
            serde_json::to_string_pretty(&value).expect("json serializes") + "\n"
        }
        (Format::Json, true) => {
            let mut sources = serde_json::Map::new();
            leaves(&value, "", &mut |k, _| {
                sources.insert(k.to_string(), Json::String(origin(k)));
            });
            let out = serde_json::json!({ "config": value, "sources": sources });
            serde_json::to_string_pretty(&out).expect("json serializes") + "\n"
        }
    }
}

fn escape_templates(v: &mut Json) {
    match v {
        Json::String(s) if s.contains("${") => *s = s.replace("${", "$${"),
        Json::Array(items) => items.iter_mut().for_each(escape_templates),
        Json::Object(map) => map.values_mut().for_each(escape_templates),
        _ => {}
    }
}

/// Whether any string in `v` (at any depth, lists included) satisfies `f`.
pub fn any_string(v: &Json, f: &dyn Fn(&str) -> bool) -> bool {
    match v {
        Json::String(s) => f(s),
        Json::Array(items) => items.iter().any(|i| any_string(i, f)),
        Json::Object(map) => map.values().any(|i| any_string(i, f)),
        _ => false,
    }
}

/// Calls `f` on every leaf (scalars and lists) with its dotted key.
pub fn leaves(v: &Json, path: &str, f: &mut dyn FnMut(&str, &Json)) {
    match v {
        Json::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(child, &p, f);
            }
        }
        _ => f(path, v),
    }
}

fn yaml_scalar(v: &Json) -> String {
    match v {
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_scalar).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) if map.is_empty() => "{}".into(),
        _ => serde_yaml::to_string(v)
            .expect("yaml serializes")
            .trim_end()
            .to_string(),
    }
}

const COMMENT_COLUMN: usize = 44;

fn yaml_explained(
    v: &Json,
    path: &str,
    indent: usize,
    origin: &dyn Fn(&str) -> String,
    out: &mut String,
) {
    let Json::Object(map) = v else { return };
    for (k, child) in map {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let pad = "  ".repeat(indent);
        match child {
            Json::Object(m) if !m.is_empty() => {
                let _ = writeln!(out, "{pad}{k}:");
                yaml_explained(child, &p, indent + 1, origin, out);
            }
            _ => {
                let line = format!("{pad}{k}: {}", yaml_scalar(child));
                let _ = writeln!(out, "{line:<COMMENT_COLUMN$}  # {}", origin(&p));
            }
        }
    }
}

fn toml_scalar(v: &Json) -> String {
    match v {
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_scalar).collect::<Vec<_>>().join(", ")
        ),
        Json::String(s) => toml::Value::String(s.clone()).to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), ..) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (.., Some(f)) => toml::Value::Float(f).to_string(),
            _ => n.to_string(),
        },
        Json::Null => unreachable!("nulls are filtered out before"),
        Json::Object(_) => "{}".into(),
    }
}

/// TOML with scalars before tables, as TOML requires; comments name the origin of each leaf.
fn toml_text(v: &Json, origin: Option<&dyn Fn(&str) -> String>) -> String {
    fn table(v: &Json, path: &str, origin: Option<&dyn Fn(&str) -> String>, out: &mut String) {
        let Json::Object(map) = v else { return };
        let is_table = |c: &Json| matches!(c, Json::Object(m) if !m.is_empty());
        // TOML has no null: unset optional keys are left out.
        for (k, child) in map.iter().filter(|(_, c)| !is_table(c) && !c.is_null()) {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let line = format!("{} = {}", toml_key(k), toml_scalar(child));
            match origin {
                Some(o) => {
                    let _ = writeln!(out, "{line:<COMMENT_COLUMN$}  # {}", o(&p));
                }
                None => {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        for (k, child) in map.iter().filter(|(_, c)| is_table(c)) {
            let p = if path.is_empty() {
                toml_key(k)
            } else {
                format!("{path}.{}", toml_key(k))
            };
            let _ = writeln!(out, "\n[{p}]");
            table(child, &p, origin, out);
        }
    }
    let mut out = String::new();
    table(v, "", origin, &mut out);
    out
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}
