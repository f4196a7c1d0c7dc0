//! The five layers and their merge with figment.
//!
//! Every layer (each profile, the experiment file, each `RUNNER_…` variable, each
//! command-line override) becomes one figment provider whose metadata name is its index
//! here. figment tags every merged value with the provider that set it, so
//! [`Layers::origin_of`] can answer "who set `train.epochs`?" down to the file line, the
//! variable or the flag.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Empty, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value as Json;

use super::diagnostic::{Diagnostic, FileRole, Origin};
use super::spans::SpanIndex;

/// Deepest nesting accepted in any layer. Real configs are 3 levels deep.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
pub enum LayerKind {
    File {
        role: FileRole,
        path: PathBuf,
        spans: SpanIndex,
    },
    Env {
        var: String,
    },
    Cli {
        flag: String,
    },
    /// The values of one cell of a sweep (above every other layer).
    Sweep {
        cell: String,
    },
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub kind: LayerKind,
    pub dict: Dict,
    /// A list edit (`key+=…`, `key-=…`, `~key`), turned into `dict` by `edits::apply`.
    pub edit: Option<super::edits::Edit>,
}

impl Layer {
    /// Parses a YAML or TOML file (chosen by extension).
    pub fn from_file_text(path: &Path, role: FileRole, text: &str) -> Result<Layer, Diagnostic> {
        Self::parse_file_text(path, role, text).map_err(|mut d| {
            if let Some(Origin::File {
                pos: Some((line, _)),
                ..
            }) = &d.origin
            {
                d.snippet = text.lines().nth(line.saturating_sub(1)).map(str::to_owned);
            }
            d
        })
    }

    fn parse_file_text(path: &Path, role: FileRole, text: &str) -> Result<Layer, Diagnostic> {
        let origin = |pos| Origin::File {
            role: role.clone(),
            path: path.to_path_buf(),
            pos,
        };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let (parsed, spans) = match ext {
            // JSON is YAML, so `runner show --format json` output can be fed back too.
            "yaml" | "yml" | "json" => {
                let parsed = serde_yaml::from_str::<Value>(text).map_err(|e| {
                    let pos = e.location().map(|l| (l.line(), l.column()));
                    let msg = e.to_string();
                    // serde_yaml appends " at line X column Y"; the location is shown anyway.
                    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                    Diagnostic::error("syntax", format!("malformed YAML: {msg}"))
                        .origin(origin(pos))
                        .help("fix the YAML syntax at this position (indentation, `key: value` pairs, quoting)")
                })?;
                let spans = SpanIndex::from_yaml(text);
                if let Some((key, pos, first)) = spans.duplicates.first() {
                    return Err(Diagnostic::error(
                        "syntax",
                        format!("duplicate key `{key}` (first set at line {})", first.0),
                    )
                    .origin(origin(Some(*pos)))
                    .help("keep one of them: YAML would silently use the last"));
                }
                (parsed, spans)
            }
            "toml" => {
                let parsed = toml::from_str::<Dict>(text).map_err(|e| {
                    let pos = e.span().map(|s| offset_to_pos(text, s.start));
                    Diagnostic::error("syntax", format!("malformed TOML: {}", e.message().trim()))
                        .origin(origin(pos))
                        .help("fix the TOML syntax at this position (`key = value`, `[section]` headers, quoting)")
                })?;
                (Value::from(parsed), SpanIndex::from_toml(text))
            }
            _ => {
                return Err(Diagnostic::error(
                    "file",
                    format!(
                        "cannot tell the format of `{}` from its extension",
                        path.display()
                    ),
                )
                .origin(origin(None))
                .help("name it `*.yaml`, `*.yml`, `*.toml` (or `*.json`)"));
            }
        };
        let dict = match parsed {
            Value::Dict(_, d) => d,
            Value::Empty(..) => Dict::new(),
            other => {
                return Err(Diagnostic::error(
                    "type",
                    format!(
                        "the top level must be a mapping of keys, found {}",
                        kind_name(&other)
                    ),
                )
                .origin(origin(Some((1, 1))))
                .help("start the file with `name: …` and `job: …` lines"));
            }
        };
        Ok(Layer {
            kind: LayerKind::File {
                role,
                path: path.to_path_buf(),
                spans,
            },
            dict,
            edit: None,
        })
    }

    /// Reads and parses a file; a missing or unreadable file is a diagnostic.
    pub fn read_file(path: &Path, role: FileRole) -> Result<Layer, Diagnostic> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let what = match role {
                FileRole::Experiment => "experiment file",
                FileRole::Base { .. } => "base file",
                FileRole::Profile(_) => "profile file",
            };
            Diagnostic::error(
                "file",
                format!("cannot read {what} `{}`: {e}", path.display()),
            )
            .origin(Origin::File {
                role: role.clone(),
                path: path.to_path_buf(),
                pos: None,
            })
            .help(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path (relative paths start at the current directory)"
                }
                _ => "check the file's permissions and that it is UTF-8 text",
            })
        })?;
        Self::from_file_text(path, role, &text)
    }

    /// One `key.path=value` override (command line or environment). The value is a YAML
    /// scalar or flow collection: `3`, `1e-4`, `true`, `cosine`, `[0.9, 0.95]`, `null`.
    pub fn from_override(key: &str, raw: &str, kind: LayerKind) -> Result<Layer, Diagnostic> {
        let origin = match &kind {
            LayerKind::Env { var } => Origin::Env { var: var.clone() },
            LayerKind::Cli { flag } => Origin::Cli { flag: flag.clone() },
            LayerKind::Sweep { cell } => Origin::Sweep { cell: cell.clone() },
            LayerKind::File { .. } => unreachable!("overrides are env or cli"),
        };
        let segments_ok = !key.is_empty()
            && key.split('.').all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !segments_ok {
            return Err(Diagnostic::error("override", format!("`{key}` is not a key path"))
                .origin(origin)
                .help("write dotted snake_case keys, e.g. `--set train.epochs=1` or `RUNNER_TRAIN__EPOCHS=1`"));
        }
        let value = serde_yaml::from_str::<Value>(raw).map_err(|e| {
            Diagnostic::error("override", format!("cannot parse the value `{raw}` of `{key}`: {e}"))
                .origin(origin.clone())
                .help("values are YAML scalars or flow lists: 3, 1e-4, true, cosine, \"a string\", [0.9, 0.95]")
        })?;
        let dict = figment::util::nest(key, value)
            .into_dict()
            .expect("nest of a non-empty key is a dict");
        Ok(Layer {
            kind,
            dict,
            edit: None,
        })
    }

    fn origin(&self, key: &str) -> Origin {
        match &self.kind {
            LayerKind::File { role, path, spans } => Origin::File {
                role: role.clone(),
                path: path.clone(),
                pos: spans.find(key),
            },
            LayerKind::Env { var } => Origin::Env { var: var.clone() },
            LayerKind::Cli { flag } => Origin::Cli { flag: flag.clone() },
            LayerKind::Sweep { cell } => Origin::Sweep { cell: cell.clone() },
        }
    }
}

/// One layer as a figment provider, named by its index (what `Layers::rank_of` reads back).
pub(super) struct LayerProvider {
    pub id: usize,
    pub dict: Dict,
}

impl Provider for LayerProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("layer#{}", self.id))
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The ordered layers (lowest first) and their merge.
pub struct Layers {
    layers: Vec<Layer>,
    figment: Figment,
}

impl Layers {
    pub fn new(layers: Vec<Layer>) -> Layers {
        let figment = layers
            .iter()
            .enumerate()
            .fold(Figment::new(), |f, (id, layer)| {
                f.merge(LayerProvider {
                    id,
                    dict: layer.dict.clone(),
                })
            });
        Layers { layers, figment }
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Index of the layer that set `key` (higher wins), `None` for defaults.
    pub fn rank_of(&self, key: &str) -> Option<usize> {
        let md = self.figment.find_metadata(key)?;
        md.name.strip_prefix("layer#")?.parse().ok()
    }

    /// Who set `key`, or `None` when no layer did (a default).
    pub fn origin_of(&self, key: &str) -> Option<Origin> {
        let rank = self.rank_of(key)?;
        Some(self.layers[rank].origin(key))
    }

    /// Best place to point at for a problem with `key`: who set it, else who set its
    /// nearest ancestor, else the experiment file.
    pub fn locate(&self, key: &str) -> Origin {
        let mut k = key;
        loop {
            // The layer that set the nearest ancestor; the position of the key itself where
            // the file has it (figment does not index into lists).
            if let Some(rank) = self.rank_of(k) {
                return self.layers[rank].origin(key);
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => break,
            }
        }
        self.layers
            .iter()
            .find_map(|l| match &l.kind {
                LayerKind::File {
                    role: FileRole::Experiment,
                    path,
                    ..
                } => Some(Origin::File {
                    role: FileRole::Experiment,
                    path: path.clone(),
                    pos: None,
                }),
                _ => None,
            })
            .unwrap_or(Origin::Default)
    }

    /// The source line an origin points at.
    pub fn snippet(&self, origin: &Origin) -> Option<String> {
        let Origin::File {
            path,
            pos: Some((line, _)),
            ..
        } = origin
        else {
            return None;
        };
        self.layers.iter().find_map(|l| match &l.kind {
            LayerKind::File { path: p, spans, .. } if p == path => {
                spans.line(*line).map(str::to_owned)
            }
            _ => None,
        })
    }

    /// A diagnostic about `key`, located and with its source line.
    pub fn diag_at(&self, key: &str, mut d: Diagnostic) -> Diagnostic {
        let origin = self.locate(key);
        d.snippet = self.snippet(&origin);
        d.key = Some(key.to_string());
        d.origin = Some(origin);
        d
    }

    /// The merged value as JSON. Non-finite numbers (`.nan`, `.inf`) and absurd nesting are
    /// reported here: JSON cannot carry the former, and serde would quietly turn them into
    /// `null`, which means "off" for some keys.
    pub fn merged_json(&self) -> Result<Json, Vec<Diagnostic>> {
        let merged = self.figment.extract::<Dict>().unwrap_or_default();
        let mut problems = Vec::new();
        let json = dict_to_json(&merged, "", 0, &mut problems);
        let problems: Vec<Diagnostic> = problems
            .into_iter()
            .map(|(k, d)| self.diag_at(&k, d))
            .collect();
        if problems.is_empty() {
            Ok(json)
        } else {
            Err(problems)
        }
    }
}

fn dict_to_json(
    dict: &Dict,
    path: &str,
    depth: usize,
    problems: &mut Vec<(String, Diagnostic)>,
) -> Json {
    let mut map = serde_json::Map::new();
    for (k, v) in dict {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        map.insert(k.clone(), value_to_json(v, &p, depth + 1, problems));
    }
    Json::Object(map)
}

fn value_to_json(
    v: &Value,
    path: &str,
    depth: usize,
    problems: &mut Vec<(String, Diagnostic)>,
) -> Json {
    if depth > MAX_DEPTH {
        problems.push((
            path.to_string(),
            Diagnostic::error(
                "type",
                format!("value nested deeper than {MAX_DEPTH} levels"),
            )
            .help("no runner key nests that deep; check the brackets"),
        ));
        return Json::Null;
    }
    match v {
        Value::String(_, s) => Json::String(s.clone()),
        Value::Char(_, c) => Json::String(c.to_string()),
        Value::Bool(_, b) => Json::Bool(*b),
        Value::Empty(_, Empty::None | Empty::Unit) => Json::Null,
        Value::Dict(_, d) => dict_to_json(d, path, depth, problems),
        Value::Array(_, items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| value_to_json(item, &format!("{path}.{i}"), depth + 1, problems))
                .collect(),
        ),
        Value::Num(_, n) => num_to_json(*n).unwrap_or_else(|| {
            problems.push((
                path.to_string(),
                Diagnostic::error("type", "expected a finite number, found NaN or infinity")
                    .help("write a finite number; to turn a setting off use its documented value (e.g. clip_grad_norm: 0)"),
            ));
            Json::Null
        }),
    }
}

fn num_to_json(n: Num) -> Option<Json> {
    let json = match n {
        Num::U8(v) => Json::from(v),
        Num::U16(v) => Json::from(v),
        Num::U32(v) => Json::from(v),
        Num::U64(v) => Json::from(v),
        Num::USize(v) => Json::from(v),
        Num::I8(v) => Json::from(v),
        Num::I16(v) => Json::from(v),
        Num::I32(v) => Json::from(v),
        Num::I64(v) => Json::from(v),
        Num::ISize(v) => Json::from(v),
        Num::U128(v) => u64::try_from(v)
            .map(Json::from)
            .unwrap_or_else(|_| Json::from(v as f64)),
        Num::I128(v) => i64::try_from(v)
            .map(Json::from)
            .unwrap_or_else(|_| Json::from(v as f64)),
        Num::F32(v) => serde_json::Number::from_f64(v as f64).map(Json::Number)?,
        Num::F64(v) => serde_json::Number::from_f64(v).map(Json::Number)?,
    };
    Some(json)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::String(..) | Value::Char(..) => "a string",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "nothing",
        Value::Dict(..) => "a mapping",
        Value::Array(..) => "a list",
    }
}

pub fn offset_to_pos(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}
