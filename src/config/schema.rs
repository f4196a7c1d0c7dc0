//! JSON Schemas generated from the config types.
//!
//! [`experiment_schema`] is the form runner itself walks (`edits`, `suggest`, `starter`) and
//! [`strict_experiment_schema`] the one values are validated against. The files committed
//! under `schema/` ([`committed`]) are those, shaped for editors by [`super::editor_schema`]:
//! - `runner.schema.json` validates an experiment of any job (`if job == … then` picks the
//!   job's `model`/`data` keys) and requires `name`, `job` and `data`;
//! - `<job>.schema.json`, one per job, is what the shipped experiments, their bases and
//!   `runner init` point at: that job's keys in place, nothing required (keys may come from
//!   `extends`), understood by both yaml-language-server and taplo;
//! - `profile.schema.json` (`presets/*.toml`) and `base.schema.json` (bases of any job): the
//!   experiment's keys, none required.
//!
//! `runner schema --check` (and a test) fails when a committed file differs from what the
//! types generate, as ruff and uv do for theirs.
//!
//! Draft-07 is used because it is what yaml-language-server and taplo understand best.

use schemars::generate::SchemaSettings;
use schemars::{Schema, json_schema};
use serde_json::Value;

use super::editor_schema::{self, Shape};
use super::types::{Experiment, JobKind};

/// Where the committed schemas live, relative to the repository root.
pub const EXPERIMENT_SCHEMA_FILE: &str = "schema/runner.schema.json";
pub const PROFILE_SCHEMA_FILE: &str = "schema/profile.schema.json";
pub const BASE_SCHEMA_FILE: &str = "schema/base.schema.json";

/// The committed schema of one job's experiments and bases.
pub fn job_schema_file(job: JobKind) -> String {
    format!("schema/{}.schema.json", job.as_str())
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft07()
}

/// The experiment schema as committed for editors: where a number, boolean, list or enum is
/// expected, a `${…}` string may stand too (it is resolved before validation).
pub fn experiment_schema() -> Schema {
    let mut schema = strict_experiment_schema();
    allow_interpolation(schema.as_object_mut().expect("root schema is an object"));
    schema
}

/// The experiment schema values are validated against once `${…}` is resolved.
pub fn strict_experiment_schema() -> Schema {
    let mut schema = settings()
        .into_generator()
        .into_root_schema_for::<Experiment>();
    schema.insert(
        "$id".into(),
        "https://runner.invalid/schema/runner.schema.json".into(),
    );
    schema
}

/// Lets a `${…}` string stand for any value that is not a section or a free string, in
/// every property of the root and the definitions (and in list items).
fn allow_interpolation(root: &mut serde_json::Map<String, Value>) {
    let defs = root.get("definitions").cloned().unwrap_or_default();
    let interpolation = serde_json::json!({
        "type": "string",
        "pattern": "\\$\\{",
        "description": "A `${…}` expression, resolved before validation: `${key}`, `${env:NAME}`, `${env:NAME,default}`, arithmetic such as `${model.hidden_size * 4}`."
    });
    let is_section = |p: &Value| -> bool {
        let target = field_reference(p).map_or(p, |name| &defs[name]);
        target.get("properties").is_some()
    };
    let free_string = |p: &Value| {
        p.get("type") == Some(&Value::from("string"))
            && ["pattern", "enum", "format"]
                .iter()
                .all(|k| p.get(*k).is_none())
    };
    let reference = Value::from("#/definitions/Interpolation");
    let wrap = |p: &Value| -> Value {
        let mut inner = p.clone();
        let mut outer = serde_json::Map::new();
        if let Some(obj) = inner.as_object_mut() {
            for k in ["description", "default", "writeOnly", "readOnly"] {
                if let Some(v) = obj.remove(k) {
                    outer.insert(k.into(), v);
                }
            }
            if let Some(items) = obj.get_mut("items")
                && !free_string(items)
            {
                *items = serde_json::json!({"anyOf": [items.clone(), {"$ref": reference.clone()}]});
            }
        }
        outer.insert(
            "anyOf".into(),
            Value::Array(vec![inner, serde_json::json!({"$ref": reference.clone()})]),
        );
        Value::Object(outer)
    };
    let relax = |props: &mut serde_json::Map<String, Value>| {
        for (k, p) in props.iter_mut() {
            if ["derived", "extends", "sweep", "model", "data"].contains(&k.as_str())
                || is_section(p)
                || free_string(p)
            {
                continue;
            }
            *p = wrap(p);
        }
    };
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        relax(props);
    }
    if let Some(Value::Object(defs)) = root.get_mut("definitions") {
        for def in defs.values_mut() {
            if let Some(Value::Object(props)) = def.get_mut("properties") {
                relax(props);
            }
        }
        defs.insert("Interpolation".into(), interpolation);
    }
}

/// The experiment schema under another file's name, title and description (required keys
/// are dropped when it is shaped: `editor_schema::Shape`).
fn titled(file: &str, title: &str, description: &str) -> Schema {
    let mut schema = experiment_schema();
    let obj = schema.as_object_mut().expect("root schema is an object");
    obj.insert(
        "$id".into(),
        format!("https://runner.invalid/{file}").into(),
    );
    obj.insert("title".into(), title.into());
    obj.insert("description".into(), description.into());
    schema
}

/// The profile schema: the experiment's keys, none required.
fn profile_schema() -> Schema {
    titled(
        PROFILE_SCHEMA_FILE,
        "runner profile",
        "A hardware profile (`presets/*.toml`, `--profile`): any experiment keys, none required, \
         merged below the experiment file. `description` is the profile's own one-liner.",
    )
}

/// The schema of a base file (`extends`): the experiment's keys, none required.
fn base_schema() -> Schema {
    titled(
        BASE_SCHEMA_FILE,
        "runner base experiment",
        "A base that experiments build on (`extends`): any experiment keys, none required; \
         only the experiment's merged result is validated.",
    )
}

/// One job's schema: the experiment's keys, that job's `model` and `data`, none required.
fn job_schema(job: JobKind) -> Schema {
    titled(
        &job_schema_file(job),
        &format!("runner experiment: {}", job.as_str()),
        &format!(
            "An experiment or base of job `{}`: its keys, none required (a file may take \
             them from the bases it `extends`; `runner validate` checks the merged result).",
            job.as_str()
        ),
    )
}

/// Every committed schema file: its path relative to the repository root, and its text.
pub fn committed() -> Vec<(String, String)> {
    let text =
        |schema: Schema, shape: Shape| render(&editor_schema::shape(&schema.to_value(), shape));
    let mut files = vec![
        (
            EXPERIMENT_SCHEMA_FILE.to_owned(),
            text(experiment_schema(), Shape::General),
        ),
        (
            PROFILE_SCHEMA_FILE.to_owned(),
            text(profile_schema(), Shape::Partial),
        ),
        (
            BASE_SCHEMA_FILE.to_owned(),
            text(base_schema(), Shape::Partial),
        ),
    ];
    for job in JobKind::ALL {
        files.push((
            job_schema_file(*job),
            text(job_schema(*job), Shape::Job(*job)),
        ));
    }
    files
}

/// The definition a field's schema refers to: draft-07 puts a field's `$ref` inside `allOf`
/// so that its description can sit beside it.
pub fn field_reference(field: &Value) -> Option<&str> {
    field.as_object().and_then(reference_of)
}

/// The definition a schema object names: its `$ref`, or that of schemars' one-element
/// `allOf: [{"$ref": …}]` wrapper.
pub fn reference_of(schema: &serde_json::Map<String, Value>) -> Option<&str> {
    schema
        .get("$ref")
        .or_else(|| match schema.get("allOf") {
            Some(Value::Array(all)) if all.len() == 1 => {
                all[0].as_object().filter(|o| o.len() == 1)?.get("$ref")
            }
            _ => None,
        })
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
}

/// Pretty JSON with a trailing newline, as committed.
fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("schema serializes");
    s.push('\n');
    s
}

/// schemars `transform` on [`Experiment`]: one `if job == X then model/data are X's` branch
/// per job. `if`/`then` (rather than `oneOf`) keeps validator errors about the chosen job's
/// keys precise.
pub fn add_job_branches(schema: &mut Schema) {
    let definitions = settings().definitions_path;
    let definitions = definitions.trim_start_matches('/');
    let branches: Vec<Value> = JobKind::ALL
        .iter()
        .map(|job| {
            let (model, data) = job.section_schema_names();
            let branch: Schema = json_schema!({
                "if": { "properties": { "job": { "const": job.as_str() } }, "required": ["job"] },
                "then": { "properties": {
                    "model": { "$ref": format!("#/{definitions}/{model}") },
                    "data": { "$ref": format!("#/{definitions}/{data}") }
                } }
            });
            branch.to_value()
        })
        .collect();
    schema.insert("allOf".into(), Value::Array(branches));
    // Every `model` key has a default, so the section may be left out; the loader fills it in.
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|k| k != "model");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_branches_point_at_existing_definitions() {
        let schema = experiment_schema().to_value();
        let defs = schema
            .get("definitions")
            .expect("draft-07 uses `definitions`");
        for job in JobKind::ALL {
            let (model, data) = job.section_schema_names();
            assert!(defs.get(model).is_some(), "{model} missing");
            assert!(defs.get(data).is_some(), "{data} missing");
        }
        let refs = serde_json::to_string(&schema["allOf"]).unwrap();
        assert!(refs.contains("#/definitions/MaeModel"), "{refs}");
    }

    #[test]
    fn every_optional_property_states_its_default() {
        // Editors show defaults; a key that is neither required nor defaulted leaves users guessing.
        let schema = experiment_schema().to_value();
        let mut missing = vec![];
        let mut check = |name: &str, obj: &Value| {
            let required: Vec<&str> = obj["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (k, p) in obj["properties"].as_object().into_iter().flatten() {
                let exempt = ["model", "derived"].contains(&k.as_str()) && name == "root";
                if !required.contains(&k.as_str()) && p.get("default").is_none() && !exempt {
                    missing.push(format!("{name}.{k}"));
                }
            }
        };
        check("root", &schema);
        for (name, def) in schema["definitions"].as_object().unwrap() {
            check(name, def);
        }
        assert!(missing.is_empty(), "keys without a default: {missing:?}");
    }

    #[test]
    fn every_property_is_documented() {
        // Editors show these descriptions; an undocumented key is a bug.
        fn walk(path: &str, v: &Value, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    let has_doc = p.get("description").is_some()
                        || p.get("$ref").is_some() && p.get("description").is_some();
                    if !has_doc {
                        missing.push(format!("{path}.{k}"));
                    }
                }
            }
            if let Some(defs) = v.get("definitions").and_then(Value::as_object) {
                for (name, d) in defs {
                    walk(name, d, missing);
                }
            }
        }
        let schema = experiment_schema().to_value();
        let mut missing = vec![];
        walk("", &schema, &mut missing);
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    }
}
