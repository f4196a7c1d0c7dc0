//! "Did you mean …?" for unknown keys and values.
//!
//! Two sources: the argument names of the tools our users come from (the seed tables:
//! MAE `main_pretrain.py`, Megatron/MindSpeed-MM, Hugging Face `TrainingArguments`,
//! Open-Sora-Plan `train_causalvae.py`), each mapped to its runner key or rejected with the
//! reason; then string similarity against the keys that exist.

use serde_json::Value as Json;

/// What a foreign argument becomes in runner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alias {
    /// The runner key that expresses it, with an optional note on how values translate.
    Key(&'static str, Option<&'static str>),
    /// No counterpart, and why.
    Rejected(&'static str),
}

/// Which tool an argument comes from (the seed table number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tool {
    Mae,
    Megatron,
    HuggingFace,
    OpenSoraPlan,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Mae => "MAE main_pretrain.py",
            Tool::Megatron => "Megatron/MindSpeed-MM",
            Tool::HuggingFace => "Hugging Face TrainingArguments",
            Tool::OpenSoraPlan => "Open-Sora-Plan train_causalvae.py",
        }
    }
}

use Alias::{Key, Rejected};
use Tool::{HuggingFace as Hf, Mae, Megatron as Mg, OpenSoraPlan as Osp};

const LAUNCHER: &str = "set per process by the launcher: `runner run` starts its workers itself \
    or reads RANK/LOCAL_RANK/WORLD_SIZE from torchrun or Slurm; size the job with \
    hardware.nnodes and hardware.nproc_per_node";
const SLURM_ONLY: &str = "a Slurm request, not a training setting: give it to `runner launch \
    EXP --slurm` (`--partition`, `--time`, or `--sbatch=--constraint=volta32gb` for \
    `--use_volta32`)";
const NO_COMPILE: &str = "torch.compile has no counterpart: runner executes eagerly on burn's \
    flex backend or libtorch";
const NO_DISC: &str = "discriminator and perceptual (LPIPS) losses are not supported: the \
    CausalVAE job trains on reconstruction + model.kl_weight × KL only";

/// Every argument of the seed tables (names normalised: lowercase, `-` → `_`, no leading
/// dashes), plus close relatives users type.
pub const ALIASES: &[(&str, Tool, Alias)] = &[
    // MAE main_pretrain.py (seed 000)
    ("batch_size", Mae, Key("train.per_device_batch_size", None)),
    ("epochs", Mae, Key("train.epochs", None)),
    ("accum_iter", Mae, Key("train.grad_accum_steps", None)),
    ("model", Mae, Key("model.arch", None)),
    ("input_size", Mae, Key("data.input_size", None)),
    ("mask_ratio", Mae, Key("model.mask_ratio", None)),
    ("norm_pix_loss", Mae, Key("model.norm_pix_loss", None)),
    ("weight_decay", Mae, Key("optimizer.weight_decay", None)),
    ("lr", Mae, Key("optimizer.lr", None)),
    ("blr", Mae, Key("optimizer.base_lr", None)),
    ("min_lr", Mae, Key("optimizer.min_lr", None)),
    ("warmup_epochs", Mae, Key("scheduler.warmup_epochs", None)),
    ("data_path", Mae, Key("data.path", None)),
    ("output_dir", Mae, Key("output_dir", None)),
    ("log_dir", Mae, Key("logging.dir", None)),
    ("device", Mae, Key("hardware.device", None)),
    ("seed", Mae, Key("seed", None)),
    ("resume", Mae, Key("resume", None)),
    ("start_epoch", Mae, Key("train.start_epoch", None)),
    ("num_workers", Mae, Key("loader.num_workers", None)),
    ("pin_mem", Mae, Key("loader.pin_memory", None)),
    (
        "no_pin_mem",
        Mae,
        Key(
            "loader.pin_memory",
            Some("`--no_pin_mem` is `loader.pin_memory: false`"),
        ),
    ),
    (
        "world_size",
        Mae,
        Key(
            "hardware.nproc_per_node",
            Some("the world size is derived: hardware.nnodes × hardware.nproc_per_node"),
        ),
    ),
    ("local_rank", Mae, Rejected(LAUNCHER)),
    // MAE's submitit_pretrain.py (PRETRAIN.md's multi-node command) adds Slurm's side.
    ("nodes", Mae, Key("hardware.nnodes", None)),
    ("ngpus", Mae, Key("hardware.nproc_per_node", None)),
    (
        "job_dir",
        Mae,
        Rejected(
            "submitit's folder for its logs and checkpoints: runner writes everything into output_dir (`runner launch --slurm` writes its batch script there too)",
        ),
    ),
    ("use_volta32", Mae, Rejected(SLURM_ONLY)),
    ("partition", Mae, Rejected(SLURM_ONLY)),
    ("timeout", Mae, Rejected(SLURM_ONLY)),
    ("comment", Mae, Rejected(SLURM_ONLY)),
    (
        "dist_on_itp",
        Mae,
        Rejected(
            "a switch for Microsoft's ITP cluster; runner reads the standard launcher environment (torchrun, Slurm) instead",
        ),
    ),
    (
        "dist_url",
        Mae,
        Key(
            "hardware.master_addr",
            Some(
                "`tcp://HOST:PORT` becomes hardware.master_addr: HOST and hardware.master_port: PORT; `env://` is the default",
            ),
        ),
    ),
    // Megatron / MindSpeed-MM (seed 002)
    ("nproc_per_node", Mg, Key("hardware.nproc_per_node", None)),
    ("nnodes", Mg, Key("hardware.nnodes", None)),
    ("node_rank", Mg, Key("hardware.node_rank", None)),
    ("master_addr", Mg, Key("hardware.master_addr", None)),
    ("master_port", Mg, Key("hardware.master_port", None)),
    (
        "distributed_backend",
        Mg,
        Key("hardware.dist_backend", None),
    ),
    (
        "mm_data",
        Mg,
        Rejected(
            "MindSpeed-MM keeps data settings in a side JSON file; in runner they are the experiment's `data` section",
        ),
    ),
    (
        "mm_model",
        Mg,
        Rejected(
            "MindSpeed-MM keeps model settings in a side JSON file; in runner they are the experiment's `model` section",
        ),
    ),
    (
        "mm_tool",
        Mg,
        Rejected(
            "MindSpeed-MM's tool settings (profiling and the like) have no runner counterpart",
        ),
    ),
    (
        "use_mcore_models",
        Mg,
        Rejected("a Megatron-Core switch; runner always builds its own burn models"),
    ),
    (
        "tensor_model_parallel_size",
        Mg,
        Key("hardware.tensor_parallel", None),
    ),
    (
        "pipeline_model_parallel_size",
        Mg,
        Key("hardware.pipeline_parallel", None),
    ),
    (
        "micro_batch_size",
        Mg,
        Key("train.per_device_batch_size", None),
    ),
    (
        "global_batch_size",
        Mg,
        Key("train.global_batch_size", None),
    ),
    (
        "adam_beta1",
        Mg,
        Key(
            "optimizer.betas",
            Some("Adam's betas are one list: `optimizer.betas: [β1, β2]`"),
        ),
    ),
    (
        "adam_beta2",
        Mg,
        Key(
            "optimizer.betas",
            Some("Adam's betas are one list: `optimizer.betas: [β1, β2]`"),
        ),
    ),
    ("adam_eps", Mg, Key("optimizer.eps", None)),
    (
        "lr_decay_style",
        Mg,
        Key(
            "scheduler.style",
            Some("Megatron's `inverse-square-root` is `inverse_sqrt`, `WSD` is `wsd`"),
        ),
    ),
    ("lr_warmup_init", Mg, Key("scheduler.warmup_init_lr", None)),
    ("lr_warmup_iters", Mg, Key("scheduler.warmup_steps", None)),
    (
        "lr_warmup_fraction",
        Mg,
        Key("scheduler.warmup_ratio", None),
    ),
    (
        "clip_grad",
        Mg,
        Key(
            "train.clip_grad_norm",
            Some("a norm (`1.0`); Open-Sora-Plan's `--clip_grad True` is 1.0, off is 0"),
        ),
    ),
    ("train_iters", Mg, Key("train.max_steps", None)),
    // Hugging Face TrainingArguments / run_glue.py / xla_spawn.py (seed 003)
    (
        "do_train",
        Hf,
        Rejected("`runner run` always trains; there is nothing to switch on"),
    ),
    (
        "do_eval",
        Hf,
        Key(
            "eval.strategy",
            Some("`do_eval: true` is `eval.strategy: epoch` (or `steps`); false is `no`"),
        ),
    ),
    (
        "per_device_train_batch_size",
        Hf,
        Key("train.per_device_batch_size", None),
    ),
    (
        "per_device_eval_batch_size",
        Hf,
        Key("eval.per_device_batch_size", None),
    ),
    (
        "gradient_accumulation_steps",
        Hf,
        Key("train.grad_accum_steps", None),
    ),
    ("num_train_epochs", Hf, Key("train.epochs", None)),
    ("max_steps", Hf, Key("train.max_steps", None)),
    ("learning_rate", Hf, Key("optimizer.lr", None)),
    (
        "auto_find_batch_size",
        Hf,
        Key("train.auto_find_batch_size", None),
    ),
    (
        "gradient_checkpointing",
        Hf,
        Key("train.gradient_checkpointing", None),
    ),
    (
        "gradient_checkpointing_kwargs",
        Hf,
        Rejected(
            "its only use, `use_reentrant`, is a PyTorch autograd detail with no counterpart in burn",
        ),
    ),
    (
        "fp16",
        Hf,
        Key(
            "precision.dtype",
            Some("`fp16: true` is `precision.dtype: fp16`"),
        ),
    ),
    (
        "bf16",
        Hf,
        Key(
            "precision.dtype",
            Some("`bf16: true` is `precision.dtype: bf16`"),
        ),
    ),
    (
        "dataloader_num_workers",
        Hf,
        Key("loader.num_workers", None),
    ),
    ("dataloader_pin_memory", Hf, Key("loader.pin_memory", None)),
    (
        "dataloader_prefetch_factor",
        Hf,
        Key("loader.prefetch_factor", None),
    ),
    ("dataloader_drop_last", Hf, Key("loader.drop_last", None)),
    ("torch_compile", Hf, Rejected(NO_COMPILE)),
    ("torch_compile_backend", Hf, Rejected(NO_COMPILE)),
    ("torch_compile_mode", Hf, Rejected(NO_COMPILE)),
    ("ddp_backend", Hf, Key("hardware.dist_backend", None)),
    (
        "ddp_find_unused_parameters",
        Hf,
        Rejected(
            "runner's data parallelism all-reduces every parameter's gradient, so there are no unused parameters to search for",
        ),
    ),
    (
        "ddp_bucket_cap_mb",
        Hf,
        Key("hardware.ddp_bucket_cap_mb", None),
    ),
    ("ddp_timeout", Hf, Key("hardware.ddp_timeout", None)),
    ("eval_strategy", Hf, Key("eval.strategy", None)),
    ("evaluation_strategy", Hf, Key("eval.strategy", None)),
    ("eval_steps", Hf, Key("eval.every_steps", None)),
    ("eval_on_start", Hf, Key("eval.on_start", None)),
    ("save_strategy", Hf, Key("checkpoint.strategy", None)),
    ("save_steps", Hf, Key("checkpoint.every_steps", None)),
    ("save_total_limit", Hf, Key("checkpoint.keep_last", None)),
    (
        "metric_for_best_model",
        Hf,
        Key(
            "eval.metric_for_best",
            Some("written `<set>.<metric>`, e.g. `dev_matched.accuracy`"),
        ),
    ),
    ("greater_is_better", Hf, Key("eval.greater_is_better", None)),
    (
        "load_best_model_at_end",
        Hf,
        Key(
            "checkpoint.load_best_at_end",
            Some("the best weights are kept under `best/` by `checkpoint.keep_best`"),
        ),
    ),
    (
        "early_stopping_patience",
        Hf,
        Key(
            "eval.early_stopping_patience",
            Some("HF's EarlyStoppingCallback argument"),
        ),
    ),
    (
        "early_stopping_threshold",
        Hf,
        Key("eval.early_stopping_threshold", None),
    ),
    ("logging_dir", Hf, Key("logging.dir", None)),
    ("logging_steps", Hf, Key("train.log_every_steps", None)),
    ("warmup_steps", Hf, Key("scheduler.warmup_steps", None)),
    ("warmup_ratio", Hf, Key("scheduler.warmup_ratio", None)),
    ("lr_scheduler_type", Hf, Key("scheduler.style", None)),
    ("max_grad_norm", Hf, Key("train.clip_grad_norm", None)),
    ("adam_epsilon", Hf, Key("optimizer.eps", None)),
    (
        "torch_empty_cache_steps",
        Hf,
        Rejected(
            "emptying PyTorch's CUDA cache is a fragmentation workaround; libtorch's caching allocator is left to itself",
        ),
    ),
    (
        "skip_memory_metrics",
        Hf,
        Rejected("runner records no memory metrics yet, so there is nothing to skip"),
    ),
    (
        "model_name_or_path",
        Hf,
        Key(
            "model.pretrained",
            Some(
                "a Hugging Face checkpoint folder, or a Hub id found in the local cache: nothing is downloaded",
            ),
        ),
    ),
    ("task_name", Hf, Key("data.task", None)),
    ("train_file", Hf, Key("data.train_file", None)),
    (
        "validation_file",
        Hf,
        Key(
            "data.validation_files",
            Some("a list: several held-out files are evaluated separately"),
        ),
    ),
    ("max_seq_length", Hf, Key("data.max_seq_length", None)),
    ("num_cores", Hf, Key("hardware.nproc_per_node", None)),
    (
        "rdzv_endpoint",
        Hf,
        Key(
            "hardware.master_addr",
            Some(
                "torchrun's `HOST:PORT` becomes hardware.master_addr: HOST and hardware.master_port: PORT",
            ),
        ),
    ),
    // Open-Sora-Plan train_causalvae.py (seed 004)
    ("exp_name", Osp, Key("name", None)),
    ("precision", Osp, Key("precision.dtype", None)),
    (
        "amp_level",
        Osp,
        Rejected(
            "runner's mixed precision always keeps fp32 master weights and optimizer state and computes in precision.dtype (Apex's O2); there are no other levels",
        ),
    ),
    ("video_path", Osp, Key("data.video_path", None)),
    ("video_num_frames", Osp, Key("data.num_frames", None)),
    ("num_frames", Osp, Key("data.num_frames", None)),
    ("resolution", Osp, Key("data.resolution", None)),
    ("sample_rate", Osp, Key("data.sample_rate", None)),
    ("load_from_checkpoint", Osp, Key("init_from", None)),
    ("start_learning_rate", Osp, Key("optimizer.lr", None)),
    ("lr_scheduler", Osp, Key("scheduler.style", None)),
    ("optim", Osp, Key("optimizer.name", None)),
    ("optimizer", Osp, Key("optimizer.name", None)),
    ("betas", Osp, Key("optimizer.betas", None)),
    (
        "mode",
        Osp,
        Rejected(
            "MindSpore's execution mode (0 = graph, 1 = PyNative); runner executes eagerly and has no graph mode",
        ),
    ),
    (
        "init_loss_scale",
        Osp,
        Key("precision.init_loss_scale", None),
    ),
    (
        "jit_level",
        Osp,
        Rejected("MindSpore's graph-compiler optimisation level; runner has no graph compiler"),
    ),
    ("disc_start", Osp, Rejected(NO_DISC)),
    ("disc_weight", Osp, Rejected(NO_DISC)),
    ("discriminator", Osp, Rejected(NO_DISC)),
    ("perceptual_weight", Osp, Rejected(NO_DISC)),
    ("lpips", Osp, Rejected(NO_DISC)),
];

/// `--Foo-Bar` → `foo_bar`.
pub fn normalise(name: &str) -> String {
    name.trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('-', "_")
}

pub fn alias(name: &str) -> Option<(Tool, Alias)> {
    let n = normalise(name);
    ALIASES
        .iter()
        .find(|(a, ..)| *a == n)
        .map(|(_, tool, alias)| (*tool, *alias))
}

/// One key the schema accepts, with its (resolved) schema.
#[derive(Debug, Clone)]
pub struct SchemaKey {
    pub path: String,
    pub schema: Json,
}

impl SchemaKey {
    pub fn description(&self) -> Option<&str> {
        self.schema.get("description").and_then(Json::as_str)
    }
}

/// Every key (top level and one level down) the schema accepts for `job`: the common
/// sections plus that job's `model`/`data` branch.
pub fn schema_keys(schema: &Json, job: Option<&str>) -> Vec<SchemaKey> {
    let defs = &schema["definitions"];
    let resolve = |s: &Json| -> Json {
        match crate::config::schema::field_reference(s) {
            Some(name) => {
                let mut d = defs[name].clone();
                // A field's own doc comment wins over its type's.
                if let (Some(obj), Some(desc)) = (d.as_object_mut(), s.get("description")) {
                    obj.insert("description".into(), desc.clone());
                }
                d
            }
            None => s.clone(),
        }
    };
    let mut keys = Vec::new();
    let Some(props) = schema["properties"].as_object() else {
        return keys;
    };
    for (k, p) in props {
        if k == "derived" {
            continue;
        }
        keys.push(SchemaKey {
            path: k.clone(),
            schema: resolve(p),
        });
        let section = match (
            k.as_str(),
            job.and_then(crate::config::types::JobKind::parse),
        ) {
            ("model" | "data", Some(job)) => {
                let (model, data) = job.section_schema_names();
                defs[if k == "model" { model } else { data }].clone()
            }
            _ => resolve(p),
        };
        if let Some(sub) = section["properties"].as_object() {
            keys.extend(sub.iter().map(|(s, p)| SchemaKey {
                path: format!("{k}.{s}"),
                schema: resolve(p),
            }));
        }
    }
    keys
}

/// Just the paths of [`schema_keys`].
pub fn known_keys(schema: &Json, job: Option<&str>) -> Vec<String> {
    schema_keys(schema, job)
        .into_iter()
        .map(|k| k.path)
        .collect()
}

/// Help text for an unknown key `leaf` inside `parent` (dotted, `""` for the top level).
pub fn unknown_key_help(parent: &str, leaf: &str, known: &[String]) -> Option<String> {
    let path = if parent.is_empty() {
        leaf.to_string()
    } else {
        format!("{parent}.{leaf}")
    };
    let path = path.as_str();
    // `train.epochs: 3` written as one key with a dot in it.
    if let Some((head, tail)) = leaf.split_once('.')
        && known.iter().any(|k| k == path)
    {
        return Some(format!(
            "`{leaf}` is one key with a dot in its name; nest it: `{head}:` with `{tail}:` indented below"
        ));
    }
    if let Some((tool, alias)) = alias(leaf) {
        return Some(match alias {
            Key(target, note) => {
                let note = note.map(|n| format!("; {n}")).unwrap_or_default();
                format!(
                    "did you mean `{target}`? (`{leaf}` is {}'s name for it{note})",
                    tool.name()
                )
            }
            Rejected(reason) => format!("`{leaf}` ({}) is not supported: {reason}", tool.name()),
        });
    }
    // The same key in another section (`train.lr` → `optimizer.lr`).
    if let Some(k) = known
        .iter()
        .find(|k| k.rsplit('.').next() == Some(leaf) && k.as_str() != path)
    {
        return Some(format!("did you mean `{k}`?"));
    }
    // Closest spelling among the siblings, then among all keys.
    let siblings: Vec<&String> = known
        .iter()
        .filter(|k| match k.rfind('.') {
            Some(i) => &k[..i] == parent,
            None => parent.is_empty(),
        })
        .collect();
    let best = |cands: &[&String]| -> Option<String> {
        cands
            .iter()
            .map(|k| {
                (
                    strsim::jaro_winkler(leaf, k.rsplit('.').next().unwrap_or(k)),
                    *k,
                )
            })
            .filter(|(score, _)| *score >= 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k.clone())
    };
    let all: Vec<&String> = known.iter().collect();
    if let Some(k) = best(&siblings).or_else(|| best(&all)) {
        return Some(format!("did you mean `{k}`?"));
    }
    let choices: Vec<&str> = siblings
        .iter()
        .map(|k| k.rsplit('.').next().unwrap_or(k))
        .collect();
    if choices.is_empty() {
        None
    } else {
        Some(format!(
            "`{}` takes: {}",
            if parent.is_empty() {
                "the top level"
            } else {
                parent
            },
            choices.join(", ")
        ))
    }
}

/// Closest allowed value for an enum, for "did you mean".
pub fn closest_value<'a>(given: &str, options: &'a [String]) -> Option<&'a str> {
    let g = normalise(given);
    options
        .iter()
        .map(|o| (strsim::jaro_winkler(&g, &normalise(o)), o.as_str()))
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::experiment_schema;
    use crate::config::types::JobKind;

    fn all_known() -> Vec<String> {
        let schema = experiment_schema().to_value();
        let mut keys: Vec<String> = JobKind::ALL
            .iter()
            .flat_map(|j| known_keys(&schema, Some(j.as_str())))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn every_alias_target_exists() {
        let known = all_known();
        for (name, _, alias) in ALIASES {
            if let Key(target, _) = alias {
                assert!(
                    known.iter().any(|k| k == target),
                    "alias `{name}` points at unknown key `{target}`"
                );
            }
        }
    }

    #[test]
    fn no_alias_twice() {
        let mut names: Vec<&str> = ALIASES.iter().map(|(n, ..)| *n).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate alias");
    }

    #[test]
    fn seed_names_suggest_runner_keys() {
        let known = all_known();
        let help = unknown_key_help("train", "accum_iter", &known).unwrap();
        assert!(
            help.contains("`train.grad_accum_steps`") && help.contains("MAE"),
            "{help}"
        );
        let help = unknown_key_help("optimizer", "blr", &known).unwrap();
        assert!(help.contains("`optimizer.base_lr`"), "{help}");
        let help = unknown_key_help("", "per_device_train_batch_size", &known).unwrap();
        assert!(help.contains("`train.per_device_batch_size`"), "{help}");
        let help = unknown_key_help("", "jit_level", &known).unwrap();
        assert!(
            help.contains("not supported") && help.contains("graph"),
            "{help}"
        );
        let help = unknown_key_help("", "--lr-decay-style", &known).unwrap();
        assert!(help.contains("`scheduler.style`"), "{help}");
    }

    #[test]
    fn typos_suggest_the_closest_key() {
        let known = all_known();
        assert_eq!(
            unknown_key_help("train", "epoch", &known).unwrap(),
            "did you mean `train.epochs`?"
        );
        assert!(
            unknown_key_help("train", "lr", &known)
                .unwrap()
                .starts_with("did you mean `optimizer.lr`?")
        );
        assert_eq!(
            unknown_key_help("", "optimzer", &known).unwrap(),
            "did you mean `optimizer`?"
        );
        let help = unknown_key_help("", "train.epochs", &known).unwrap();
        assert!(help.contains("nest it"), "{help}");
    }

    #[test]
    fn closest_enum_value() {
        let opts: Vec<String> = ["constant", "linear", "cosine", "inverse_sqrt", "wsd"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            closest_value("inverse-square-root", &opts),
            Some("inverse_sqrt")
        );
        assert_eq!(closest_value("cosin", &opts), Some("cosine"));
        assert_eq!(closest_value("zzz", &opts), None);
    }
}
