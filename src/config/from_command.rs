//! `runner init --from-command`: an experiment file from a command line of the tools the seed
//! tables describe — MAE's `main_pretrain.py` / `submitit_pretrain.py`, Hugging Face's
//! `run_glue.py` (also under `xla_spawn.py`), Megatron/MindSpeed `pretrain_*.py`,
//! Open-Sora-Plan's `train_causalvae.py` — with `torchrun` or `python -m
//! torch.distributed.launch` in front, shell variables set by `export` lines before it, and
//! environment assignments in front of it.
//!
//! Each flag goes through the alias table (`suggest::ALIASES`, the one table that also
//! answers "did you mean") to its key, its values parsed by that key's type in the schema
//! (`--betas 0.9 0.999` → a list, a bare `--norm_pix_loss` → true, `--num_train_epochs 3.0` →
//! 3); the few flags whose meaning is more than a key and a value (`--no_pin_mem`, `--bf16`,
//! `--dist_url tcp://…`, `--clip_grad True`, torchrun's `--rdzv_endpoint`) are translated here.
//! What has no counterpart is listed with its reason. Values holding a shell variable the
//! command does not set (`${IMAGENET_DIR}`) are left for the user to fill in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;

use super::starter::yaml_value;
use super::suggest::{self, Alias, Tool, schema_keys};
use super::types::JobKind;
use super::validate::SCHEMA;

/// One key the command sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    pub value: Json,
    /// The flag as written (`--batch_size 64`), or where a script default comes from, for the
    /// comment beside the key.
    pub from: String,
    /// A default of the script where runner's differs (a flag for the key replaces it).
    pub default: bool,
}

/// A flag (or environment assignment, or launcher option) with no counterpart, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub flag: String,
    pub reason: String,
}

/// What a command line becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub job: JobKind,
    pub script: String,
    pub settings: Vec<Setting>,
    pub dropped: Vec<Dropped>,
    /// Keys whose value holds a shell variable the command does not set: (key, flag).
    pub unresolved: Vec<(String, String)>,
}

/// Reads `command` (one command, possibly continued over lines with `\`, after any `export
/// NAME=VALUE` lines). `job` names the job where the script does not say it.
pub fn import(command: &str, job: Option<JobKind>) -> Result<Imported, String> {
    let (vars, line) = split_lines(command)?;
    let tokens = shlex::split(&line).ok_or_else(|| {
        "the command has an unbalanced quote; quote it as the shell would".to_string()
    })?;
    let mut p = Parser {
        vars,
        dropped: Vec::new(),
        settings: Vec::new(),
        unresolved: Vec::new(),
    };
    let mut rest = tokens.as_slice();
    // Environment assignments before the program.
    while let Some((first, tail)) = rest.split_first() {
        let Some((name, value)) = assignment(first) else {
            break;
        };
        p.environment(name, value, first);
        rest = tail;
    }
    let (script, args) = p.launcher(rest)?;
    let (tool, script_job) = script_kind(&script);
    let job = match (job, script_job) {
        (Some(j), _) | (None, Some(j)) => j,
        (None, None) => {
            return Err(format!(
                "`{script}` is none of the scripts runner knows (main_pretrain.py, \
                 submitit_pretrain.py, run_glue.py, pretrain_*.py, train_causalvae.py): name \
                 the job, `runner init JOB --from-command …` ({})",
                JobKind::ALL
                    .iter()
                    .map(|j| j.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let keys = schema_keys(&SCHEMA.json, Some(job.as_str()));
    // A field's own default, else its section's default object's entry.
    let runner_default = |key: &str| -> Option<Json> {
        let own = |path: &str| {
            keys.iter()
                .find(|k| k.path == path)
                .and_then(|k| k.schema.get("default").cloned())
        };
        own(key).or_else(|| {
            let (section, field) = key.split_once('.')?;
            own(section)?.get(field).cloned()
        })
    };
    let stem = script
        .rsplit('/')
        .next()
        .unwrap_or(&script)
        .trim_end_matches(".py")
        .replace('_', "-");
    let types = key_types(job);
    let mut defaults = vec![(
        "name",
        Json::from(stem),
        "the script's name (runner needs one)".to_string(),
    )];
    for (key, value, why) in script_defaults(&script) {
        let value = match serde_json::from_str::<Json>(value) {
            Ok(list @ Json::Array(_)) => list,
            _ => typed(&Json::from(value), types.get(key)),
        };
        defaults.push((key, value, why.to_string()));
    }
    // Before what the launcher set (xla_spawn.py's TPU over the script's GPU), so that any
    // flag replaces them. Only where runner's own default differs: the file stays short.
    let defaults: Vec<Setting> = defaults
        .into_iter()
        .filter(|(key, value, _)| !runner_default(key).is_some_and(|d| same_value(&d, value)))
        .map(|(key, value, why)| Setting {
            key: key.to_string(),
            value,
            from: why,
            default: true,
        })
        .collect();
    p.settings.splice(0..0, defaults);
    p.script_flags(args, tool)?;
    for s in &mut p.settings {
        s.value = typed(&s.value, types.get(s.key.as_str()));
    }
    // The last setting of a key wins, as the last flag does in argparse; a flag replacing
    // another flag (not a script default) is listed.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in p.settings.iter().enumerate() {
        if let Some(prev) = seen.insert(s.key.clone(), i) {
            let earlier = &p.settings[prev];
            if !earlier.default {
                p.dropped.push(Dropped {
                    flag: earlier.from.clone(),
                    reason: format!("{} is set again by `{}`", s.key, s.from),
                });
            }
        }
    }
    let mut keep: Vec<usize> = seen.into_values().collect();
    keep.sort_unstable();
    let settings = keep.iter().map(|&i| p.settings[i].clone()).collect();
    Ok(Imported {
        job,
        script,
        settings,
        dropped: p.dropped,
        unresolved: p.unresolved,
    })
}

/// The `export NAME=VALUE` (or bare `NAME=VALUE`) lines, and the one command after them.
fn split_lines(text: &str) -> Result<(BTreeMap<String, String>, String), String> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut vars = BTreeMap::new();
    let mut command: Option<String> = None;
    for line in joined.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = shlex::split(line).unwrap_or_default();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let assigns = match words.as_slice() {
            ["export", rest @ ..] => rest.to_vec(),
            all if all.iter().all(|w| assignment(w).is_some()) => all.to_vec(),
            _ => Vec::new(),
        };
        if !assigns.is_empty() && command.is_none() {
            for a in assigns {
                if let Some((k, v)) = assignment(a) {
                    vars.insert(k.to_string(), v.to_string());
                }
            }
            continue;
        }
        if command.is_some() {
            return Err(format!(
                "more than one command (`{line}`): give the one training command"
            ));
        }
        command = Some(line.to_string());
    }
    command
        .map(|c| (vars, c))
        .ok_or_else(|| "no command: give the training command line".to_string())
}

/// `NAME=VALUE` with a shell variable name.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ok.then_some((name, value))
}

/// The job and the tool whose flags the script takes.
fn script_kind(script: &str) -> (Option<Tool>, Option<JobKind>) {
    let name = script.rsplit('/').next().unwrap_or(script);
    match name {
        "main_pretrain.py" | "submitit_pretrain.py" => (Some(Tool::Mae), Some(JobKind::Mae)),
        "run_glue.py" => (Some(Tool::HuggingFace), Some(JobKind::TextClassification)),
        "train_causalvae.py" => (Some(Tool::OpenSoraPlan), Some(JobKind::CausalVae)),
        n if n.starts_with("pretrain_") && n.ends_with(".py") => (
            Some(Tool::Megatron),
            n.contains("vae").then_some(JobKind::CausalVae),
        ),
        _ => (None, None),
    }
}

const MAE_DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "hardware.backend",
        "tch",
        "main_pretrain.py trains on CUDA (its --device cuda)",
    ),
    (
        "hardware.device",
        "cuda",
        "main_pretrain.py trains on CUDA (its --device cuda)",
    ),
    (
        "precision.dtype",
        "fp16",
        "main_pretrain.py trains under torch.cuda.amp autocast with a loss scaler",
    ),
    (
        "model.arch",
        "mae_vit_large_patch16",
        "main_pretrain.py's default --model",
    ),
    (
        "model.mask_ratio",
        "0.75",
        "main_pretrain.py's default --mask_ratio",
    ),
    (
        "data.input_size",
        "224",
        "main_pretrain.py's default --input_size",
    ),
    (
        "train.per_device_batch_size",
        "64",
        "main_pretrain.py's default --batch_size",
    ),
    ("train.epochs", "400", "main_pretrain.py's default --epochs"),
    (
        "optimizer.base_lr",
        "1e-3",
        "main_pretrain.py's default --blr",
    ),
    (
        "optimizer.weight_decay",
        "0.05",
        "main_pretrain.py's default --weight_decay",
    ),
    (
        "optimizer.betas",
        "[0.9, 0.95]",
        "main_pretrain.py's AdamW betas",
    ),
    (
        "optimizer.min_lr",
        "0",
        "main_pretrain.py's default --min_lr",
    ),
    (
        "scheduler.warmup_epochs",
        "40",
        "main_pretrain.py's default --warmup_epochs",
    ),
    ("seed", "0", "main_pretrain.py's default --seed"),
    (
        "loader.num_workers",
        "10",
        "main_pretrain.py's default --num_workers",
    ),
];

const HF_DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "hardware.backend",
        "tch",
        "the Trainer trains on the GPU when there is one",
    ),
    (
        "hardware.device",
        "cuda",
        "the Trainer trains on the GPU when there is one",
    ),
    (
        "optimizer.lr",
        "5e-5",
        "TrainingArguments' default learning_rate",
    ),
    (
        "optimizer.weight_decay",
        "0.0",
        "TrainingArguments' default weight_decay",
    ),
    (
        "optimizer.eps",
        "1e-8",
        "TrainingArguments' default adam_epsilon",
    ),
    (
        "train.per_device_batch_size",
        "8",
        "TrainingArguments' default per_device_train_batch_size",
    ),
    (
        "train.epochs",
        "3",
        "TrainingArguments' default num_train_epochs",
    ),
    (
        "train.clip_grad_norm",
        "1.0",
        "TrainingArguments' default max_grad_norm",
    ),
    ("seed", "42", "TrainingArguments' default seed"),
    (
        "data.max_seq_length",
        "128",
        "run_glue.py's default --max_seq_length",
    ),
];

const GPU_DEFAULTS: &[(&str, &str, &str)] = &[
    ("hardware.backend", "tch", "the script trains on GPUs"),
    ("hardware.device", "cuda", "the script trains on GPUs"),
];

/// The script's own defaults, where a command that leaves a flag out means them.
fn script_defaults(script: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let name = script.rsplit('/').next().unwrap_or(script);
    let mut out: Vec<_> = match script_kind(script).0 {
        Some(Tool::Mae) => MAE_DEFAULTS.to_vec(),
        Some(Tool::HuggingFace) => HF_DEFAULTS.to_vec(),
        Some(_) | None => GPU_DEFAULTS.to_vec(),
    };
    if name == "submitit_pretrain.py" {
        out.push((
            "hardware.nproc_per_node",
            "8",
            "submitit_pretrain.py (its default --ngpus 8)",
        ));
    }
    out
}

/// Equal as configuration values (`1` and `1.0` alike).
fn same_value(a: &Json, b: &Json) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

struct Parser {
    vars: BTreeMap<String, String>,
    settings: Vec<Setting>,
    dropped: Vec<Dropped>,
    unresolved: Vec<(String, String)>,
}

/// What a launcher option that takes a value is.
const LAUNCHER_VALUED: [&str; 16] = [
    "nproc_per_node",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "rdzv_endpoint",
    "rdzv_backend",
    "rdzv_id",
    "rdzv_conf",
    "max_restarts",
    "monitor_interval",
    "start_method",
    "role",
    "log_dir",
    "redirects",
    "local_addr",
];

impl Parser {
    fn drop(&mut self, flag: &str, reason: impl Into<String>) {
        self.dropped.push(Dropped {
            flag: flag.to_string(),
            reason: reason.into(),
        });
    }

    fn set(&mut self, key: &str, value: Json, from: String) {
        self.settings.push(Setting {
            key: key.to_string(),
            value,
            from,
            default: false,
        });
    }

    fn environment(&mut self, name: &str, value: &str, word: &str) {
        let reason = match name {
            "TP_SIZE" | "CP_SIZE" | "PP_SIZE" if value == "1" => {
                "one-way parallelism is runner's only kind".to_string()
            }
            "TP_SIZE" | "CP_SIZE" | "PP_SIZE" => format!(
                "runner trains data-parallel only; {} parallelism has no counterpart, so every \
                 process becomes a data-parallel rank",
                match name {
                    "TP_SIZE" => "tensor",
                    "CP_SIZE" => "context",
                    _ => "pipeline",
                }
            ),
            "DP_SIZE" => {
                "the data-parallel size is derived: hardware.nnodes × hardware.nproc_per_node"
                    .to_string()
            }
            "CUDA_VISIBLE_DEVICES" => {
                "an environment variable: set it when running; each rank takes cuda:LOCAL_RANK \
                 of the devices it leaves visible"
                    .to_string()
            }
            "OMP_NUM_THREADS" => "an environment variable: set it when running (runner sets \
                 cores ÷ workers for CPU workers it starts)"
                .to_string(),
            _ => "an environment variable of the command, not a setting".to_string(),
        };
        self.drop(word, reason);
    }

    /// Skips the launcher (python, torchrun, `-m torch.distributed.launch|run`, xla_spawn.py)
    /// taking what it sets; returns the training script and its arguments.
    fn launcher<'a>(&mut self, words: &'a [String]) -> Result<(String, &'a [String]), String> {
        let mut rest = words;
        loop {
            let Some((program, tail)) = rest.split_first() else {
                return Err("no training script in the command".into());
            };
            let base = program.rsplit('/').next().unwrap_or(program);
            if base == "torchrun" {
                rest = self.launcher_options(tail, "torchrun")?;
            } else if base.starts_with("python") {
                let mut t = tail;
                // Interpreter switches: -u, -O, -B …
                while let Some((w, more)) = t.split_first() {
                    if w == "-m" {
                        let Some((module, more)) = more.split_first() else {
                            return Err("`python -m` without a module".into());
                        };
                        if module == "torch.distributed.launch" || module == "torch.distributed.run"
                        {
                            t = self.launcher_options(more, module)?;
                            break;
                        }
                        return Err(format!(
                            "`python -m {module}`: give the training script's path instead"
                        ));
                    }
                    if w.starts_with('-') && w.len() == 2 {
                        t = more;
                    } else {
                        break;
                    }
                }
                rest = t;
            } else if base == "xla_spawn.py" {
                rest = self.xla_spawn(tail)?;
            } else if base.ends_with(".py") {
                return Ok((program.clone(), tail));
            } else if matches!(base, "bash" | "sh") {
                return Err(format!(
                    "`{}` runs a shell script: give the command line it runs",
                    words.join(" ")
                ));
            } else {
                return Err(format!(
                    "`{program}` is not a launcher runner knows (python, torchrun, python -m \
                     torch.distributed.launch, xla_spawn.py)"
                ));
            }
        }
    }

    fn launcher_options<'a>(
        &mut self,
        mut words: &'a [String],
        launcher: &str,
    ) -> Result<&'a [String], String> {
        while let Some((w, tail)) = words.split_first() {
            if !w.starts_with('-') {
                return Ok(words);
            }
            let (name, inline) = match w.split_once('=') {
                Some((n, v)) => (suggest::normalise(n), Some(v.to_string())),
                None => (suggest::normalise(w), None),
            };
            let (value, next) = match (inline, LAUNCHER_VALUED.contains(&name.as_str())) {
                (Some(v), _) => (Some(v), tail),
                (None, true) => match tail.split_first() {
                    Some((v, more)) => (Some(v.clone()), more),
                    None => return Err(format!("`{launcher} {w}` has no value")),
                },
                (None, false) => (None, tail),
            };
            let text = match &value {
                Some(v) => format!("{launcher} --{name}={v}"),
                None => format!("{launcher} --{name}"),
            };
            let value = value.map(|v| self.expand(&v));
            match (name.as_str(), value) {
                ("nproc_per_node" | "nnodes" | "node_rank" | "master_addr" | "master_port", Some(v)) => {
                    if name == "nnodes" && v.contains(':') {
                        self.drop(&text, "elastic node ranges have no counterpart: runner trains on a fixed hardware.nnodes");
                    } else {
                        self.set(&format!("hardware.{name}"), Json::from(v), text);
                    }
                }
                ("rdzv_endpoint", Some(v)) => self.endpoint(&v, &text),
                ("no_python" | "standalone" | "use_env" | "module" | "m", _) => self.drop(
                    &text,
                    "a launcher switch: `runner run` starts its workers itself, or runs under torchrun",
                ),
                (_, _) => self.drop(
                    &text,
                    format!("a {launcher} option with no counterpart: runner's launcher restarts nothing and needs no rendezvous settings beyond hardware.master_addr/master_port"),
                ),
            }
            words = next;
        }
        Ok(words)
    }

    fn xla_spawn<'a>(&mut self, mut words: &'a [String]) -> Result<&'a [String], String> {
        self.set(
            "hardware.device",
            Json::from("tpu"),
            "xla_spawn.py (TPU cores)".into(),
        );
        while let Some((w, tail)) = words.split_first() {
            if !w.starts_with('-') {
                return Ok(words);
            }
            let name = suggest::normalise(w.split('=').next().unwrap_or(w));
            let (value, next) = match w.split_once('=') {
                Some((_, v)) => (v.to_string(), tail),
                None => match tail.split_first() {
                    Some((v, more)) => (v.clone(), more),
                    None => return Err(format!("`xla_spawn.py {w}` has no value")),
                },
            };
            let text = format!("xla_spawn.py --{name} {value}");
            if name == "num_cores" {
                self.set("hardware.nproc_per_node", Json::from(value), text);
            } else {
                self.drop(&text, "an xla_spawn.py option with no counterpart");
            }
            words = next;
        }
        Ok(words)
    }

    /// `HOST:PORT` → hardware.master_addr and hardware.master_port.
    fn endpoint(&mut self, value: &str, text: &str) {
        match value.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                self.set("hardware.master_addr", Json::from(host), text.into());
                self.set("hardware.master_port", Json::from(port), text.into());
            }
            _ => self.drop(text, "not `HOST:PORT`"),
        }
    }

    /// `$NAME` and `${NAME}` from the `export` lines; unknown ones stay as written.
    fn expand(&self, word: &str) -> String {
        let mut out = String::new();
        let mut rest = word;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, len) = if let Some(body) = after.strip_prefix('{') {
                match body.find('}') {
                    Some(end) => (&body[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.vars.get(name) {
                Some(v) if !name.is_empty() => {
                    out.push_str(v);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The training script's own flags.
    fn script_flags(&mut self, mut words: &[String], tool: Option<Tool>) -> Result<(), String> {
        while let Some((w, tail)) = words.split_first() {
            if !w.starts_with("--") {
                return Err(format!(
                    "`{w}` is not a flag (`--name value`); runner reads argparse-style flags"
                ));
            }
            let (raw, inline) = match w.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (w.as_str(), None),
            };
            let name = suggest::normalise(raw);
            // Values run to the next flag (a negative number is a value).
            let is_flag = |s: &String| {
                s.starts_with("--") || (s.starts_with('-') && s[1..].parse::<f64>().is_err())
            };
            let n = tail.iter().take_while(|s| !is_flag(s)).count();
            let mut values: Vec<String> = inline.into_iter().collect();
            values.extend(tail[..n].iter().cloned());
            words = &tail[n..];
            let text = std::iter::once(format!("--{name}"))
                .chain(values.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let values: Vec<String> = values.iter().map(|v| self.expand(v)).collect();
            self.flag(&name, &values, &text, tool);
        }
        Ok(())
    }

    fn flag(&mut self, name: &str, values: &[String], text: &str, tool: Option<Tool>) {
        let found = suggest::ALIASES
            .iter()
            .find(|(n, t, _)| *n == name && Some(*t) == tool)
            .or_else(|| suggest::ALIASES.iter().find(|(n, ..)| *n == name));
        let Some((_, _, alias)) = found else {
            self.drop(
                text,
                "no counterpart: not an argument of the seed tables runner maps (see `runner \
                 validate`'s suggestions for keys)",
            );
            return;
        };
        let key = match alias {
            Alias::Rejected(why) => {
                self.drop(text, *why);
                return;
            }
            Alias::Key(key, _) => *key,
        };
        let truthy = |v: &[String]| {
            v.first()
                .is_none_or(|s| matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        };
        if values.iter().any(|v| v.contains('$')) {
            self.unresolved.push((key.to_string(), text.to_string()));
            return;
        }
        match name {
            "no_pin_mem" => self.set(key, Json::Bool(false), text.into()),
            "fp16" | "bf16" => {
                if truthy(values) {
                    self.set(key, Json::from(name), text.into());
                } else {
                    self.drop(text, "off: the default precision.dtype is fp32");
                }
            }
            "do_eval" => {
                let v = if truthy(values) { "epoch" } else { "no" };
                self.set(key, Json::from(v), text.into());
            }
            "clip_grad" if values.first().is_some_and(|v| v.parse::<f64>().is_err()) => {
                let norm = if truthy(values) { 1.0 } else { 0.0 };
                self.set(key, Json::from(norm), text.into());
            }
            "precision" => {
                let v = values.first().map(String::as_str).unwrap_or_default();
                let dtype = match v.to_ascii_lowercase().as_str() {
                    "bf16" | "bf16-mixed" | "bf16-true" => "bf16",
                    "fp16" | "16" | "16-mixed" => "fp16",
                    "fp32" | "32" | "32-true" => "fp32",
                    other => other,
                }
                .to_string();
                self.set(key, Json::from(dtype), text.into());
            }
            "dist_url" => match values.first().map(String::as_str) {
                Some(url) if url.starts_with("tcp://") => {
                    self.endpoint(url.trim_start_matches("tcp://"), text)
                }
                _ => self.drop(text, "`env://` is the default: the launcher's environment"),
            },
            "rdzv_endpoint" => {
                if let Some(v) = values.first() {
                    self.endpoint(v, text);
                }
            }
            _ => {
                let value = match values {
                    [] => Json::Bool(true),
                    [one] => Json::from(one.clone()),
                    many => Json::Array(many.iter().cloned().map(Json::from).collect()),
                };
                self.set(key, value, text.into());
            }
        }
    }
}

/// What kind of value each key of `job` takes, from the schema.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Integer,
    Number,
    Text,
    List,
}

fn key_types(job: JobKind) -> BTreeMap<String, Kind> {
    let defs = &SCHEMA.json["definitions"];
    schema_keys(&SCHEMA.json, Some(job.as_str()))
        .into_iter()
        .filter_map(|k| Some((k.path.clone(), kind(&k.schema, defs)?)))
        .collect()
}

fn kind(schema: &Json, defs: &Json) -> Option<Kind> {
    let types: Vec<&str> = match &schema["type"] {
        Json::String(t) => vec![t.as_str()],
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(t) = types.iter().find(|t| **t != "null") {
        return match *t {
            "boolean" => Some(Kind::Bool),
            "integer" => Some(Kind::Integer),
            "number" => Some(Kind::Number),
            "string" => Some(Kind::Text),
            "array" => Some(Kind::List),
            _ => None,
        };
    }
    if schema.get("enum").is_some() || schema.get("oneOf").is_some() {
        return Some(Kind::Text);
    }
    for list in ["anyOf", "allOf"] {
        if let Some(items) = schema[list].as_array() {
            for item in items {
                let resolved = match crate::config::schema::field_reference(item)
                    .or_else(|| item["$ref"].as_str()?.rsplit('/').next())
                {
                    Some(name) => &defs[name],
                    None => item,
                };
                if let Some(k) = kind(resolved, defs) {
                    return Some(k);
                }
            }
        }
    }
    None
}

/// A flag's text value as the key's type wants it; what does not parse stays text, for
/// validation to report.
fn typed(value: &Json, kind: Option<&Kind>) -> Json {
    let Json::String(s) = value else {
        return match (value, kind) {
            (Json::Array(items), _) => Json::Array(
                items
                    .iter()
                    .map(|i| typed(i, Some(&Kind::Number)))
                    .collect(),
            ),
            _ => value.clone(),
        };
    };
    let number = s.parse::<f64>().ok().filter(|f| f.is_finite());
    match kind {
        Some(Kind::Bool) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Json::Bool(true),
            "false" | "0" | "no" => Json::Bool(false),
            _ => value.clone(),
        },
        Some(Kind::Integer) => match number {
            Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Json::from(f as i64),
            _ => value.clone(),
        },
        Some(Kind::Number) => number.map(Json::from).unwrap_or_else(|| value.clone()),
        Some(Kind::List) => Json::Array(vec![typed(value, Some(&Kind::Number))]),
        Some(Kind::Text) => value.clone(),
        // A number where the schema does not say (a list's items).
        None => number
            .map(|f| {
                if f.fract() == 0.0 && !s.contains(['.', 'e', 'E']) {
                    Json::from(f as i64)
                } else {
                    Json::from(f)
                }
            })
            .unwrap_or_else(|| value.clone()),
    }
}

impl Imported {
    /// The keys the job requires that the command does not set (`data.path`, say).
    pub fn missing_required(&self) -> Vec<String> {
        let (_, data) = self.job.section_schema_names();
        let required = SCHEMA.json["definitions"][data]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        required
            .iter()
            .filter_map(Json::as_str)
            .map(|f| format!("data.{f}"))
            .filter(|k| !self.settings.iter().any(|s| &s.key == k))
            .collect()
    }
}

/// The experiment file: a header naming the command and every flag left out with its reason,
/// then the keys by section, each with the flag it came from.
pub fn render(imported: &Imported, command: &str, schema_ref: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# yaml-language-server: $schema={schema_ref}");
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# Written by `runner init --from-command` from `{}`:",
        imported.script
    );
    for line in command.trim().lines() {
        let _ = writeln!(out, "#   {}", line.trim_end());
    }
    if !imported.dropped.is_empty() {
        let _ = writeln!(out, "#");
        let _ = writeln!(out, "# Left out, with no counterpart in runner:");
        for d in &imported.dropped {
            let _ = writeln!(out, "#   {}: {}", d.flag, d.reason);
        }
    }
    if !imported.unresolved.is_empty() {
        let _ = writeln!(out, "#");
        let _ = writeln!(
            out,
            "# To fill in (the command takes them from shell variables it does not set):"
        );
        for (key, flag) in &imported.unresolved {
            let _ = writeln!(out, "#   {key} (from {flag})");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "job: {}", imported.job.as_str());
    let mut sections: Vec<(&str, Vec<&Setting>)> = Vec::new();
    for s in &imported.settings {
        match s.key.split_once('.') {
            None => {
                let _ = writeln!(out, "{}: {}  # {}", s.key, yaml_value(&s.value), s.from);
            }
            Some((section, _)) => match sections.iter_mut().find(|(n, _)| *n == section) {
                Some((_, list)) => list.push(s),
                None => sections.push((section, vec![s])),
            },
        }
    }
    // The order the shipped experiments and `runner init JOB` use.
    const ORDER: [&str; 11] = [
        "model",
        "data",
        "train",
        "optimizer",
        "scheduler",
        "precision",
        "eval",
        "checkpoint",
        "loader",
        "logging",
        "hardware",
    ];
    sections.sort_by_key(|(name, _)| ORDER.iter().position(|o| o == name).unwrap_or(ORDER.len()));
    for (section, list) in sections {
        let _ = writeln!(out, "\n{section}:");
        for s in list {
            let field = s.key.split_once('.').map_or("", |(_, f)| f);
            let _ = writeln!(out, "  {field}: {}  # {}", yaml_value(&s.value), s.from);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(i: &'a Imported, key: &str) -> Option<&'a Json> {
        i.settings.iter().find(|s| s.key == key).map(|s| &s.value)
    }

    #[test]
    fn values_take_their_keys_types() {
        let i = import(
            "python train_causalvae.py --betas 0.9 0.999 --batch_size 4 --clip_grad True \
             --precision bf16 --max_steps 5e4",
            None,
        )
        .unwrap();
        assert_eq!(i.job, JobKind::CausalVae);
        assert_eq!(
            get(&i, "optimizer.betas"),
            Some(&serde_json::json!([0.9, 0.999]))
        );
        assert_eq!(
            get(&i, "train.per_device_batch_size"),
            Some(&serde_json::json!(4))
        );
        assert_eq!(
            get(&i, "train.clip_grad_norm"),
            Some(&serde_json::json!(1.0))
        );
        assert_eq!(get(&i, "precision.dtype"), Some(&serde_json::json!("bf16")));
        assert_eq!(get(&i, "train.max_steps"), Some(&serde_json::json!(50000)));
    }

    #[test]
    fn bare_switches_negations_and_launchers() {
        let i = import(
            "CUDA_VISIBLE_DEVICES=0,1 python -m torch.distributed.launch --nproc_per_node=2 \
             main_pretrain.py --norm_pix_loss --no_pin_mem --dist_url tcp://10.0.0.1:2950 \
             --local_rank 0",
            None,
        )
        .unwrap();
        assert_eq!(get(&i, "model.norm_pix_loss"), Some(&Json::Bool(true)));
        assert_eq!(get(&i, "loader.pin_memory"), Some(&Json::Bool(false)));
        assert_eq!(
            get(&i, "hardware.nproc_per_node"),
            Some(&serde_json::json!(2))
        );
        assert_eq!(
            get(&i, "hardware.master_addr"),
            Some(&serde_json::json!("10.0.0.1"))
        );
        assert_eq!(
            get(&i, "hardware.master_port"),
            Some(&serde_json::json!(2950))
        );
        let dropped: Vec<&str> = i.dropped.iter().map(|d| d.flag.as_str()).collect();
        assert_eq!(dropped, ["CUDA_VISIBLE_DEVICES=0,1", "--local_rank 0"]);
    }

    #[test]
    fn exported_variables_fill_in_and_unknown_ones_are_left_to_fill() {
        let i = import(
            "export TASK_NAME=mrpc\n\npython run_glue.py \\\n  --task_name $TASK_NAME \\\n  \
             --output_dir /tmp/$TASK_NAME/ --train_file ${DATA}/train.json",
            None,
        )
        .unwrap();
        assert_eq!(get(&i, "data.task"), Some(&serde_json::json!("mrpc")));
        assert_eq!(
            get(&i, "output_dir"),
            Some(&serde_json::json!("/tmp/mrpc/"))
        );
        assert_eq!(get(&i, "data.train_file"), None);
        assert_eq!(
            i.unresolved,
            [(
                "data.train_file".to_string(),
                "--train_file ${DATA}/train.json".to_string()
            )]
        );
    }

    #[test]
    fn an_unknown_script_needs_the_job_named() {
        let e = import("torchrun --nproc_per_node=4 train_script.py", None).unwrap_err();
        assert!(e.contains("name the job"), "{e}");
        let i = import(
            "TP_SIZE=2 DP_SIZE=2 torchrun --nproc_per_node=4 --rdzv_endpoint=localhost:29503 \
             train_script.py",
            Some(JobKind::TextClassification),
        )
        .unwrap();
        assert_eq!(
            get(&i, "hardware.master_port"),
            Some(&serde_json::json!(29503))
        );
        assert!(
            i.dropped
                .iter()
                .any(|d| d.flag == "TP_SIZE=2" && d.reason.contains("tensor"))
        );
    }

    #[test]
    fn a_later_flag_wins_and_the_earlier_is_listed() {
        let i = import("python main_pretrain.py --lr 1e-3 --lr 2e-3", None).unwrap();
        assert_eq!(get(&i, "optimizer.lr"), Some(&serde_json::json!(2e-3)));
        assert!(i.dropped[0].reason.contains("set again"));
    }
}
