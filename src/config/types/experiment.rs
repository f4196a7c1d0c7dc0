use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// One experiment: what to train, on what data, with which optimisation recipe and hardware.
///
/// Values come from five layers, lowest to highest: built-in defaults, profiles
/// (`presets/*.toml`), the experiment file, `RUNNER_<SECTION>__<KEY>` environment variables,
/// and the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner experiment", transform = crate::config::schema::add_job_branches)]
pub struct Experiment {
    /// Name of the experiment (MAE/Open-Sora-Plan `--exp_name`). Used for `{name}` in
    /// `output_dir`; letters, digits, `.`, `_` and `-` only.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), length(max = 200))]
    pub name: String,

    /// Free-text description of the experiment.
    #[serde(default)]
    pub description: Option<String>,

    /// What is trained: `mae` (masked-autoencoder image pretraining), `text_classification`
    /// (BERT-style sentence-pair classification such as MNLI) or `causal_vae` (CausalVAE video
    /// autoencoder). It decides which keys `model` and `data` take.
    pub job: JobKind,

    /// Seed for every random choice: initialisation, data order, augmentation, masking.
    #[serde(default = "defaults::seed")]
    pub seed: u64,

    /// Where the run directory goes. Placeholders: `{name}`, `{job}`, `{timestamp}`
    /// (UTC, `YYYYmmdd-HHMMSS`).
    #[serde(default = "defaults::output_dir")]
    #[schemars(length(min = 1))]
    pub output_dir: String,

    /// Continue a killed run: a checkpoint path, or `auto` for the newest checkpoint in
    /// `output_dir` (starting fresh when there is none).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub resume: Option<String>,

    /// Initialise model weights (only weights: no optimizer, step or data position) from a
    /// safetensors file (Open-Sora-Plan `--load_from_checkpoint`, HF `--model_name_or_path`).
    /// When `resume` finds a checkpoint, the checkpoint wins.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub init_from: Option<String>,

    /// Profiles (names from `presets/` or paths) applied below this file when the command
    /// line names none with `--profile`.
    #[serde(default)]
    pub profile: Vec<String>,

    /// Base files this one builds on, relative to this file (YAML or TOML): their values
    /// merge below this file's and above the profiles, left to right, and they may extend
    /// bases of their own. A base may leave out `name` and `job`. The run directory keeps
    /// the merged result, not this key.
    #[serde(default, skip_serializing)]
    #[schemars(extend("default" = null))]
    pub extends: Option<Extends>,

    /// Several runs of this experiment, one per combination of values: `runner sweep` runs
    /// them, each in its own run directory under `output_dir` (`runner run` refuses a file
    /// with a sweep). The run directories keep each cell's values, not this key.
    #[serde(default, skip_serializing)]
    #[schemars(extend("default" = null))]
    pub sweep: Option<SweepConfig>,

    /// Model architecture; its keys depend on `job`. Optional: every key has a default.
    /// (Always present after loading: the loader fills it in from `job`.)
    pub model: ModelConfig,

    /// Training and validation data; its keys depend on `job`.
    pub data: DataConfig,

    /// Data loading.
    #[serde(default)]
    pub loader: LoaderConfig,

    /// Batch sizes, length of training, gradient handling.
    #[serde(default)]
    pub train: TrainConfig,

    /// Optimizer and learning rate.
    #[serde(default)]
    pub optimizer: OptimizerConfig,

    /// Learning-rate schedule.
    #[serde(default)]
    pub scheduler: SchedulerConfig,

    /// Numeric precision of training.
    #[serde(default)]
    pub precision: PrecisionConfig,

    /// When and how to evaluate.
    #[serde(default)]
    pub eval: EvalConfig,

    /// When to save checkpoints and how many to keep.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,

    /// Metrics and logs.
    #[serde(default)]
    pub logging: LoggingConfig,

    /// Backend, device and process layout.
    #[serde(default)]
    pub hardware: HardwareConfig,

    /// Computed values printed by `runner show`. Never set by users: when present (a `show`
    /// output fed back) it is ignored and recomputed.
    #[serde(default, skip_serializing)]
    #[schemars(extend("readOnly" = true))]
    pub derived: Option<serde_json::Value>,
}

/// `extends: base.yaml` or `extends: [a.yaml, b.toml]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Extends {
    One(String),
    Many(Vec<String>),
}

pub(crate) mod defaults {
    pub fn seed() -> u64 {
        42
    }
    pub fn output_dir() -> String {
        "runs/{name}".into()
    }
}
