//! Stage 2 of resolution: the merged value against the JSON Schema, then into the types.
//!
//! Every schema error becomes one [`Diagnostic`] naming the key, the layer that set it, what
//! was expected and a fix. Typed deserialization runs only on a value the schema accepted, so
//! its errors are rare (e.g. numbers beyond a type's range).

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value as Json;

use super::diagnostic::Diagnostic;
use super::layers::Layers;
use super::schema::strict_experiment_schema;
use super::suggest::{self, SchemaKey};
use super::types::{Experiment, JobKind};

pub struct CompiledSchema {
    pub json: Json,
    pub validator: jsonschema::Validator,
}

/// Built once per process: generating and compiling the schema takes about a millisecond.
pub static SCHEMA: LazyLock<CompiledSchema> = LazyLock::new(|| {
    let json = strict_experiment_schema().to_value();
    let validator = jsonschema::draft7::new(&json).expect("the generated schema is valid draft-07");
    CompiledSchema { json, validator }
});

/// JSON pointer (`/train/epochs`) → dotted key (`train.epochs`).
fn pointer_to_key(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn join(parent: &str, leaf: &str) -> String {
    if parent.is_empty() {
        leaf.to_string()
    } else {
        format!("{parent}.{leaf}")
    }
}

fn describe_value(v: &Json) -> String {
    let text = match v {
        Json::Null => return "null".into(),
        Json::Bool(_) => format!("boolean `{v}`"),
        Json::Number(_) => format!("number `{v}`"),
        Json::String(s) => format!("string \"{s}\""),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    };
    if text.len() > 80 {
        format!("{}…", &text[..text.floor_char_boundary(80)])
    } else {
        text
    }
}

fn type_name(kind: &TypeKind) -> String {
    let name = |t: jsonschema::JsonType| match t.to_string().as_str() {
        "integer" => "an integer".to_string(),
        "number" => "a number".to_string(),
        "string" => "a string".to_string(),
        "boolean" => "true or false".to_string(),
        "array" => "a list".to_string(),
        "object" => "a mapping of keys".to_string(),
        "null" => "null".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => name(*t),
        TypeKind::Multiple(set) => set.iter().map(name).collect::<Vec<_>>().join(" or "),
    }
}

/// Checks `value` against the experiment schema; one diagnostic per problem.
pub fn schema_errors(value: &Json, layers: &Layers) -> Vec<Diagnostic> {
    let job = value
        .get("job")
        .and_then(Json::as_str)
        .filter(|j| JobKind::parse(j).is_some());
    let keys = suggest::schema_keys(&SCHEMA.json, job);
    let known: Vec<String> = keys.iter().map(|k| k.path.clone()).collect();
    let doc = |key: &str| -> Option<String> {
        keys.iter()
            .find(|k| k.path == key)
            .and_then(SchemaKey::description)
            .map(first_sentence)
    };
    let mut out = Vec::new();
    for err in SCHEMA.validator.iter_errors(value) {
        let key = pointer_to_key(err.instance_path().as_str());
        let instance = err.instance();
        let found = describe_value(instance);
        let d = match err.kind() {
            // The optional `sweep` section: say what in it is wrong.
            ValidationErrorKind::AnyOf { .. } if key == "sweep" => {
                let problems = super::sweep::shape_problems(instance);
                if !problems.is_empty() {
                    out.extend(problems.into_iter().map(|(k, d)| layers.diag_at(&k, d)));
                    continue;
                }
                Diagnostic::error("schema", format!("`{key}`: {err}"))
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for leaf in unexpected {
                    let full = join(&key, leaf);
                    let mut d = Diagnostic::error("unknown-key", format!("unknown key `{full}`"));
                    d.help = suggest::unknown_key_help(&key, leaf, &known).or_else(|| {
                        Some("remove it; `runner init JOB` writes a file listing every key".into())
                    });
                    out.push(layers.diag_at(&full, d));
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let leaf = property.as_str().unwrap_or_default();
                let full = join(&key, leaf);
                let what = doc(&full).map(|d| format!(" ({d})")).unwrap_or_default();
                let mut d = Diagnostic::error(
                    "missing-key",
                    format!("missing required key `{full}`{what}"),
                );
                d.help = Some(match full.as_str() {
                    "name" => "add `name: my-experiment` at the top of the experiment file".into(),
                    "job" => {
                        "add `job: mae`, `job: text_classification` or `job: causal_vae`".into()
                    }
                    _ => format!("set `{full}` in the experiment file or with `--set {full}=…`"),
                });
                // Point at the section that lacks it.
                let mut d = layers.diag_at(&full, d);
                d.key = Some(full);
                out.push(d);
                continue;
            }
            ValidationErrorKind::Type { kind } => {
                let expected = type_name(kind);
                let mut d =
                    Diagnostic::error("type", format!("`{key}` must be {expected}, found {found}"));
                d.help = Some(match doc(&key) {
                    Some(doc) => format!("`{key}`: {doc}"),
                    None => format!("write {expected} here"),
                });
                d
            }
            ValidationErrorKind::Enum { options } => {
                let options: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut d = Diagnostic::error(
                    "value",
                    format!(
                        "`{key}` must be one of {}, found {found}",
                        options.join(", ")
                    ),
                );
                let closest = instance
                    .as_str()
                    .and_then(|s| suggest::closest_value(s, &options));
                d.help = Some(match closest {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("pick one of: {}", options.join(", ")),
                });
                d
            }
            ValidationErrorKind::Minimum { limit } => {
                bound(&key, &found, format!("at least {limit}"))
            }
            ValidationErrorKind::Maximum { limit } => {
                bound(&key, &found, format!("at most {limit}"))
            }
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                bound(&key, &found, format!("greater than {limit}"))
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                bound(&key, &found, format!("less than {limit}"))
            }
            ValidationErrorKind::MinLength { .. } => {
                Diagnostic::error("value", format!("`{key}` must not be empty")).help(
                    doc(&key).map_or("give it a value or remove the key".into(), |d| {
                        format!("`{key}`: {d}")
                    }),
                )
            }
            ValidationErrorKind::MaxLength { limit } => Diagnostic::error(
                "value",
                format!("`{key}` is longer than {limit} characters"),
            )
            .help("shorten it"),
            ValidationErrorKind::Pattern { .. } => {
                let help = match key.as_str() {
                    "name" => "use letters, digits, `.`, `_` and `-` only, starting with a letter or digit".to_string(),
                    "hardware.device" => "write cpu, cuda, cuda:N (N = GPU index), mps or tpu".to_string(),
                    _ => doc(&key).unwrap_or_else(|| "see the schema for the allowed form".into()),
                };
                Diagnostic::error("value", format!("`{key}` has an invalid form: {found}"))
                    .help(help)
            }
            ValidationErrorKind::MinItems { limit } | ValidationErrorKind::MaxItems { limit } => {
                Diagnostic::error(
                    "value",
                    format!(
                        "`{key}` must have {limit} items, found {}",
                        instance.as_array().map_or(0, Vec::len)
                    ),
                )
                .help(doc(&key).unwrap_or_else(|| format!("give exactly {limit} items")))
            }
            _ => Diagnostic::error("schema", format!("`{key}`: {err}"))
                .help(doc(&key).unwrap_or_else(|| "see schema/runner.schema.json".into())),
        };
        out.push(layers.diag_at(&key, d));
    }
    out
}

fn bound(key: &str, found: &str, expected: String) -> Diagnostic {
    Diagnostic::error(
        "value",
        format!("`{key}` must be {expected}, found {found}"),
    )
    .help(format!("set `{key}` to a value {expected}"))
}

fn first_sentence(s: &str) -> String {
    let s = s.replace('\n', " ");
    match s.find(". ") {
        Some(i) => s[..=i].to_string(),
        None => s,
    }
}

/// `job: mae` + `model: {...}` → `model: {mae: {...}}` (and `data`), the shape the typed
/// enums read. See `types::job`.
pub fn tag_job_sections(value: &mut Json, job: JobKind) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    for section in ["model", "data"] {
        let inner = obj
            .remove(section)
            .unwrap_or_else(|| Json::Object(Default::default()));
        let mut tagged = serde_json::Map::new();
        tagged.insert(job.as_str().to_string(), inner);
        obj.insert(section.to_string(), Json::Object(tagged));
    }
}

/// Deserializes a schema-valid value into the typed config.
pub fn into_experiment(mut value: Json, layers: &Layers) -> Result<Experiment, Diagnostic> {
    let job = value
        .get("job")
        .and_then(Json::as_str)
        .and_then(JobKind::parse);
    if let Some(job) = job {
        tag_job_sections(&mut value, job);
    }
    serde_path_to_error::deserialize::<_, Experiment>(value).map_err(|e| {
        let job_tag = job.map(|j| format!(".{}", j.as_str())).unwrap_or_default();
        let key = e
            .path()
            .to_string()
            .replace(&format!("model{job_tag}"), "model")
            .replace(&format!("data{job_tag}"), "data");
        let d = Diagnostic::error("type", format!("`{key}`: {}", e.inner()))
            .help("check the value's type and range against `runner schema`");
        layers.diag_at(&key, d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_dotted_keys() {
        assert_eq!(pointer_to_key("/train/epochs"), "train.epochs");
        assert_eq!(pointer_to_key(""), "");
        assert_eq!(pointer_to_key("/a~1b/c~0d"), "a/b.c~d");
    }

    #[test]
    fn tagging_round_trips_through_serialization() {
        let mut v = serde_json::json!({"name": "x", "job": "mae", "model": {"mask_ratio": 0.5}, "data": {"path": "d"},
            "optimizer": {"lr": 1e-3}});
        tag_job_sections(&mut v, JobKind::Mae);
        let exp: Experiment = serde_json::from_value(v).unwrap();
        let back = serde_json::to_value(&exp).unwrap();
        assert_eq!(back["model"]["mask_ratio"], 0.5);
        assert_eq!(back["data"]["path"], "d");
        let mut again = back.clone();
        tag_job_sections(&mut again, JobKind::Mae);
        assert_eq!(serde_json::from_value::<Experiment>(again).unwrap(), exp);
    }
}
