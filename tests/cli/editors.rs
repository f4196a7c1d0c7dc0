//! Editors: the real language servers (`tests/editors/`: yaml-language-server for YAML, taplo's
//! for TOML) driven over LSP stdio on the shipped experiments, bases and presets, in YAML and
//! in TOML, against the committed schemas. What a user sees as they type: completion of every
//! key where it may go, the job's own `model`/`data` keys and enum values, hover with the
//! default, and diagnostics on the offending line — and none on a valid file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::repo;
use crate::lsp_client::{Language, Server};

/// Runs `check` against each server as a test of its own: `$yaml` and `$toml`.
macro_rules! in_yaml_and_toml {
    ($check:ident: $yaml:ident, $toml:ident) => {
        #[test]
        fn $yaml() {
            $check(Language::Yaml);
        }

        #[test]
        fn $toml() {
            $check(Language::Toml);
        }
    };
}

/// A document as an editor holds it: where it claims to live, its language and text.
#[derive(Clone)]
struct Doc {
    path: PathBuf,
    language: Language,
    text: String,
}

/// Every shipped YAML experiment and base, and the TOML experiment and presets.
fn shipped() -> Vec<PathBuf> {
    let mut files = vec![];
    for dir in ["experiments", "experiments/base", "presets"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("a shipped folder") {
            let path = entry.expect("an entry").path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "toml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    files
}

impl Doc {
    fn shipped(path: &Path) -> Doc {
        let language = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Language::Toml,
            _ => Language::Yaml,
        };
        Doc {
            path: path.to_path_buf(),
            language,
            text: std::fs::read_to_string(path).expect("a shipped file"),
        }
    }

    /// The same document in the other language, beside it (opened in the editor only, never
    /// written): TOML from YAML with `#:schema` for the modeline, or YAML from TOML.
    fn translated(&self) -> Doc {
        let schema = self.schema_reference();
        match self.language {
            Language::Yaml => {
                let value: toml::Value = serde_yaml::from_str(&self.text).expect("valid YAML");
                let body = toml::to_string(&value).expect("TOML");
                Doc {
                    path: self.path.with_extension("from-yaml.toml"),
                    language: Language::Toml,
                    text: format!("#:schema {schema}\n{body}"),
                }
            }
            Language::Toml => {
                let value: serde_json::Value = toml::from_str(&self.text).expect("valid TOML");
                let body = serde_yaml::to_string(&value).expect("YAML");
                Doc {
                    path: self.path.with_extension("from-toml.yaml"),
                    language: Language::Yaml,
                    text: format!("# yaml-language-server: $schema={schema}\n{body}"),
                }
            }
        }
    }

    /// The relative schema path the first line names.
    fn schema_reference(&self) -> String {
        let first = self.text.lines().next().unwrap_or_default();
        let reference = first
            .strip_prefix("# yaml-language-server: $schema=")
            .or_else(|| first.strip_prefix("#:schema "))
            .unwrap_or_else(|| panic!("{}: no schema on the first line", self.path.display()));
        reference.trim().to_owned()
    }

    /// The committed schema the document names.
    fn schema(&self) -> Value {
        let dir = self.path.parent().expect("a folder");
        let path = dir.join(self.schema_reference());
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema exists"))
            .expect("JSON")
    }

    /// The document's values.
    fn value(&self) -> Value {
        match self.language {
            Language::Yaml => serde_yaml::from_str(&self.text).expect("YAML"),
            Language::Toml => toml::from_str(&self.text).expect("TOML"),
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.text.lines().collect()
    }

    /// The text with an empty line where a key of `section` (or the root) goes, and the
    /// cursor's line and character there. A section the file lacks is opened at the end.
    fn with_blank_line(&self, section: Option<&str>) -> (Doc, usize, usize) {
        let mut lines: Vec<String> = self.lines().iter().map(|l| l.to_string()).collect();
        let (at, indent) = match (self.language, section) {
            (Language::Yaml, None) => (lines.len(), ""),
            (Language::Toml, None) => (
                lines
                    .iter()
                    .position(|l| l.starts_with('['))
                    .unwrap_or(lines.len()),
                "",
            ),
            (language, Some(s)) => {
                let header = match language {
                    Language::Yaml => format!("{s}:"),
                    Language::Toml => format!("[{s}]"),
                };
                let indent = if language == Language::Yaml { "  " } else { "" };
                match lines.iter().position(|l| l.trim_end() == header) {
                    Some(i) => (i + 1, indent),
                    None => {
                        lines.push(header);
                        (lines.len(), indent)
                    }
                }
            }
        };
        lines.insert(at, indent.to_owned());
        let doc = Doc {
            text: lines.join("\n") + "\n",
            ..self.clone()
        };
        (doc, at, indent.len())
    }

    /// The text with `key: value` (or `key = value`) added to `section` on a line of its
    /// own, and that line's number.
    fn with_entry(&self, section: &str, key: &str, value: &str) -> (Doc, usize) {
        let (doc, line, _) = self.with_blank_line(Some(section));
        let entry = match self.language {
            Language::Yaml => format!("  {key}: {value}"),
            Language::Toml => format!("{key} = {value}"),
        };
        let mut lines: Vec<String> = doc.lines().iter().map(|l| l.to_string()).collect();
        lines[line] = entry;
        (
            Doc {
                text: lines.join("\n") + "\n",
                ..doc
            },
            line,
        )
    }
}

/// The properties a schema node offers.
fn property_names(node: &Value) -> BTreeSet<String> {
    node["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// What completion offers, as plain text (taplo quotes strings and writes dotted keys).
fn labels(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| i["label"].as_str())
        .map(|l| l.trim_matches('"').to_owned())
        .collect()
}

/// Every document the tests check: shipped files in their own language and translated.
fn documents(language: Language) -> Vec<Doc> {
    shipped()
        .iter()
        .map(|p| Doc::shipped(p))
        .flat_map(|d| [d.translated(), d])
        .filter(|d| d.language == language)
        .collect()
}

/// A document that uses `${…}` where numbers and switches go, which validation resolves
/// first; editors must take it as it is.
fn with_interpolations(language: Language) -> Doc {
    let base = Doc::shipped(&repo().join("experiments/mnli-tiny.yaml"));
    let base = if language == Language::Yaml {
        base
    } else {
        base.translated()
    };
    let quoted = |s: &str| format!("\"{s}\"");
    let (doc, _) = base.with_entry(
        "eval",
        "per_device_batch_size",
        &quoted("${train.per_device_batch_size * 2}"),
    );
    let (doc, _) = doc.with_entry("loader", "shuffle", &quoted("${env:SHUFFLE,true}"));
    let (doc, _) = doc.with_entry(
        "optimizer",
        "betas",
        &format!("[0.9, {}]", quoted("${env:BETA2,0.999}")),
    );
    Doc {
        path: repo().join(format!(
            "experiments/interpolated.{}",
            if language == Language::Yaml {
                "yaml"
            } else {
                "toml"
            }
        )),
        ..doc
    }
}

fn no_diagnostics_on_valid_files(language: Language) {
    let server = Server::start(language);
    let mut docs = documents(language);
    docs.push(with_interpolations(language));
    let uris: Vec<(String, &Doc)> = docs
        .iter()
        .map(|d| (server.open(&d.path, &d.text), d))
        .collect();
    let mut problems = vec![];
    for (uri, doc) in &uris {
        let found = server.diagnostics(uri);
        if !found.is_empty() {
            problems.push(format!(
                "{}:\n{}\n{}",
                doc.path.display(),
                serde_json::to_string_pretty(&found).unwrap(),
                doc.text
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

in_yaml_and_toml!(no_diagnostics_on_valid_files: yaml_valid_files_have_no_diagnostics, toml_valid_files_have_no_diagnostics);

/// The schema node of a section (`None`: the root).
fn section_schema<'a>(schema: &'a Value, section: Option<&str>) -> &'a Value {
    match section {
        None => schema,
        Some(s) => &schema["properties"][s],
    }
}

fn completion_offers_every_key(language: Language) {
    let mut server = Server::start(language);
    let mut missing = vec![];
    for doc in documents(language) {
        let schema = doc.schema();
        let value = doc.value();
        // The root, and every table it holds that has keys of its own (a profile names no
        // job: its `model`/`data` are free-form).
        let sections: Vec<String> = schema["properties"]
            .as_object()
            .expect("the root has properties")
            .iter()
            .filter(|(_, s)| s.get("properties").is_some())
            .map(|(k, _)| k.clone())
            .collect();
        assert!(sections.len() >= 9, "{sections:?}");
        let mut places: Vec<Option<&str>> = vec![None];
        places.extend(sections.iter().map(|s| Some(s.as_str())));
        for place in places {
            let (edited, line, character) = doc.with_blank_line(place);
            let uri = server.open(&edited.path, &edited.text);
            let offered = labels(&server.completion(&uri, line, character));
            server.close(&uri);
            let present: BTreeSet<String> = match place {
                None => property_names_of_value(&value),
                Some(s) => property_names_of_value(&value[s]),
            };
            let expected: BTreeSet<String> = property_names(section_schema(&schema, place))
                .difference(&present)
                .filter(|k| *k != "derived")
                .cloned()
                .collect();
            assert!(
                !expected.is_empty() || place.is_some(),
                "{}",
                doc.path.display()
            );
            let absent: Vec<&String> = expected.difference(&offered).collect();
            if !absent.is_empty() {
                missing.push(format!(
                    "{} in {}: {absent:?} not offered (offered: {offered:?})",
                    doc.path.display(),
                    place.unwrap_or("the root")
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

fn property_names_of_value(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

in_yaml_and_toml!(completion_offers_every_key: yaml_completion_offers_every_key_of_the_root_and_each_section, toml_completion_offers_every_key_of_the_root_and_each_section);

/// The values the job's `model.arch` takes, from its committed schema.
fn archs(job: &str) -> Vec<String> {
    let path = repo().join(format!("schema/{job}.schema.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let arch = &schema["properties"]["model"]["properties"]["arch"];
    arch["anyOf"][0]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{job}: arch is an enum: {arch}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// One small experiment per job, the cursor's lines known (with no `model` table when
/// `with_model` is false, for one to be added).
fn probe_with(language: Language, job: &str, with_model: bool) -> Doc {
    let model = if with_model {
        format!("model:\n  arch: {}\n", archs(job)[0])
    } else {
        String::new()
    };
    let yaml = format!(
        "# yaml-language-server: $schema=../schema/{job}.schema.json\n\
         name: probe\n\
         job: {job}\n\
         {model}\
         train:\n  epochs: 2\n\
         precision:\n  dtype: bf16\n"
    );
    let doc = Doc {
        path: repo().join(format!("experiments/probe-{job}.yaml")),
        language: Language::Yaml,
        text: yaml,
    };
    if language == Language::Yaml {
        doc
    } else {
        doc.translated()
    }
}

fn probe(language: Language, job: &str) -> Doc {
    probe_with(language, job, true)
}

const JOBS: [&str; 3] = ["mae", "text_classification", "causal_vae"];

/// The line holding `key` and the character in the middle of it.
fn key_position(doc: &Doc, key: &str) -> (usize, usize) {
    let lines = doc.lines();
    let line = lines
        .iter()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(&format!("{key}:")) || t.starts_with(&format!("{key} ="))
        })
        .unwrap_or_else(|| panic!("{key} in\n{}", doc.text));
    let column = lines[line].find(key).unwrap() + key.len() / 2;
    (line, column)
}

fn enum_values_and_arch(language: Language) {
    let mut server = Server::start(language);
    for job in JOBS {
        let doc = probe_with(language, job, false);
        for (section, key, expected) in [
            (
                "model",
                "arch",
                archs(job).into_iter().collect::<BTreeSet<_>>(),
            ),
            (
                "precision",
                "dtype",
                ["fp32", "bf16", "fp16"].map(String::from).into(),
            ),
            (
                "scheduler",
                "style",
                ["constant", "linear", "cosine", "inverse_sqrt", "wsd"]
                    .map(String::from)
                    .into(),
            ),
        ] {
            let (edited, line) = doc.with_entry(section, key, "");
            let character = edited.lines()[line].len();
            let uri = server.open(&edited.path, &edited.text);
            let offered = labels(&server.completion(&uri, line, character));
            server.close(&uri);
            let absent: Vec<&String> = expected.difference(&offered).collect();
            assert!(
                absent.is_empty(),
                "{job} {section}.{key}: {absent:?} not offered; offered {offered:?}\n{}",
                edited.text
            );
        }
    }
}

in_yaml_and_toml!(enum_values_and_arch: yaml_completion_offers_the_jobs_arch_and_enum_values, toml_completion_offers_the_jobs_arch_and_enum_values);

fn hover_shows_description_and_default(language: Language) {
    let mut server = Server::start(language);
    for job in JOBS {
        let doc = probe(language, job);
        let schema = doc.schema();
        let uri = server.open(&doc.path, &doc.text);
        for (section, key) in [
            ("train", "epochs"),
            ("precision", "dtype"),
            ("model", "arch"),
        ] {
            let description = schema["properties"][section]["properties"][key]["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{job}: {section}.{key} is documented"));
            assert!(description.contains("\n\nDefault: `"), "{description}");
            let (line, character) = key_position(&doc, key);
            let shown = server.hover(&uri, line, character);
            // Servers may reflow or escape Markdown: compare words.
            let words = |s: &str| -> Vec<String> {
                s.split(|c: char| !c.is_alphanumeric() && c != '.')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let (want, got) = (words(description).join(" "), words(&shown).join(" "));
            assert!(
                got.contains(&want),
                "{job} {section}.{key}: hover shows\n{shown}\nwanted\n{description}"
            );
        }
        server.close(&uri);
    }
}

in_yaml_and_toml!(hover_shows_description_and_default: yaml_hover_shows_the_description_with_the_default, toml_hover_shows_the_description_with_the_default);

fn diagnostics_on_the_offending_lines(language: Language) {
    let server = Server::start(language);
    let doc = probe(language, "text_classification");
    let quoted = |s: &str| format!("\"{s}\"");
    let cases = [
        ("train", "no_such_key", "1".to_owned(), "an unknown key"),
        (
            "train",
            "max_steps",
            quoted("three"),
            "a string for an integer",
        ),
        ("loader", "shuffle", "3".to_owned(), "a number for a switch"),
        (
            "train",
            "per_device_batch_size",
            "0".to_owned(),
            "below the minimum of 1",
        ),
        (
            "scheduler",
            "warmup_ratio",
            "1.5".to_owned(),
            "above the maximum of 1",
        ),
        (
            "hardware",
            "backend",
            quoted("cuda"),
            "not one of the backends",
        ),
    ];
    // Each mistake alone, then all at once: each diagnostic on its own line, nothing else.
    let mut all = doc.clone();
    let mut all_lines = vec![];
    for (section, key, value, what) in &cases {
        let (alone, line) = doc.with_entry(section, key, value);
        let uri = server.open(
            &alone.path.with_file_name(format!(
                "{key}-{}",
                alone.path.file_name().unwrap().to_str().unwrap()
            )),
            &alone.text,
        );
        let found = server.diagnostics(&uri);
        let lines: Vec<u64> = found
            .iter()
            .map(|d| d["range"]["start"]["line"].as_u64().unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![line as u64],
            "{what} ({section}.{key} = {value}): diagnostics {}\n{}",
            serde_json::to_string_pretty(&found).unwrap(),
            alone.text
        );
        server.close(&uri);
        let (next, _) = all.with_entry(section, key, value);
        all = next;
    }
    for (_, key, _, _) in &cases {
        let (line, _) = key_position(&all, key);
        all_lines.push(line as u64);
    }
    let uri = server.open(&all.path, &all.text);
    let mut found: Vec<u64> = server
        .diagnostics(&uri)
        .iter()
        .map(|d| d["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    found.sort();
    all_lines.sort();
    assert_eq!(found, all_lines, "{}", all.text);
}

in_yaml_and_toml!(diagnostics_on_the_offending_lines: yaml_diagnostics_land_on_the_offending_line, toml_diagnostics_land_on_the_offending_line);
