//! Resolution: experiment file → layers → merged value → schema → types → derived values.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::capability;
use super::chain;
use super::derived::{Derived, derive};
use super::diagnostic::{Diagnostic, Diagnostics, FileRole, Origin};
use super::edits;
use super::interpolate::{self, Interpolated};
use super::layers::{Layer, LayerKind, Layers};
use super::presets::{self, PRESETS_ENV};
use super::sweep::{self, Cell, Sweep};
use super::types::Experiment;
use super::validate::{into_experiment, schema_errors};

/// Prefix of configuration environment variables; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "RUNNER_";

/// Single-word `RUNNER_…` variables that are config keys. Other single-word ones
/// (`RUNNER_OS`, `RUNNER_TEMP`, `RUNNER_NAME` set by GitHub Actions, `RUNNER_PRESETS`,
/// `RUNNER_LOG`) are not ours and are ignored; `name` and `job` identify the experiment and
/// never come from the environment.
const ENV_TOP_LEVEL_KEYS: &[&str] = &[
    "seed",
    "output_dir",
    "resume",
    "init_from",
    "description",
    "profile",
];

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
    /// `-m KEY=V1,V2,…`: sweep axes beside (or replacing) the file's `sweep.grid`.
    pub multirun: Vec<String>,
    /// One cell of the sweep (`--sweep-cell`: its index or name) instead of the experiment.
    pub cell: Option<String>,
}

impl Request {
    /// How the command line's `--profile` arguments read, for origins.
    fn profile_flag(&self) -> String {
        self.profiles
            .iter()
            .map(|p| format!("--profile {p}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().collect();
        self
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A valid configuration and everything known about it.
pub struct Resolved {
    pub experiment: Experiment,
    pub derived: Derived,
    pub layers: Layers,
    /// Profiles applied, lowest first.
    pub profiles: Vec<String>,
    /// The files of the experiment's chain: its bases (lowest first), then itself.
    pub sources: Vec<PathBuf>,
    /// What `${…}` resolved: the expressions and their inputs, and the secrets that printed
    /// and recorded configurations keep unresolved.
    pub interpolated: Interpolated,
    pub warnings: Vec<Diagnostic>,
    /// Keys whose given value a higher layer's value overruled through the batch
    /// arithmetic; they hold the recomputed value and count as derived.
    pub superseded: Vec<&'static str>,
    /// The sweep cell this configuration is (`Request::cell`).
    pub cell: Option<Cell>,
}

impl Resolved {
    /// Who set the leaf `key` (defaults when no layer did).
    pub fn origin_of(&self, key: &str) -> Origin {
        if self.superseded.contains(&key) {
            return Origin::Derived;
        }
        self.layers.origin_of(key).unwrap_or(Origin::Default)
    }
}

/// How the capability table's engine refusals count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusals {
    /// As errors: what `validate` and `run` need (nothing can run such a configuration).
    Errors,
    /// As warnings: `show` prints what such a configuration resolves to.
    Warnings,
}

/// Resolves `req` (the experiment, or the sweep cell `req.cell` names); a configuration the
/// engine cannot train on any machine is an error.
pub fn resolve(req: &Request) -> Result<Resolved, Diagnostics> {
    let file = Layer::read_file(&req.experiment, FileRole::Experiment)?;
    resolve_selected(req, file, Refusals::Errors)
}

/// [`resolve`] for `runner show`: what the engine cannot train is a warning, so the
/// configuration is still printed.
pub fn resolve_for_show(req: &Request) -> Result<Resolved, Diagnostics> {
    let file = Layer::read_file(&req.experiment, FileRole::Experiment)?;
    resolve_selected(req, file, Refusals::Warnings)
}

/// [`resolve`] with the experiment's text given rather than read from `req.experiment`
/// (whose extension still picks the format): for tests and the fuzzer.
pub fn resolve_text(req: &Request, text: &str) -> Result<Resolved, Diagnostics> {
    let file = Layer::from_file_text(&req.experiment, FileRole::Experiment, text)?;
    resolve_selected(req, file, Refusals::Errors)
}

/// An experiment with a sweep: the experiment itself (the base every cell builds on), its
/// cells, and each cell resolved.
pub struct SweepPlan {
    pub base: Resolved,
    pub sweep: Sweep,
    pub cells: Vec<Result<Resolved, Diagnostics>>,
}

/// What an experiment resolves to: one run, or a sweep of them.
pub enum Swept {
    One(Resolved),
    Sweep(SweepPlan),
}

/// The sweep of `req`'s experiment (its `sweep:` section and `req.multirun`) with every cell
/// resolved, or the experiment alone when it has no sweep. An error in the experiment itself
/// or in the sweep's description is `Err`; a cell's own errors stay with that cell.
pub fn resolve_sweep(req: &Request) -> Result<Swept, Diagnostics> {
    sweep_with(req, Refusals::Errors)
}

/// [`resolve_sweep`] for `runner show`: what the engine cannot train is a warning.
pub fn resolve_sweep_for_show(req: &Request) -> Result<Swept, Diagnostics> {
    sweep_with(req, Refusals::Warnings)
}

fn sweep_with(req: &Request, refusals: Refusals) -> Result<Swept, Diagnostics> {
    let file = Layer::read_file(&req.experiment, FileRole::Experiment)?;
    let base = resolve_layer(req, file.clone(), refusals, None)?;
    let Some(sweep) =
        sweep::expand(&base.experiment, &base.layers, &req.multirun).map_err(Diagnostics)?
    else {
        return Ok(Swept::One(base));
    };
    let cells = sweep
        .cells
        .iter()
        .map(|cell| resolve_cell(req, file.clone(), &base, cell, refusals))
        .collect();
    Ok(Swept::Sweep(SweepPlan { base, sweep, cells }))
}

fn resolve_selected(
    req: &Request,
    file: Layer,
    refusals: Refusals,
) -> Result<Resolved, Diagnostics> {
    let Some(which) = &req.cell else {
        return resolve_layer(req, file, refusals, None);
    };
    let base = resolve_layer(req, file.clone(), refusals, None)?;
    let sweep = match sweep::expand(&base.experiment, &base.layers, &req.multirun) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Diagnostics::from(
                Diagnostic::error(
                    "sweep",
                    format!("`--sweep-cell {which}`: the experiment has no sweep"),
                )
                .origin(Origin::Cli {
                    flag: format!("--sweep-cell {which}"),
                })
                .help("drop --sweep-cell, or add a `sweep:` section (or `-m KEY=V1,V2`)"),
            ));
        }
        Err(problems) => return Err(Diagnostics(problems)),
    };
    let cell = sweep.find(which).map_err(Diagnostics::from)?.clone();
    resolve_cell(req, file, &base, &cell, refusals)
}

/// One cell: the experiment with the cell's layer on top.
fn resolve_cell(
    req: &Request,
    file: Layer,
    base: &Resolved,
    cell: &Cell,
    refusals: Refusals,
) -> Result<Resolved, Diagnostics> {
    let layer = cell.layer(&base.derived.output_dir, base.experiment.resume.is_none());
    let mut resolved = resolve_layer(req, file, refusals, Some(layer))?;
    resolved.cell = Some(cell.clone());
    Ok(resolved)
}

/// The capability table's verdict on `exp` as diagnostics: engine refusals (errors, or
/// warnings for `show`) and what no machine has (warnings).
fn capability_diagnostics(
    exp: &Experiment,
    layers: &Layers,
    refusals: Refusals,
) -> Vec<Diagnostic> {
    let q = capability::Query::of(exp);
    let engine = capability::engine(&q).into_iter().map(|r| {
        let d = match refusals {
            Refusals::Errors => Diagnostic::error(r.code, r.message),
            Refusals::Warnings => Diagnostic::warning(
                r.code,
                format!(
                    "{}; `runner validate` and `runner run` refuse this",
                    r.message
                ),
            ),
        };
        layers.diag_at(r.key, d.help(r.help))
    });
    let nowhere = capability::nowhere(&q).into_iter().map(|r| {
        layers.diag_at(
            r.key,
            Diagnostic::warning(
                r.code,
                format!("{}: `runner run` will refuse this", r.message),
            )
            .help(r.help),
        )
    });
    engine.chain(nowhere).collect()
}

/// The pipeline; `cell` is a sweep cell's layer, put above every other one.
fn resolve_layer(
    req: &Request,
    file: Layer,
    refusals: Refusals,
    cell: Option<Layer>,
) -> Result<Resolved, Diagnostics> {
    let is_cell = cell.is_some();
    let mut diags = Diagnostics::default();
    // The experiment and the bases it extends, lowest first.
    let files = chain::layers(file)?;
    let sources = chain::files(&files);
    let (overrides, problems) = override_layers(req);
    diags.extend(problems);

    let (profile_names, profile_origin) = profile_list(req, &files, &overrides);
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
    layers.extend(files);
    layers.extend(overrides);
    if !req.profiles.is_empty() {
        // Record the command line's profiles in the resolved config, so that feeding
        // `runner show` output back applies the same ones.
        let list = format!(
            "[{}]",
            applied
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let flag = req.profile_flag();
        layers.push(
            Layer::from_override("profile", &list, LayerKind::Cli { flag })
                .map_err(Diagnostics::from)?,
        );
    }
    layers.extend(cell);
    if layers.iter().any(|l| l.edit.is_some()) {
        diags.extend(edits::apply(&mut layers, &super::validate::SCHEMA.json));
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
        // A cell of a sweep is one run.
        if is_cell {
            obj.remove("sweep");
        }
    }
    let interpolated = match interpolate_all(&mut merged, req, &layers) {
        Ok(i) => i,
        Err(problems) => {
            diags.extend(problems);
            sort_by_position(&mut diags);
            return Err(diags);
        }
    };
    let schema_problems = schema_errors(&merged, &layers);
    if !schema_problems.is_empty() {
        diags.extend(cross_checks_despite(&merged, &schema_problems, &layers));
        diags.extend(schema_problems);
    }
    if diags.has_errors() {
        sort_by_position(&mut diags);
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
    diags.extend(capability_diagnostics(&experiment, &layers, refusals));
    sort_by_position(&mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    let mut experiment = experiment;
    let superseded = settle_batch_keys(&mut experiment, &derived);
    let warnings = diags.0;
    Ok(Resolved {
        experiment,
        derived,
        layers,
        profiles: applied,
        sources,
        interpolated,
        warnings,
        superseded,
        cell: None,
    })
}

/// Resolves every `${…}` of the merged value. References to `derived` need the derived
/// values, which are computed first from the configuration with those keys at their
/// defaults (a derived value cannot depend on a key that refers to it).
fn interpolate_all(
    merged: &mut Json,
    req: &Request,
    layers: &Layers,
) -> Result<Interpolated, Vec<Diagnostic>> {
    if !super::render::any_string(merged, &interpolate::needs_resolving) {
        return Ok(Interpolated::default());
    }
    let schema = &super::validate::SCHEMA.json;
    let job = merged.get("job").and_then(Json::as_str).map(str::to_owned);
    let default = |key: &str| {
        edits::default_at(schema, job.as_deref(), key).and_then(|v| serde_json::to_value(v).ok())
    };
    let known = super::suggest::known_keys(schema, job.as_deref());
    let pristine = merged.clone();
    let located = |problems: Vec<(String, Diagnostic)>| -> Vec<Diagnostic> {
        problems
            .into_iter()
            .map(|(k, d)| layers.diag_at(&k, d))
            .collect()
    };
    let mut ctx = interpolate::Context {
        env: &req.env,
        default: &default,
        known: &known,
        derived: None,
    };
    let (first, problems) = interpolate::run(merged, &ctx);
    if !problems.is_empty() {
        return Err(located(problems));
    }
    if first.pending.is_empty() {
        return Ok(first);
    }
    let mut trial = merged.clone();
    for key in &first.pending {
        remove_path(&mut trial, key);
    }
    let derived = (schema_errors(&trial, layers).is_empty())
        .then(|| into_experiment(trial, layers).ok())
        .flatten()
        .map(|exp| serde_json::to_value(derive(&exp, layers).0).expect("derived serializes"));
    let Some(derived) = derived else {
        // The rest of the configuration has problems of its own, which the schema stage
        // reports; the keys waiting for derived values stay as written.
        return Ok(first);
    };
    *merged = pristine;
    ctx.derived = Some(&derived);
    let (done, problems) = interpolate::run(merged, &ctx);
    if problems.is_empty() {
        Ok(done)
    } else {
        Err(located(problems))
    }
}

/// Environment and command-line layers, lowest first.
fn override_layers(req: &Request) -> (Vec<Layer>, Vec<Diagnostic>) {
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    let mut push = |r: Result<Layer, Diagnostic>| match r {
        Ok(l) => layers.push(l),
        Err(d) => problems.push(d),
    };
    let mut env: Vec<&(String, String)> = req
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (var, value) in env {
        let rest = &var[ENV_PREFIX.len()..];
        let key = rest.to_ascii_lowercase().replace("__", ".");
        // `RUNNER_<KEY>__APPEND`, `__REMOVE`, `__RESET`: list edits.
        let edit = edits::ENV_SUFFIXES.iter().find_map(|(suffix, op)| {
            key.strip_suffix(&format!(".{suffix}"))
                .map(|k| (k.to_string(), *op))
        });
        let name = edit.as_ref().map_or(key.as_str(), |(k, _)| k.as_str());
        if !name.contains('.') && !ENV_TOP_LEVEL_KEYS.contains(&name) {
            continue;
        }
        let kind = LayerKind::Env { var: var.clone() };
        match &edit {
            Some((k, op)) => push(edits::layer(k, op, value, kind)),
            None => push(Layer::from_override(&key, value, kind)),
        }
    }
    if let Some(seed) = req.seed {
        push(Layer::from_override(
            "seed",
            &seed.to_string(),
            LayerKind::Cli {
                flag: format!("--seed {seed}"),
            },
        ));
    }
    if let Some(dir) = &req.output_dir {
        let quoted = serde_json::to_string(dir).expect("strings serialize");
        push(Layer::from_override(
            "output_dir",
            &quoted,
            LayerKind::Cli {
                flag: format!("--output-dir {dir}"),
            },
        ));
    }
    for o in &req.overrides {
        let flag = format!("--set {o}");
        match edits::split(o) {
            Some((k, "=", v)) => push(Layer::from_override(k, v, LayerKind::Cli { flag })),
            Some((k, op, v)) => push(edits::layer(k, op, v, LayerKind::Cli { flag })),
            None => push(Err(Diagnostic::error(
                "override",
                format!("`{o}` is not a `key.path=value` override"),
            )
            .origin(Origin::Cli { flag })
            .help(
                "write e.g. `--set train.epochs=1` or `train.epochs=1` after the experiment file \
                 (lists: `key+=item`, `key-=item`; `~key` restores the default)",
            ))),
        }
    }
    (layers, problems)
}

/// Which profiles apply: the command line's, else the highest layer's `profile` key.
/// Each comes with the directory relative paths start from.
fn profile_list(
    req: &Request,
    files: &[Layer],
    overrides: &[Layer],
) -> (Vec<(String, Option<PathBuf>)>, Option<Origin>) {
    if !req.profiles.is_empty() {
        let flag = req.profile_flag();
        return (
            req.profiles.iter().map(|p| (p.clone(), None)).collect(),
            Some(Origin::Cli { flag }),
        );
    }
    let from_layer = |layer: &Layer| -> Option<Vec<String>> {
        let value = layer.dict.get("profile")?;
        match value {
            figment::value::Value::String(_, s) => Some(vec![s.clone()]),
            figment::value::Value::Array(_, items) => Some(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }
    };
    // The highest file of the chain that names profiles; its paths are relative to it.
    let mut current: (Vec<(String, Option<PathBuf>)>, Option<Origin>) = (Vec::new(), None);
    for file in files.iter().rev() {
        if let (Some(list), LayerKind::File { path, spans, role }) = (from_layer(file), &file.kind)
        {
            let base = path.parent().map(Path::to_path_buf);
            let origin = Origin::File {
                role: role.clone(),
                path: path.clone(),
                pos: spans.find("profile"),
            };
            current = (
                list.into_iter().map(|p| (p, base.clone())).collect(),
                Some(origin),
            );
            break;
        }
    }
    // Then the environment and command line, in order: a value replaces the list, an edit
    // (`profile+=…`, `~profile`) changes it (its mistakes are reported with the other edits).
    for layer in overrides {
        let origin = match &layer.kind {
            LayerKind::Env { var } => Origin::Env { var: var.clone() },
            LayerKind::Cli { flag } => Origin::Cli { flag: flag.clone() },
            LayerKind::File { .. } | LayerKind::Sweep { .. } => {
                unreachable!("overrides are env or cli layers")
            }
        };
        if let Some(list) = from_layer(layer) {
            current = (list.into_iter().map(|p| (p, None)).collect(), Some(origin));
        } else if let Some(edit) = layer.edit.as_ref().filter(|e| e.key == "profile") {
            // The same edit `edits::apply` makes of the key (its default is the empty list).
            let names: Vec<figment::value::Value> = current
                .0
                .iter()
                .map(|(p, _)| figment::value::Value::from(p.clone()))
                .collect();
            if let Some(edited) = edit.op.edit(names) {
                let base: std::collections::HashMap<String, Option<PathBuf>> =
                    current.0.drain(..).collect();
                current.0 = edited
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|p| (p.to_string(), base.get(p).cloned().flatten()))
                    .collect();
            }
            current.1 = Some(origin);
        }
    }
    current
}

fn load_profile(
    arg: &str,
    base_dir: Option<&Path>,
    presets_env: Option<&str>,
) -> Result<Layer, Diagnostic> {
    let role = FileRole::Profile(arg.to_string());
    let mut layer = if presets::is_path(arg) {
        let path = match base_dir {
            Some(dir) if Path::new(arg).is_relative() => dir.join(arg),
            _ => PathBuf::from(arg),
        };
        Layer::read_file(&path, role)?
    } else {
        let Some(preset) = presets::find(arg, presets_env) else {
            let available: Vec<String> = presets::all(presets_env)
                .into_iter()
                .map(|p| p.name)
                .collect();
            let closest = crate::config::suggest::closest_value(arg, &available);
            let mut help = format!("available profiles: {}", available.join(", "));
            if let Some(c) = closest {
                help = format!("did you mean `{c}`? {help}");
            }
            return Err(
                Diagnostic::error("unknown-profile", format!("unknown profile `{arg}`")).help(
                    format!(
                        "{help} (see `runner profiles`; a path to a .toml/.yaml file also works)"
                    ),
                ),
            );
        };
        let text = preset.read().map_err(|e| {
            Diagnostic::error(
                "file",
                format!(
                    "cannot read profile `{arg}` ({}): {e}",
                    preset.display_path().display()
                ),
            )
        })?;
        Layer::from_file_text(&preset.display_path(), role, &text)?
    };
    // A profile's `description` describes the profile, not the experiment.
    layer.dict.remove("description");
    if layer.dict.contains_key("profile")
        && let LayerKind::File { path, spans, role } = &layer.kind
    {
        return Err(Diagnostic::error("profile", "profiles cannot include other profiles")
                .origin(Origin::File { role: role.clone(), path: path.clone(), pos: spans.find("profile") })
                .help("remove `profile` from the profile and list every profile with --profile, lowest first"));
    }
    Ok(layer)
}

/// The merged value of a resolved config as JSON (for `show` and the run directory).
pub fn resolved_json(resolved: &Resolved) -> Json {
    serde_json::to_value(&resolved.experiment).expect("config serializes")
}

/// Orders diagnostics as a reader meets them: by layer file, then line (stable otherwise).
fn sort_by_position(diags: &mut Diagnostics) {
    let key = |d: &Diagnostic| match &d.origin {
        Some(Origin::File { path, pos, .. }) => {
            (0, path.display().to_string(), pos.unwrap_or((0, 0)))
        }
        Some(Origin::Env { var }) => (1, var.clone(), (0, 0)),
        Some(Origin::Cli { flag }) => (2, flag.clone(), (0, 0)),
        _ => (3, String::new(), (0, 0)),
    };
    diags.0.sort_by_cached_key(key);
}

/// The cross-key checks, run on a copy of a value the schema rejected, so that one report
/// lists every problem. Unknown keys are dropped, invalid values fall back to their
/// defaults and missing strings get placeholders; checks about a section with such a
/// stand-in are left out, since they would judge values the user did not write.
fn cross_checks_despite(
    merged: &Json,
    problems: &[Diagnostic],
    layers: &Layers,
) -> Vec<Diagnostic> {
    let mut value = merged.clone();
    let mut altered_sections: Vec<String> = Vec::new();
    for d in problems {
        let Some(key) = &d.key else { continue };
        let section = key.split('.').next().unwrap_or_default().to_string();
        match d.code {
            "unknown-key" => remove_path(&mut value, key),
            "missing-key" => {
                if key == "job" {
                    return Vec::new();
                }
                set_path(&mut value, key, Json::String("x".into()));
                altered_sections.push(section);
            }
            _ => {
                remove_path(&mut value, key);
                altered_sections.push(section);
            }
        }
    }
    // An invalid required value (a malformed `name`) is now missing: give it a placeholder.
    for d in schema_errors(&value, layers) {
        match (d.code, &d.key) {
            ("missing-key", Some(key)) if key != "job" => {
                set_path(&mut value, key, Json::String("x".into()))
            }
            _ => return Vec::new(),
        }
    }
    let Ok(experiment) = into_experiment(value, layers) else {
        return Vec::new();
    };
    let (_, mut found) = derive(&experiment, layers);
    found.extend(capability_diagnostics(
        &experiment,
        layers,
        Refusals::Errors,
    ));
    found
        .into_iter()
        .filter(|d| {
            let section = d
                .key
                .as_deref()
                .unwrap_or_default()
                .split('.')
                .next()
                .unwrap_or_default();
            !altered_sections.iter().any(|s| s == section)
        })
        .collect()
}

fn remove_path(value: &mut Json, key: &str) {
    let mut segments: Vec<&str> = key.split('.').collect();
    // Inside a list, drop the whole list.
    let mut cur = &*value;
    for (i, seg) in segments.iter().enumerate() {
        match cur.get(*seg) {
            Some(Json::Array(_)) => {
                segments.truncate(i + 1);
                break;
            }
            Some(next) => cur = next,
            None => break,
        }
    }
    let (last, parents) = segments.split_last().expect("split yields one segment");
    let mut cur = value;
    for seg in parents {
        match cur.get_mut(*seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.remove(*last);
    }
}

fn set_path(value: &mut Json, key: &str, leaf: Json) {
    let segments: Vec<&str> = key.split('.').collect();
    let (last, parents) = segments.split_last().expect("split yields one segment");
    let mut cur = value;
    for seg in parents {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj
            .entry(seg.to_string())
            .or_insert_with(|| Json::Object(Default::default()));
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.insert(last.to_string(), leaf);
    }
}

/// Writes the effective accumulation / global batch back where a given value was overruled
/// (a profile's `grad_accum_steps` under the experiment's `global_batch_size`), so that the
/// printed config states what runs and resolves to the same thing when fed back.
fn settle_batch_keys(exp: &mut Experiment, derived: &Derived) -> Vec<&'static str> {
    let mut superseded = Vec::new();
    let train = &mut exp.train;
    if train
        .grad_accum_steps
        .is_some_and(|a| a != derived.grad_accum_steps)
    {
        train.grad_accum_steps = Some(derived.grad_accum_steps);
        superseded.push("train.grad_accum_steps");
    }
    if train
        .global_batch_size
        .is_some_and(|g| g != derived.global_batch_size)
    {
        train.global_batch_size = Some(derived.global_batch_size);
        superseded.push("train.global_batch_size");
    }
    superseded
}
