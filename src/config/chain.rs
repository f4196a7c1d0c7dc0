//! Files that build on each other: an experiment's `extends: PATH` or `extends: [PATH, …]`
//! names base files (relative to the file that names them; YAML and TOML may mix). The bases
//! become layers of their own, below the file that extends them and above the profiles, left
//! to right, recursively: `[bases of A…, A, bases of B…, B, the file]`. Lists are replaced
//! whole, as between any two layers. A base may be partial (no `name`, no `job`): only the
//! merged result is validated. Each base keeps its own positions, so a diagnostic or
//! `--explain` points into it and says through which files it was reached.

use std::path::{Path, PathBuf};

use figment::value::Value;

use super::diagnostic::{Diagnostic, Diagnostics, FileRole, Origin};
use super::layers::{Layer, LayerKind};

/// The key that names a file's bases.
pub const EXTENDS: &str = "extends";

/// Chains deeper than this are refused (a real repository has two or three levels).
const MAX_DEPTH: usize = 32;

/// `experiment` (already parsed) and every base it reaches, lowest first, with `extends`
/// taken out of each layer.
pub fn layers(experiment: Layer) -> Result<Vec<Layer>, Diagnostics> {
    let mut out = Vec::new();
    let mut diags = Diagnostics::default();
    let mut stack = Vec::new();
    expand(experiment, &mut stack, &mut out, &mut diags);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(out)
    }
}

/// One step of the chain: the file that named a base, where, and the base as written.
#[derive(Debug, Clone)]
struct Step {
    file: PathBuf,
    pos: Option<(usize, usize)>,
    /// The base as the file names it.
    target: String,
}

impl Step {
    /// `mid.yaml:2:10 extends base.yaml`.
    fn describe(&self) -> String {
        let at = match self.pos {
            Some((l, c)) => format!("{}:{l}:{c}", self.file.display()),
            None => self.file.display().to_string(),
        };
        format!("{at} extends {}", self.target)
    }
}

/// Every step from the experiment down to `last`, as one line.
fn chain(stack: &[Step], last: &Step) -> String {
    stack
        .iter()
        .chain(std::iter::once(last))
        .map(Step::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

fn expand(mut layer: Layer, stack: &mut Vec<Step>, out: &mut Vec<Layer>, diags: &mut Diagnostics) {
    let LayerKind::File { path, spans, role } = &layer.kind else {
        out.push(layer);
        return;
    };
    let (path, spans, role) = (path.clone(), spans.clone(), role.clone());
    let Some(value) = layer.dict.remove(EXTENDS) else {
        out.push(layer);
        return;
    };
    // A diagnostic about `key` of this file: where it is and its line.
    let at = |d: Diagnostic, key: &str| {
        let pos = spans.find(key);
        let mut d = d.key(key).origin(Origin::File {
            role: role.clone(),
            path: path.clone(),
            pos,
        });
        d.snippet = pos.and_then(|(l, _)| spans.line(l)).map(str::to_owned);
        d
    };
    let names: Vec<(String, String)> = match &value {
        Value::String(_, s) => vec![(s.clone(), EXTENDS.to_string())],
        Value::Array(_, items) => {
            let mut names = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => names.push((s.to_string(), format!("{EXTENDS}.{i}"))),
                    None => diags.push(at(
                        Diagnostic::error(
                            "type",
                            "`extends` lists file paths; this item is not a string",
                        )
                        .help("write `extends: base.yaml` or `extends: [a.yaml, b.toml]`"),
                        &format!("{EXTENDS}.{i}"),
                    )),
                }
            }
            names
        }
        _ => {
            diags.push(at(
                Diagnostic::error("type", "`extends` must be a file path or a list of them")
                    .help("write `extends: base.yaml` or `extends: [a.yaml, b.toml]`"),
                EXTENDS,
            ));
            Vec::new()
        }
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (name, key) in names {
        let base = if Path::new(&name).is_absolute() {
            PathBuf::from(&name)
        } else {
            dir.join(&name)
        };
        let step = Step {
            file: path.clone(),
            pos: spans.find(&key),
            target: name.clone(),
        };
        if stack
            .iter()
            .chain(std::iter::once(&step))
            .any(|s| same_file(&s.file, &base))
        {
            diags.push(at(
                Diagnostic::error(
                    "extends",
                    format!("`extends` makes a cycle: {}", chain(stack, &step)),
                )
                .help("a file cannot build on itself, directly or through its bases; remove one of these `extends`"),
                &key,
            ));
            continue;
        }
        if stack.len() >= MAX_DEPTH {
            diags.push(at(
                Diagnostic::error(
                    "extends",
                    format!("`extends` chain deeper than {MAX_DEPTH} files"),
                )
                .help("flatten the chain of bases"),
                &key,
            ));
            continue;
        }
        let via: Vec<PathBuf> = stack
            .iter()
            .map(|s| s.file.clone())
            .chain(std::iter::once(path.clone()))
            .collect();
        match Layer::read_file(&base, FileRole::Base { via }) {
            Ok(base_layer) => {
                stack.push(step);
                expand(base_layer, stack, out, diags);
                stack.pop();
            }
            Err(mut d) => {
                // A missing or malformed base: say which `extends` led there.
                let missing = !base.exists();
                if missing {
                    d = at(
                        Diagnostic::error(
                            "extends",
                            format!(
                                "base file `{}` does not exist ({})",
                                base.display(),
                                chain(stack, &step)
                            ),
                        )
                        .help("paths in `extends` are relative to the file that names them"),
                        &key,
                    );
                } else {
                    d.message = format!("{} (reached by {})", d.message, chain(stack, &step));
                }
                diags.push(d);
            }
        }
    }
    out.push(layer);
}

/// Whether two paths name the same file (compared canonically when both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Every file of `layers` (bases and the experiment), for the run's record.
pub fn files(layers: &[Layer]) -> Vec<PathBuf> {
    layers
        .iter()
        .filter_map(|l| match &l.kind {
            LayerKind::File {
                role: FileRole::Experiment | FileRole::Base { .. },
                path,
                ..
            } => Some(path.clone()),
            _ => None,
        })
        .collect()
}
