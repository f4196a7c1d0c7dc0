//! JSON Schemas generated from the config types.
//!
//! `runner.schema.json` validates experiments and drives editor completion;
//! `profile.schema.json` is the same with nothing required, for `presets/*.toml`;
//! `base.schema.json` likewise for the base files experiments `extends`. Bases get a schema of
//! their own rather than the experiment schema losing its `required` keys: a base is partial
//! by design (only the merged result is validated, by the loader), while an editor should
//! still flag a full experiment that lacks `name` or `job`.
//! Both are committed under `schema/`; `runner schema --check` (and a test) fails when the
//! committed files differ from what the types generate, as ruff and uv do for theirs.
//!
//! Draft-07 is used because it is what yaml-language-server and taplo understand best;
//! it has everything we need (`if`/`then` picks the job's `model`/`data` keys).

use schemars::generate::SchemaSettings;
use schemars::{Schema, json_schema};
use serde_json::Value;

use super::types::{Experiment, JobKind};

/// Where the committed schemas live, relative to the repository root.
pub const EXPERIMENT_SCHEMA_FILE: &str = "schema/runner.schema.json";
pub const PROFILE_SCHEMA_FILE: &str = "schema/profile.schema.json";
pub const BASE_SCHEMA_FILE: &str = "schema/base.schema.json";

fn settings() -> SchemaSettings {
    SchemaSettings::draft07()
}

/// The experiment schema.
pub fn experiment_schema() -> Schema {
    let mut schema = settings()
        .into_generator()
        .into_root_schema_for::<Experiment>();
    schema.insert(
        "$id".into(),
        "https://runner.invalid/schema/runner.schema.json".into(),
    );
    schema
}

/// The profile schema: the experiment's keys, none required.
pub fn profile_schema() -> Schema {
    let mut schema = experiment_schema();
    let obj = schema.as_object_mut().expect("root schema is an object");
    obj.remove("required");
    obj.insert(
        "$id".into(),
        "https://runner.invalid/schema/profile.schema.json".into(),
    );
    obj.insert("title".into(), "runner profile".into());
    obj.insert(
        "description".into(),
        "A hardware profile (`presets/*.toml`, `--profile`): any experiment keys, none required, \
         merged below the experiment file. `description` is the profile's own one-liner."
            .into(),
    );
    schema
}

/// The schema of a base file (`extends`): the experiment's keys, none required.
pub fn base_schema() -> Schema {
    let mut schema = experiment_schema();
    let obj = schema.as_object_mut().expect("root schema is an object");
    obj.remove("required");
    obj.insert(
        "$id".into(),
        "https://runner.invalid/schema/base.schema.json".into(),
    );
    obj.insert("title".into(), "runner base experiment".into());
    obj.insert(
        "description".into(),
        "A base that experiments build on (`extends`): any experiment keys, none required; \
         only the experiment's merged result is validated."
            .into(),
    );
    schema
}

/// Pretty JSON with a trailing newline, as committed.
pub fn render(schema: &Schema) -> String {
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
