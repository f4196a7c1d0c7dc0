//! Resolution: experiment file → layers → merged value → schema → types → derived values.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::derived::{Derived, derive};
use super::diagnostic::{Diagnostic, Diagnostics, FileRole, Origin};
use super::layers::{Layer, LayerKind, Layers};
use super::presets::{self, PRESETS_ENV};
use super::types::Experiment;
use super::validate::{into_experiment, schema_errors};

/// Prefix of configuration environment variables; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "RUNNER_";

/// Single-word `RUNNER_…` variables that are config keys. Other single-word ones
/// (`RUNNER_OS`, `RUNNER_TEMP`, `RUNNER_NAME` set by GitHub Actions, `RUNNER_PRESETS`,
/// `RUNNER_LOG`) are not ours and are ignored; `name` and `job` identify the experiment and
/// never come from the environment.
const ENV_TOP_LEVEL_KEYS: &[&str] = &["seed", "output_dir", "resume", "init_from", "description", "profile"];

/// What to resolve: the experiment file and everything layered on it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub experiment: PathBuf,
    /// `--profile` arguments (names or paths), in order.
    pub profiles: Vec<String>,
    /// `key.path=value` overrides, from `--set` and bare arguments, in order.
    pub overrides: Vec<String>,
    pub seed: Option<u64>,
    pub output_dir: Option<String>,
    /// The environment (passed in so that tests and the fuzzer control it).
    pub env: Vec<(String, String)>,
}

impl Request {
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().collect();
        self
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A valid configuration and everything known about it.
pub struct Resolved {
    pub experiment: Experiment,
    pub derived: Derived,
    pub layers: Layers,
    /// Profiles applied, lowest first.
    pub profiles: Vec<String>,
    pub warnings: Vec<Diagnostic>,
}

impl Resolved {
    /// Who set the leaf `key` (defaults when no layer did).
    pub fn origin_of(&self, key: &str) -> Origin {
        self.layers.origin_of(key).unwrap_or(Origin::Default)
    }
}

pub fn resolve(req: &Request) -> Result<Resolved, Diagnostics> {
    let mut diags = Diagnostics::default();

    let file = Layer::read_file(&req.experiment, FileRole::Experiment)?;
    let (overrides, problems) = override_layers(req);
    diags.extend(problems);

    let (profile_names, profile_origin) = profile_list(req, &file, &overrides);
    let mut layers = Vec::new();
    for (name, base_dir) in &profile_names {
        match load_profile(name, base_dir.as_deref(), req.env_var(PRESETS_ENV)) {
            Ok(layer) => layers.push(layer),
            Err(d) => diags.push(match (&d.origin, &profile_origin) {
                (Some(_), _) => d,
                (None, Some(o)) => d.origin(o.clone()),
                (None, None) => d,
            }),
        }
    }
    let applied: Vec<String> = profile_names.iter().map(|(n, _)| n.clone()).collect();
    layers.push(file);
    layers.extend(overrides);
    if !req.profiles.is_empty() {
        // Record the command line's profiles in the resolved config, so that feeding
        // `runner show` output back applies the same ones.
        let list = format!("[{}]", applied.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "));
        let flag = req.profiles.iter().map(|p| format!("--profile {p}")).collect::<Vec<_>>().join(" ");
        layers.push(Layer::from_override("profile", &list, LayerKind::Cli { flag }).map_err(Diagnostics::from)?);
    }
    let layers = Layers::new(layers);

    let merged = match layers.merged_json() {
        Ok(v) => v,
        Err(problems) => {
            diags.extend(problems);
            return Err(diags);
        }
    };
    let mut merged = merged;
    if let Some(obj) = merged.as_object_mut() {
        // `derived:` from a fed-back `runner show` is output, not input.
        obj.remove("derived");
    }
    diags.extend(schema_errors(&merged, &layers));
    if diags.has_errors() {
        return Err(diags);
    }
    let experiment = match into_experiment(merged, &layers) {
        Ok(e) => e,
        Err(d) => {
            diags.push(d);
            return Err(diags);
        }
    };
    let (derived, problems) = derive(&experiment, &layers);
    diags.extend(problems);
    if diags.has_errors() {
        return Err(diags);
    }
    let warnings = diags.0;
    Ok(Resolved { experiment, derived, layers, profiles: applied, warnings })
}

/// Environment and command-line layers, lowest first.
fn override_layers(req: &Request) -> (Vec<Layer>, Vec<Diagnostic>) {
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    let mut push = |r: Result<Layer, Diagnostic>| match r {
        Ok(l) => layers.push(l),
        Err(d) => problems.push(d),
    };
    let mut env: Vec<&(String, String)> = req.env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (var, value) in env {
        let rest = &var[ENV_PREFIX.len()..];
        let key = rest.to_ascii_lowercase().replace("__", ".");
        if !key.contains('.') && !ENV_TOP_LEVEL_KEYS.contains(&key.as_str()) {
            continue;
        }
        push(Layer::from_override(&key, value, LayerKind::Env { var: var.clone() }));
    }
    if let Some(seed) = req.seed {
        push(Layer::from_override("seed", &seed.to_string(), LayerKind::Cli { flag: format!("--seed {seed}") }));
    }
    if let Some(dir) = &req.output_dir {
        let quoted = serde_json::to_string(dir).expect("strings serialize");
        push(Layer::from_override("output_dir", &quoted, LayerKind::Cli { flag: format!("--output-dir {dir}") }));
    }
    for o in &req.overrides {
        let flag = format!("--set {o}");
        match o.split_once('=') {
            Some((k, v)) => push(Layer::from_override(k.trim(), v, LayerKind::Cli { flag })),
            None => push(Err(Diagnostic::error("override", format!("`{o}` is not a `key.path=value` override"))
                .origin(Origin::Cli { flag })
                .help("write e.g. `--set train.epochs=1` or `train.epochs=1` after the experiment file"))),
        }
    }
    (layers, problems)
}

/// Which profiles apply: the command line's, else the highest layer's `profile` key.
/// Each comes with the directory relative paths start from.
fn profile_list(req: &Request, file: &Layer, overrides: &[Layer]) -> (Vec<(String, Option<PathBuf>)>, Option<Origin>) {
    if !req.profiles.is_empty() {
        let flag = req.profiles.iter().map(|p| format!("--profile {p}")).collect::<Vec<_>>().join(" ");
        return (req.profiles.iter().map(|p| (p.clone(), None)).collect(), Some(Origin::Cli { flag }));
    }
    let from_layer = |layer: &Layer| -> Option<Vec<String>> {
        let value = layer.dict.get("profile")?;
        match value {
            figment::value::Value::String(_, s) => Some(vec![s.clone()]),
            figment::value::Value::Array(_, items) => {
                Some(items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect())
            }
            _ => None,
        }
    };
    for layer in overrides.iter().rev() {
        if let Some(list) = from_layer(layer) {
            let origin = match &layer.kind {
                LayerKind::Env { var } => Origin::Env { var: var.clone() },
                LayerKind::Cli { flag } => Origin::Cli { flag: flag.clone() },
                LayerKind::File { .. } => unreachable!("overrides are env or cli layers"),
            };
            return (list.into_iter().map(|p| (p, None)).collect(), Some(origin));
        }
    }
    if let (Some(list), LayerKind::File { path, spans, role }) = (from_layer(file), &file.kind) {
        let base = path.parent().map(Path::to_path_buf);
        let origin = Origin::File { role: role.clone(), path: path.clone(), pos: spans.find("profile") };
        return (list.into_iter().map(|p| (p, base.clone())).collect(), Some(origin));
    }
    (Vec::new(), None)
}

fn load_profile(arg: &str, base_dir: Option<&Path>, presets_env: Option<&str>) -> Result<Layer, Diagnostic> {
    let role = FileRole::Profile(arg.to_string());
    let mut layer = if presets::is_path(arg) {
        let path = match base_dir {
            Some(dir) if Path::new(arg).is_relative() => dir.join(arg),
            _ => PathBuf::from(arg),
        };
        Layer::read_file(&path, role)?
    } else {
        let Some(preset) = presets::find(arg, presets_env) else {
            let available: Vec<String> = presets::all(presets_env).into_iter().map(|p| p.name).collect();
            let closest = crate::config::suggest::closest_value(arg, &available);
            let mut help = format!("available profiles: {}", available.join(", "));
            if let Some(c) = closest {
                help = format!("did you mean `{c}`? {help}");
            }
            return Err(Diagnostic::error("unknown-profile", format!("unknown profile `{arg}`")).help(
                format!("{help} (see `runner profiles`; a path to a .toml/.yaml file also works)"),
            ));
        };
        let text = preset.read().map_err(|e| {
            Diagnostic::error("file", format!("cannot read profile `{arg}` ({}): {e}", preset.display_path().display()))
        })?;
        Layer::from_file_text(&preset.display_path(), role, &text)?
    };
    // A profile's `description` describes the profile, not the experiment.
    layer.dict.remove("description");
    if layer.dict.contains_key("profile") {
        if let LayerKind::File { path, spans, role } = &layer.kind {
            return Err(Diagnostic::error("profile", "profiles cannot include other profiles")
                .origin(Origin::File { role: role.clone(), path: path.clone(), pos: spans.find("profile") })
                .help("remove `profile` from the profile and list every profile with --profile, lowest first"));
        }
    }
    Ok(layer)
}

/// The merged value of a resolved config as JSON (for `show` and the run directory).
pub fn resolved_json(resolved: &Resolved) -> Json {
    serde_json::to_value(&resolved.experiment).expect("config serializes")
}
