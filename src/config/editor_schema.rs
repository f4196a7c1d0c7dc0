//! The committed schemas, shaped for the language servers editors run.
//!
//! [`super::schema`] generates what schemars writes for the config types, and runner walks that
//! form itself (`edits`, `suggest`, `starter`). Editors read the committed copies under
//! `schema/` through two servers, which each misread parts of that form (measured over LSP
//! stdio by `tests/cli/editors.rs`, yaml-language-server 1.25.0 and taplo's server 0.8.0):
//!
//! - `"default": null`: yaml-language-server throws building the insert text
//!   (`toYamlStringScalar(null)`) and offers no completion at all at that level. Null defaults
//!   are dropped; the description says "Default: not set." instead.
//! - `allOf: [{"$ref": …}]`, how schemars writes a documented field of a named type: taplo
//!   recurses without end on it (its merge re-adds the `allOf` it meant to remove) and crashes;
//!   both servers then show the *type's* description on hover instead of the field's. Every
//!   reference is inlined, the field's own keys winning, and the files carry no `definitions`.
//! - `anyOf: [T, ${…}]`, how a number or switch also accepts an interpolation: taplo offers
//!   the key once per branch, without its documentation. Where `T` is a plain number, switch,
//!   list or map, the two fold into one schema, `type: [T, "string"]` with the `${` pattern
//!   (which constrains strings only), so there is one branch to offer. Enums keep the `anyOf`.
//! - Defaults: neither server shows a field's `default` on hover, so each description ends
//!   with it ("Default: `3`.").
//! - A root `allOf` (the `if job == … then model/data are …` branches): taplo then offers no
//!   top-level key, and neither server uses `if`/`then` for completion in TOML. Hence one
//!   schema per job, `schema/<job>.schema.json`, with that job's `model` and `data` in place
//!   and no branches, which `runner init` and the shipped experiments point at.
//! - `additionalProperties: false`: taplo reports an unknown key on its table's header line,
//!   not its own. Each closed table also gets `patternProperties` with one pattern matching
//!   every name it does not know, whose schema is `false`: taplo then marks the key's own line
//!   ("False schema does not allow 1") and yaml-language-server says "Property x is not
//!   allowed." on the key. (The pattern needs a lookahead, which ECMA-262 and fancy-regex,
//!   the engines of the two servers, have.)
//! - `required`: a file that `extends` bases gets keys the editor cannot see, and taplo reports
//!   a missing key on every line of the file. The per-job, profile and base schemas require
//!   nothing; `runner validate` checks the merged result, with file:line. The general
//!   `runner.schema.json` keeps `required` and the job branches and still validates every job.

use serde_json::{Map, Value, json};

use super::types::JobKind;

/// Which committed file is being shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `runner.schema.json`: every job, `required` and the job branches kept.
    General,
    /// `<job>.schema.json`: one job's `model` and `data`, nothing required.
    Job(JobKind),
    /// `profile.schema.json` and `base.schema.json`: any keys, nothing required. Profiles
    /// and bases name no job of their own (or may not), so the branches go.
    Partial,
}

/// Keywords whose values are data, not schemas: never walked.
const DATA_KEYWORDS: [&str; 5] = ["default", "const", "enum", "examples", "required"];

/// `schema` as schemars wrote it (with `definitions`), shaped for editors.
pub fn shape(schema: &Value, shape: Shape) -> Value {
    let mut root = schema.clone();
    let obj = root.as_object_mut().expect("root schema is an object");
    let defs = match obj.remove("definitions") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    match shape {
        Shape::General => {}
        Shape::Partial => {
            obj.remove("allOf");
        }
        Shape::Job(job) => {
            obj.remove("allOf");
            let (model, data) = job.section_schema_names();
            let props = obj
                .get_mut("properties")
                .and_then(Value::as_object_mut)
                .expect("the root has properties");
            for (key, definition) in [("model", model), ("data", data)] {
                let description = props[key]["description"].clone();
                props.insert(
                    key.into(),
                    json!({ "description": description, "$ref": format!("#/definitions/{definition}") }),
                );
            }
            let description = props["job"]["description"].clone();
            props.insert(
                "job".into(),
                json!({ "description": description, "enum": [job.as_str()] }),
            );
        }
    }
    let interpolation = defs.get("Interpolation").map(|i| inline(i, &defs));
    let mut root = inline(&root, &defs);
    if let Some(interpolation) = &interpolation {
        each_schema(&mut root, &mut |s| fold_interpolation(s, interpolation));
    }
    each_schema(&mut root, &mut state_default);
    each_schema(&mut root, &mut flag_unknown_keys_in_place);
    if shape != Shape::General {
        each_schema(&mut root, &mut |s| {
            s.remove("required");
        });
    }
    root
}

/// Calls `visit` on every schema object under `node`, children before their parent; data
/// keywords (`default`, `enum`, …) are not entered.
fn each_schema(node: &mut Value, visit: &mut dyn FnMut(&mut Map<String, Value>)) {
    match node {
        Value::Array(items) => items.iter_mut().for_each(|v| each_schema(v, visit)),
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if !DATA_KEYWORDS.contains(&k.as_str()) {
                    each_schema(v, visit);
                }
            }
            visit(obj);
        }
        _ => {}
    }
}

/// The definition a node refers to (`schema::reference_of`), taken off the node.
fn take_reference(node: &mut Map<String, Value>) -> Option<String> {
    let name = super::schema::reference_of(node)?.to_owned();
    if node.remove("$ref").is_none() {
        node.remove("allOf");
    }
    Some(name)
}

/// Every reference replaced by its definition, the referring node's own keys (description,
/// default) winning over the definition's.
fn inline(node: &Value, defs: &Map<String, Value>) -> Value {
    match node {
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, defs)).collect()),
        Value::Object(obj) => {
            let mut own = obj.clone();
            let target = take_reference(&mut own);
            let own: Map<String, Value> = own
                .into_iter()
                .map(|(k, v)| {
                    let v = if DATA_KEYWORDS.contains(&k.as_str()) {
                        v
                    } else {
                        inline(&v, defs)
                    };
                    (k, v)
                })
                .collect();
            let Some(target) = target else {
                return Value::Object(own);
            };
            let Some(Value::Object(mut merged)) = defs.get(&target).map(|d| inline(d, defs)) else {
                panic!("schemars wrote a reference to a missing definition `{target}`");
            };
            merged.extend(own);
            Value::Object(merged)
        }
        other => other.clone(),
    }
}

/// The JSON types a schema names.
fn types(node: &Value) -> Vec<String> {
    match node.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

/// A schema that is just a type with its bounds: it can take a `${` string beside it.
fn foldable(node: &Value) -> bool {
    let Some(obj) = node.as_object() else {
        return false;
    };
    let types = types(node);
    !types.is_empty()
        && ["enum", "const", "oneOf", "anyOf", "allOf", "pattern"]
            .iter()
            .all(|k| !obj.contains_key(*k))
        && !(types.iter().any(|t| t == "string") && obj.contains_key("format"))
}

/// "an integer", "a number or null", … for the message of a failed `${` pattern.
fn describe(types: &[String]) -> String {
    let names: Vec<&str> = types
        .iter()
        .map(|t| match t.as_str() {
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "true or false",
            "array" => "a list",
            "object" => "a table",
            "null" => "null",
            _ => "a value",
        })
        .collect();
    names.join(", ")
}

/// Folds `anyOf: [T, ${…}]` into one schema where `T` allows it (see the module docs).
fn fold_interpolation(obj: &mut Map<String, Value>, interpolation: &Value) {
    let Some(Value::Array(branches)) = obj.get("anyOf") else {
        return;
    };
    if !branches.contains(interpolation) {
        return;
    }
    // Nested `anyOf`s (an optional enum: `anyOf: [anyOf: [E, null], ${…}]`) flatten.
    let mut others = vec![];
    for branch in branches.iter().filter(|b| *b != interpolation) {
        match branch.as_object() {
            Some(b) if b.len() == 1 && b.contains_key("anyOf") => {
                others.extend(b["anyOf"].as_array().into_iter().flatten().cloned());
            }
            _ => others.push(branch.clone()),
        }
    }
    obj.remove("anyOf");
    if let [only] = others.as_slice()
        && foldable(only)
    {
        let mut folded = only.as_object().cloned().unwrap_or_default();
        let mut ts = types(only);
        if !ts.iter().any(|t| t == "string") {
            let message = format!("Expected {} or a `${{…}}` expression.", describe(&ts));
            ts.push("string".into());
            folded.insert("type".into(), json!(ts));
            folded.insert("pattern".into(), interpolation["pattern"].clone());
            // yaml-language-server's own keyword: its message instead of the pattern.
            folded.insert("patternErrorMessage".into(), message.into());
        }
        folded.remove("description");
        for (k, v) in folded {
            obj.entry(k).or_insert(v);
        }
    } else {
        // The field's description says what the branches' own (the type's) would.
        for branch in &mut others {
            if let Some(b) = branch.as_object_mut() {
                b.remove("description");
            }
        }
        let mut bare = interpolation.clone();
        bare.as_object_mut().map(|b| b.remove("description"));
        others.push(bare);
        obj.insert("anyOf".into(), Value::Array(others));
    }
}

/// A documented default written at the end of its description; a null default dropped.
fn state_default(obj: &mut Map<String, Value>) {
    let stated = match obj.get("default") {
        None | Some(Value::Object(_)) => None,
        Some(Value::Null) => Some("Default: not set.".to_owned()),
        Some(Value::String(s)) => Some(format!("Default: `{s}`.")),
        Some(other) => Some(format!("Default: `{other}`.")),
    };
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    if let (Some(stated), Some(Value::String(description))) = (stated, obj.get_mut("description")) {
        description.push_str("\n\n");
        description.push_str(&stated);
    }
}

/// Every closed table gets a pattern property that matches exactly the names it does not know
/// and allows nothing (see the module docs: this puts taplo's diagnostic on the key's line).
fn flag_unknown_keys_in_place(obj: &mut Map<String, Value>) {
    let closed = obj.get("additionalProperties") == Some(&Value::Bool(false));
    let Some(Value::Object(props)) = obj.get("properties") else {
        return;
    };
    if !closed || props.is_empty() {
        return;
    }
    let known: Vec<String> = props.keys().map(|k| regex_escape(k)).collect();
    let unknown = format!("^(?!(?:{})$)", known.join("|"));
    obj.insert("patternProperties".into(), json!({ unknown: false }));
}

/// `name` as a regular expression that matches only itself.
fn regex_escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let special = "\\.^$|?*+()[]{}/-".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::experiment_schema;

    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        out.push(v);
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(obj) => obj
                .iter()
                .filter(|(k, _)| !DATA_KEYWORDS.contains(&k.as_str()))
                .for_each(|(_, v)| walk(v, out)),
            _ => {}
        }
    }

    fn every_shape() -> Vec<(Shape, Value)> {
        let schema = experiment_schema().to_value();
        let mut shapes = vec![Shape::General, Shape::Partial];
        shapes.extend(JobKind::ALL.iter().map(|j| Shape::Job(*j)));
        shapes.into_iter().map(|s| (s, shape(&schema, s))).collect()
    }

    #[test]
    fn no_reference_no_null_default_no_wrapper() {
        for (which, schema) in every_shape() {
            let mut nodes = vec![];
            walk(&schema, &mut nodes);
            for node in nodes {
                let Some(obj) = node.as_object() else {
                    continue;
                };
                assert!(
                    !obj.contains_key("$ref"),
                    "{which:?}: a $ref left in {node}"
                );
                assert_ne!(obj.get("default"), Some(&Value::Null), "{which:?}: {node}");
                if which != Shape::General || !std::ptr::eq(node, &schema) {
                    assert!(!obj.contains_key("allOf"), "{which:?}: an allOf in {node}");
                }
            }
        }
    }

    #[test]
    fn a_field_of_an_enum_type_keeps_its_own_description_and_default() {
        let schema = shape(&experiment_schema().to_value(), Shape::Job(JobKind::Mae));
        let dtype = &schema["properties"]["precision"]["properties"]["dtype"];
        let description = dtype["description"].as_str().unwrap();
        assert!(description.ends_with("Default: `fp32`."), "{description}");
        let enum_branch = &dtype["anyOf"][0];
        assert_eq!(enum_branch["enum"], json!(["fp32", "bf16", "fp16"]));
        assert!(enum_branch.get("description").is_none(), "{enum_branch}");
    }

    #[test]
    fn a_number_and_its_interpolation_fold_into_one_schema() {
        let schema = shape(&experiment_schema().to_value(), Shape::General);
        assert!(
            schema.get("definitions").is_none(),
            "every reference is inlined"
        );
        let batch = &schema["properties"]["train"]["properties"]["per_device_batch_size"];
        assert_eq!(batch["type"], json!(["integer", "string"]), "{batch}");
        assert_eq!(batch["minimum"], json!(1));
        assert_eq!(batch["pattern"], json!("\\$\\{"));
        assert!(batch.get("anyOf").is_none());
        // Strings take `${…}` as they are: no second branch.
        let dir = &schema["properties"]["resume"];
        assert!(
            dir.get("anyOf").is_none() && dir.get("pattern").is_none(),
            "{dir}"
        );
    }

    #[test]
    fn unknown_names_and_only_those_match_the_closed_tables_pattern() {
        let schema = shape(&experiment_schema().to_value(), Shape::Job(JobKind::Mae));
        let train = &schema["properties"]["train"];
        let patterns = train["patternProperties"]
            .as_object()
            .expect("a closed table");
        let (pattern, not_allowed) = patterns.iter().next().unwrap();
        assert_eq!(not_allowed, &Value::Bool(false));
        let re = fancy_regex_free_match(pattern);
        for known in train["properties"].as_object().unwrap().keys() {
            assert!(!re(known), "{known} matched {pattern}");
        }
        for unknown in ["epoch", "epochs_", "xepochs", "batch_size", ""] {
            assert!(re(unknown), "{unknown:?} did not match {pattern}");
        }
        assert_eq!(regex_escape("a.b-c"), "a\\.b\\-c");
    }

    /// `^(?!(?:a|b)$)` evaluated without a regex engine: true when the name is none of them.
    fn fancy_regex_free_match(pattern: &str) -> impl Fn(&str) -> bool {
        let inner = pattern
            .strip_prefix("^(?!(?:")
            .and_then(|p| p.strip_suffix(")$)"))
            .expect("the shape flag_unknown_keys_in_place writes");
        let names: Vec<String> = inner.split('|').map(|n| n.replace('\\', "")).collect();
        move |name: &str| !names.iter().any(|n| n == name)
    }

    #[test]
    fn the_job_schema_has_the_jobs_sections_and_requires_nothing() {
        for job in JobKind::ALL {
            let schema = shape(&experiment_schema().to_value(), Shape::Job(*job));
            assert!(schema.get("allOf").is_none());
            assert_eq!(schema["properties"]["job"]["enum"], json!([job.as_str()]));
            let mut nodes = vec![];
            walk(&schema, &mut nodes);
            assert!(nodes.iter().all(|n| n.get("required").is_none()));
            let model = &schema["properties"]["model"]["properties"];
            assert!(model.get("arch").is_some(), "{job:?}: {model}");
        }
        let general = shape(&experiment_schema().to_value(), Shape::General);
        assert_eq!(general["required"], json!(["name", "job", "data"]));
        assert_eq!(
            general["allOf"].as_array().map(Vec::len),
            Some(JobKind::ALL.len())
        );
    }
}
