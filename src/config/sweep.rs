//! Sweeps: the cells of an experiment's `sweep:` section and of `-m key=a,b` on the command
//! line.
//!
//! A sweep is a product of *dimensions*: each `grid` key (or `-m` key) is one, each `zip`
//! group is one whose keys advance together, and the seeds are the innermost. A cell is one
//! point of that product; it is resolved as the experiment with one more layer on top, the
//! cell's values (plus its run directory under the sweep's `output_dir` and `resume: auto`,
//! so that running a sweep again continues what it left). Everything here is configuration:
//! running the cells is `crate::sweep`'s.

use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::diagnostic::{Diagnostic, Origin};
use super::layers::{Layer, LayerKind, Layers};
use super::types::Experiment;

/// More cells than this is a mistake in the file (a grid that multiplies out of hand).
pub const MAX_CELLS: usize = 10_000;

/// Cell names longer than this are cut and finished with a hash of the whole name.
const MAX_NAME: usize = 100;

/// Keys that cannot be swept, and why.
const NOT_SWEPT: &[(&str, &str)] = &[
    ("name", "it names the experiment and its sweep directory"),
    (
        "job",
        "a sweep varies one experiment; write one file per job",
    ),
    (
        "output_dir",
        "every cell's run directory is made from it (`output_dir/<cell>`)",
    ),
    (
        "resume",
        "a sweep resumes its interrupted cells itself (`resume: auto`)",
    ),
    (
        "profile",
        "profiles are layers below the file; run one sweep per `--profile`",
    ),
    ("extends", "bases are read before any value is set"),
    ("sweep", "a sweep cannot sweep itself"),
    ("derived", "derived values are computed, never set"),
];

/// One run of a sweep: its place in the product, its name (its run directory's) and the
/// values it sets, in the sweep's key order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub index: usize,
    pub name: String,
    pub values: Vec<(String, Json)>,
}

/// A sweep's cells.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub cells: Vec<Cell>,
    /// Every swept key, outermost first (`seed` last when seeds are swept).
    pub keys: Vec<String>,
    /// Cells to run at once (`max_parallel`, default 1).
    pub max_parallel: u32,
}

impl Sweep {
    /// The cell `which` names: its index or its name.
    pub fn find(&self, which: &str) -> Result<&Cell, Diagnostic> {
        let found = match which.parse::<usize>() {
            Ok(i) => self.cells.get(i),
            Err(_) => self.cells.iter().find(|c| c.name == which),
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = self.cells.iter().map(|c| c.name.as_str()).collect();
            let close = super::suggest::closest_value(
                which,
                &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
            Diagnostic::error(
                "sweep",
                format!(
                    "the sweep has no cell `{which}` (it has {} cells)",
                    self.cells.len()
                ),
            )
            .origin(Origin::Cli {
                flag: format!("--sweep-cell {which}"),
            })
            .help(format!(
                "{close}give an index from 0 to {} or a name `runner sweep --dry-run` lists",
                self.cells.len().saturating_sub(1)
            ))
        })
    }
}

/// One dimension of the product.
enum Dim {
    One {
        key: String,
        values: Vec<Json>,
    },
    Zip {
        keys: Vec<String>,
        rows: Vec<Vec<Json>>,
    },
}

impl Dim {
    fn keys(&self) -> Vec<&str> {
        match self {
            Dim::One { key, .. } => vec![key],
            Dim::Zip { keys, .. } => keys.iter().map(String::as_str).collect(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Dim::One { values, .. } => values.len(),
            Dim::Zip { rows, .. } => rows.len(),
        }
    }
    /// The keys and values of point `i`.
    fn point(&self, i: usize) -> Vec<(String, Json)> {
        match self {
            Dim::One { key, values } => vec![(key.clone(), values[i].clone())],
            Dim::Zip { keys, rows } => keys.iter().cloned().zip(rows[i].clone()).collect(),
        }
    }
}

/// The cells of `exp`'s sweep and of the command line's `-m KEY=V1,V2` (`multirun`), or
/// `None` when there is neither. `layers` locates the sweep's keys in the files and tells
/// whether a swept key is also set on the command line or in the environment (an error:
/// one of them would be ignored).
pub fn expand(
    exp: &Experiment,
    layers: &Layers,
    multirun: &[String],
) -> Result<Option<Sweep>, Vec<Diagnostic>> {
    if exp.sweep.is_none() && multirun.is_empty() {
        return Ok(None);
    }
    let spec = exp.sweep.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let known = super::suggest::known_keys(&super::validate::SCHEMA.json, Some(exp.job.as_str()));
    // `None`: the key may be swept; else why not (to be located by the caller).
    let refuse_key = |key: &str| -> Option<Diagnostic> {
        if let Some((_, why)) = NOT_SWEPT.iter().find(|(k, _)| *k == key) {
            return Some(
                Diagnostic::error("sweep", format!("`{key}` cannot be swept: {why}"))
                    .help("remove it from the sweep"),
            );
        }
        let known_key = known
            .iter()
            .any(|k| k == key || (key.starts_with(k.as_str()) && key[k.len()..].starts_with('.')));
        if !known_key {
            let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            let help =
                super::suggest::unknown_key_help(parent, leaf, &known).unwrap_or_else(|| {
                    "sweep keys are dotted config keys, as `--set` writes them (`optimizer.lr`)"
                        .into()
                });
            return Some(
                Diagnostic::error(
                    "unknown-key",
                    format!("the sweep varies `{key}`, which is not a configuration key"),
                )
                .help(help),
            );
        }
        match layers.origin_of(key) {
            Some(o @ (Origin::Cli { .. } | Origin::Env { .. })) => Some(
                Diagnostic::error(
                    "sweep",
                    format!(
                        "`{key}` is swept and also set by the {o}; one of them would be ignored"
                    ),
                )
                .help(format!(
                    "drop that override, or replace the sweep's values with `-m {key}=V1,V2,…`"
                )),
            ),
            _ => None,
        }
    };
    let check_key = |problems: &mut Vec<Diagnostic>,
                     key: &str,
                     at: &dyn Fn(Diagnostic) -> Diagnostic|
     -> bool {
        match refuse_key(key) {
            Some(d) => {
                problems.push(at(d));
                false
            }
            None => true,
        }
    };

    // The command line's axes, each replacing the file's grid axis of the same key.
    let mut cli: Vec<(String, Vec<Json>, String)> = Vec::new();
    for m in multirun {
        let flag = format!("-m {m}");
        match parse_multirun(m) {
            Ok((key, values)) => {
                let at = |d: Diagnostic| {
                    d.key(key.clone())
                        .origin(Origin::Cli { flag: flag.clone() })
                };
                if check_key(&mut problems, &key, &at) {
                    if cli.iter().any(|(k, ..)| *k == key) {
                        problems.push(at(Diagnostic::error(
                            "sweep",
                            format!("`-m {key}=…` is given twice"),
                        )
                        .help("give each key's values once: `-m key=a,b,c`")));
                    }
                    cli.push((key, values, flag.clone()));
                }
            }
            Err(d) => problems.push(d.origin(Origin::Cli { flag })),
        }
    }
    let file_at = |path: String| move |d: Diagnostic| layers.diag_at(&path, d);

    let mut dims: Vec<Dim> = Vec::new();
    for (key, axis) in &spec.grid {
        let path = format!("sweep.grid.{key}");
        if let Some((_, values, _)) = cli.iter().find(|(k, ..)| k == key) {
            dims.push(Dim::One {
                key: key.clone(),
                values: values.clone(),
            });
            continue;
        }
        if !check_key(&mut problems, key, &file_at(path.clone())) {
            continue;
        }
        match axis.values() {
            Ok(values) => dims.push(Dim::One {
                key: key.clone(),
                values,
            }),
            Err(why) => {
                problems.push(layers.diag_at(
                    &path,
                    Diagnostic::error("sweep", format!("the values of `{key}`: {why}")).help(
                        "write a list (`[1e-4, 3e-4]`) or `{logspace: [first, last, count]}`",
                    ),
                ))
            }
        }
    }
    for (key, values, _) in &cli {
        if !spec.grid.contains_key(key) {
            dims.push(Dim::One {
                key: key.clone(),
                values: values.clone(),
            });
        }
    }
    for (g, group) in spec.zip.iter().enumerate() {
        let path = format!("sweep.zip.{g}");
        let mut keys = Vec::new();
        let mut columns: Vec<Vec<Json>> = Vec::new();
        for (key, axis) in group {
            let at = file_at(format!("{path}.{key}"));
            if let Some((_, _, flag)) = cli.iter().find(|(k, ..)| k == key) {
                problems.push(at(Diagnostic::error(
                    "sweep",
                    format!("`{key}` advances with the other keys of zip group {g}; `{flag}` cannot replace it alone"),
                )
                .help("edit the zip group in the file, or move the key to `grid`")));
                continue;
            }
            if !check_key(&mut problems, key, &at) {
                continue;
            }
            match axis.values() {
                Ok(v) => {
                    keys.push(key.clone());
                    columns.push(v);
                }
                Err(why) => problems.push(at(Diagnostic::error(
                    "sweep",
                    format!("the values of `{key}`: {why}"),
                ))),
            }
        }
        let lengths: Vec<String> = keys
            .iter()
            .zip(&columns)
            .map(|(k, c)| format!("`{k}` {}", c.len()))
            .collect();
        if columns.windows(2).any(|w| w[0].len() != w[1].len()) {
            problems.push(layers.diag_at(
                &path,
                Diagnostic::error(
                    "sweep",
                    format!(
                        "the lists of zip group {g} have different lengths ({}); a zip group advances its keys together",
                        lengths.join(", ")
                    ),
                )
                .help("give every key of the group as many values, or move a key to `grid` to combine it with all of them"),
            ));
            continue;
        }
        if let Some(n) = columns.first().map(Vec::len) {
            let rows = (0..n)
                .map(|i| columns.iter().map(|c| c[i].clone()).collect())
                .collect();
            dims.push(Dim::Zip { keys, rows });
        }
    }
    // Seeds: `-m seed=…`, or the file's `seeds`/`repeat`.
    let seeds_set = spec.seeds.is_some() || spec.repeat.is_some();
    if spec.seeds.is_some() && spec.repeat.is_some() {
        problems.push(
            layers.diag_at(
                "sweep.repeat",
                Diagnostic::error("sweep", "`seeds` and `repeat` both say which seeds to run")
                    .help(
                        "keep one: `seeds: [1, 2, 3]` or `repeat: 3` (seeds `seed`, `seed + 1`, …)",
                    ),
            ),
        );
    } else if seeds_set && !dims.iter().any(|d| d.keys().contains(&"seed")) {
        let values: Vec<u64> = match (&spec.seeds, spec.repeat) {
            (Some(s), _) => s.clone(),
            (None, Some(n)) => (0..u64::from(n))
                .map(|i| exp.seed.wrapping_add(i))
                .collect(),
            (None, None) => unreachable!("seeds_set"),
        };
        let at = file_at(
            if spec.seeds.is_some() {
                "sweep.seeds"
            } else {
                "sweep.repeat"
            }
            .into(),
        );
        if check_key(&mut problems, "seed", &at) {
            dims.push(Dim::One {
                key: "seed".into(),
                values: values.into_iter().map(Json::from).collect(),
            });
        }
    } else if seeds_set {
        let flag = cli
            .iter()
            .find(|(k, ..)| k == "seed")
            .map(|(.., f)| f.clone());
        match flag {
            // `-m seed=…` replaces the file's seeds, as it replaces a grid axis.
            Some(_) => {}
            None => problems.push(
                layers.diag_at(
                    "sweep.grid.seed",
                    Diagnostic::error(
                        "sweep",
                        "`seed` is on two axes: `grid` and `seeds`/`repeat`",
                    )
                    .help("list the seeds once"),
                ),
            ),
        }
    }
    // A key on two axes.
    let mut seen: Vec<&str> = Vec::new();
    for key in dims.iter().flat_map(Dim::keys) {
        if seen.contains(&key) {
            problems.push(layers.diag_at(
                "sweep",
                Diagnostic::error("sweep", format!("`{key}` is on two axes of the sweep"))
                    .key(key.to_string())
                    .help("a key takes its values from one place: keep it in `grid` or in one zip group"),
            ));
        }
        seen.push(key);
    }
    if dims.is_empty() && problems.is_empty() {
        problems.push(layers.diag_at(
            "sweep",
            Diagnostic::error("sweep", "the sweep varies nothing: it has no keys and no seeds")
                .help("add `grid:` (key: [values]), `zip:` groups, `seeds:` or `repeat:`, or give `-m KEY=V1,V2`; or remove `sweep:`"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let count = dims.iter().try_fold(1usize, |n, d| n.checked_mul(d.len()));
    match count {
        Some(n) if n <= MAX_CELLS => {}
        _ => {
            return Err(vec![
                layers.diag_at(
                    "sweep",
                    Diagnostic::error(
                        "sweep",
                        format!("the sweep has more than {MAX_CELLS} cells"),
                    )
                    .help("split it into several sweeps, or use fewer values"),
                ),
            ]);
        }
    }
    let keys: Vec<String> = dims.iter().flat_map(Dim::keys).map(str::to_owned).collect();
    let labels = labels(&keys);
    let mut cells: Vec<Cell> = Vec::new();
    product(&dims, &mut Vec::new(), &mut |values| {
        let name = cell_name(&labels, values);
        cells.push(Cell {
            index: cells.len(),
            name,
            values: values.to_vec(),
        });
    });
    // Two cells whose values print alike would share a directory.
    let mut names: Vec<(&str, usize)> = cells.iter().map(|c| (c.name.as_str(), c.index)).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(vec![layers.diag_at(
            "sweep",
            Diagnostic::error(
                "sweep",
                format!("cells {} and {} would share the name `{}`", w[0].1, w[1].1, w[0].0),
            )
            .help("their values differ only where a name cannot show it; make them differ in a readable way"),
        )]);
    }
    Ok(Some(Sweep {
        cells,
        keys,
        max_parallel: spec.max_parallel.unwrap_or(1).max(1),
    }))
}

/// A cell's values, in the sweep's key order.
type Values = [(String, Json)];

/// Why a `sweep:` value does not have the section's shape, key by key (the schema's verdict
/// on an optional section is only "matches none of its forms").
pub fn shape_problems(v: &Json) -> Vec<(String, Diagnostic)> {
    const KEYS: &[&str] = &["grid", "zip", "seeds", "repeat", "max_parallel"];
    let mut out = Vec::new();
    let found = |v: &Json| match v {
        Json::String(s) => format!("the string {s:?}"),
        other => other.to_string(),
    };
    let axis_help = "write a list of values (`[1.0e-4, 3.0e-4]`), or `{logspace: [first, last, count]}` / `{linspace: [first, last, count]}`";
    let axis = |key: String, v: &Json, out: &mut Vec<(String, Diagnostic)>| {
        let ok = match v {
            Json::Array(items) => !items.is_empty(),
            Json::Object(m) if m.len() == 1 => {
                let (name, args) = m.iter().next().expect("one entry");
                ["logspace", "linspace"].contains(&name.as_str())
                    && args.as_array().is_some_and(|a| {
                        a.len() == 3
                            && a[0].is_number()
                            && a[1].is_number()
                            && a[2].as_u64().is_some_and(|n| n >= 1)
                    })
            }
            _ => false,
        };
        if !ok {
            out.push((
                key.clone(),
                Diagnostic::error(
                    "type",
                    format!(
                        "`{key}` must be a non-empty list of values or a generator, found {}",
                        found(v)
                    ),
                )
                .help(axis_help),
            ));
        }
    };
    let Some(map) = v.as_object() else {
        out.push((
            "sweep".into(),
            Diagnostic::error("type", format!("`sweep` must be a mapping, found {}", found(v)))
                .help("write `sweep:` with `grid:` (key: [values]), `zip:`, `seeds:` or `repeat:` below it"),
        ));
        return out;
    };
    for (k, item) in map {
        let key = format!("sweep.{k}");
        match k.as_str() {
            "grid" => match item.as_object() {
                Some(g) => g
                    .iter()
                    .for_each(|(gk, gv)| axis(format!("{key}.{gk}"), gv, &mut out)),
                None => out.push((
                    key.clone(),
                    Diagnostic::error(
                        "type",
                        format!(
                            "`{key}` must be a mapping of keys to their values, found {}",
                            found(item)
                        ),
                    )
                    .help("write `grid:` with `optimizer.lr: [1.0e-4, 3.0e-4]` below it"),
                )),
            },
            "zip" => match item.as_array() {
                Some(groups) => {
                    for (i, g) in groups.iter().enumerate() {
                        match g.as_object() {
                            Some(g) => g.iter().for_each(|(gk, gv)| axis(format!("{key}.{i}.{gk}"), gv, &mut out)),
                            None => out.push((format!("{key}.{i}"), Diagnostic::error("type", format!("each zip group must be a mapping of keys to lists, found {}", found(g))).help("write `- model.arch: [a, b]` with the group's other keys below it"))),
                        }
                    }
                }
                None => out.push((
                    key.clone(),
                    Diagnostic::error(
                        "type",
                        format!("`{key}` must be a list of groups, found {}", found(item)),
                    )
                    .help("write `zip:` with `- key: [values]` groups below it"),
                )),
            },
            "seeds" => {
                if !item
                    .as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(|s| s.as_u64().is_some()))
                {
                    out.push((key.clone(), Diagnostic::error("type", format!("`{key}` must be a non-empty list of non-negative integers, found {}", found(item))).help("write `seeds: [1, 2, 3]`")));
                }
            }
            "repeat" | "max_parallel" => {
                if item.as_u64().is_none_or(|n| n < 1) {
                    out.push((
                        key.clone(),
                        Diagnostic::error(
                            "value",
                            format!(
                                "`{key}` must be a whole number of at least 1, found {}",
                                found(item)
                            ),
                        )
                        .help(format!("write `{k}: 2`")),
                    ));
                }
            }
            _ => {
                let known: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
                let close = super::suggest::closest_value(k, &known)
                    .map(|c| format!("did you mean `sweep.{c}`? "))
                    .unwrap_or_default();
                out.push((
                    key.clone(),
                    Diagnostic::error("unknown-key", format!("unknown key `{key}`"))
                        .help(format!("{close}`sweep` takes: {}", KEYS.join(", "))),
                ));
            }
        }
    }
    out
}

fn product(dims: &[Dim], prefix: &mut Vec<(String, Json)>, out: &mut dyn FnMut(&Values)) {
    let Some((first, rest)) = dims.split_first() else {
        out(prefix);
        return;
    };
    for i in 0..first.len() {
        let point = first.point(i);
        let n = point.len();
        prefix.extend(point);
        product(rest, prefix, out);
        prefix.truncate(prefix.len() - n);
    }
}

/// `key=v1,v2,…` from `-m`: the values are YAML scalars or flow collections, separated by
/// commas outside brackets and quotes.
fn parse_multirun(arg: &str) -> Result<(String, Vec<Json>), Diagnostic> {
    let bad = |why: String| {
        Diagnostic::error("override", why)
            .help("write `-m optimizer.lr=1e-4,3e-4` (a key, `=`, values separated by commas)")
    };
    let Some((key, list)) = arg.split_once('=') else {
        return Err(bad(format!("`{arg}` is not `KEY=V1,V2,…`")));
    };
    let key = key.trim();
    if key.is_empty()
        || !key.split('.').all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    {
        return Err(bad(format!("`{key}` is not a key path")));
    }
    let mut values = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    let mut items = Vec::new();
    for (i, c) in list.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad(format!("`{arg}` has an empty value")));
        }
        let v: Json = serde_yaml::from_str(item)
            .map_err(|e| bad(format!("cannot read the value `{item}` of `{key}`: {e}")))?;
        values.push(v);
    }
    Ok((key.to_string(), values))
}

/// How each key shows in cell names: the usual short names, else the last segment, else
/// (when two keys would look alike) the whole key.
pub fn labels(keys: &[String]) -> Vec<String> {
    let short = |k: &str| -> String {
        match k {
            "optimizer.lr" => "lr".into(),
            "optimizer.base_lr" => "blr".into(),
            "optimizer.weight_decay" => "wd".into(),
            "optimizer.min_lr" => "min_lr".into(),
            "train.per_device_batch_size" => "bs".into(),
            "train.global_batch_size" => "gbs".into(),
            "train.grad_accum_steps" => "accum".into(),
            "train.max_steps" => "steps".into(),
            _ => k.rsplit('.').next().unwrap_or(k).to_string(),
        }
    };
    let first: Vec<String> = keys.iter().map(|k| short(k)).collect();
    first
        .iter()
        .zip(keys)
        .map(|(s, k)| {
            if first.iter().filter(|o| *o == s).count() > 1 {
                k.clone()
            } else {
                s.clone()
            }
        })
        .collect()
}

/// `lr=1e-4,bs=16,seed=1`: file-name-safe, cut (with a hash of the whole) when long.
fn cell_name(labels: &[String], values: &[(String, Json)]) -> String {
    let name = labels
        .iter()
        .zip(values)
        .map(|(l, (_, v))| format!("{l}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(",");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = hex(&Sha256::digest(name.as_bytes()))[..8].to_string();
    let mut cut = MAX_NAME - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash}", &name[..cut])
}

/// A value as a cell name shows it: numbers short (`1e-4`, `0.05`, `16`), strings as they
/// are, characters a file name should not hold as `_`.
pub fn value_text(v: &Json) -> String {
    let raw = match v {
        Json::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or_default();
            let a = x.abs();
            if (x == x.trunc() && a < 1e6) || (1e-2..1e4).contains(&a) {
                format!("{x}")
            } else {
                format!("{x:e}")
            }
        }
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    }
}

impl Cell {
    /// The layer that makes this cell of the sweep whose directory is `sweep_dir`: its
    /// values, its run directory, and `resume: auto` unless the experiment names a
    /// checkpoint (so that a sweep run again continues the cells it left).
    pub fn layer(&self, sweep_dir: &str, resume: bool) -> Layer {
        let mut root = serde_json::Map::new();
        for (key, value) in &self.values {
            let mut map = &mut root;
            let mut segments: Vec<&str> = key.split('.').collect();
            let last = segments.pop().expect("a key has a segment");
            for seg in segments {
                let entry = map
                    .entry(seg.to_string())
                    .or_insert_with(|| Json::Object(Default::default()));
                if !entry.is_object() {
                    *entry = Json::Object(Default::default());
                }
                map = entry.as_object_mut().expect("made an object");
            }
            map.insert(last.to_string(), value.clone());
        }
        root.insert(
            "output_dir".into(),
            Json::String(format!("{}/{}", sweep_dir.trim_end_matches('/'), self.name)),
        );
        if resume {
            root.insert("resume".into(), Json::String("auto".into()));
        }
        let dict: figment::value::Dict =
            serde::Deserialize::deserialize(Json::Object(root)).expect("JSON is a figment dict");
        Layer {
            kind: LayerKind::Sweep {
                cell: self.name.clone(),
            },
            dict,
            edit: None,
        }
    }

    /// `lr=0.0001 seed=1` for tables and messages (full keys, YAML-ish values).
    pub fn describe(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value as one short line of text.
pub fn compact(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The sha256 of a cell's resolved configuration without `output_dir` and `resume` (which
/// the sweep sets): equal hashes mean a cell directory holds the run these files make.
pub fn config_sha256(experiment: &Experiment) -> String {
    let mut v = serde_json::to_value(experiment).expect("config serializes");
    if let Some(obj) = v.as_object_mut() {
        obj.remove("output_dir");
        obj.remove("resume");
    }
    hex(&Sha256::digest(
        serde_json::to_vec(&v).expect("JSON serializes"),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multirun_values_split_outside_brackets() {
        let (k, v) = parse_multirun("optimizer.betas=[0.9,0.95],[0.9,0.999]").unwrap();
        assert_eq!(k, "optimizer.betas");
        assert_eq!(v, [json!([0.9, 0.95]), json!([0.9, 0.999])]);
        let (_, v) = parse_multirun("model.arch=bert-mini,'a,b'").unwrap();
        assert_eq!(v, [json!("bert-mini"), json!("a,b")]);
        assert!(parse_multirun("lr").is_err());
        assert!(parse_multirun("lr=1,,2").is_err());
    }

    #[test]
    fn names_are_short_and_safe() {
        let keys = [
            "optimizer.lr".to_string(),
            "train.per_device_batch_size".into(),
            "seed".into(),
        ];
        let l = labels(&keys);
        assert_eq!(l, ["lr", "bs", "seed"]);
        let name = cell_name(
            &l,
            &[
                ("optimizer.lr".into(), json!(0.0001)),
                ("train.per_device_batch_size".into(), json!(16)),
                ("seed".into(), json!(1)),
            ],
        );
        assert_eq!(name, "lr=1e-4,bs=16,seed=1");
        assert_eq!(value_text(&json!("a/b c")), "a_b_c");
        assert_eq!(value_text(&json!(0.05)), "0.05");
        assert_eq!(value_text(&json!(3.162e-5)), "3.162e-5");
        // Two keys with one last segment show in full.
        let l = labels(&[
            "model.hidden_size".into(),
            "data.hidden_size".into(),
            "train.per_device_batch_size".into(),
        ]);
        assert_eq!(l, ["model.hidden_size", "data.hidden_size", "bs"]);
        let long = cell_name(&["k".into()], &[("k".into(), json!("x".repeat(300)))]);
        assert!(long.len() <= MAX_NAME && long.contains('~'), "{long}");
    }
}
