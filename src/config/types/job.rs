//! Job-specific sections: `model` and `data` take different keys for each `job`.
//!
//! In files they sit untagged next to `job` (`job: mae` + `model: {mask_ratio: 0.75}`).
//! The loader wraps them as `{mae: {...}}` before typed deserialization
//! (`config::loader::tag_job_sections`), so serde's externally tagged enums pick the right
//! struct and `deny_unknown_fields` stays exact; they serialize back untagged. The schema
//! selects them with one `if job == … then …` branch per job (`config::schema`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize, Serializer};

/// What is trained.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum JobKind {
    Mae,
    TextClassification,
    CausalVae,
}

impl JobKind {
    pub const ALL: &[JobKind] = <JobKind as strum::VariantArray>::VARIANTS;

    /// The name used in files (`job: text_classification`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        s.parse().ok()
    }

    /// Names of the schema definitions of this job's `model` and `data` sections.
    pub fn section_schema_names(self) -> (&'static str, &'static str) {
        match self {
            JobKind::Mae => ("MaeModel", "MaeData"),
            JobKind::TextClassification => ("TextModel", "TextData"),
            JobKind::CausalVae => ("CausalVaeModel", "CausalVaeData"),
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! job_section {
    ($(#[$meta:meta])* $name:ident { $($variant:ident($ty:ty)),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant($ty)),* }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $($name::$variant(v) => v.serialize(s)),* }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                // Register every job's section so the `if job == … then` branches can $ref it;
                // the keys themselves are checked in those branches.
                $(let _ = generator.subschema_for::<$ty>();)*
                json_schema!({ "type": "object" })
            }
        }
    };
}

job_section!(
    /// `model`, by job.
    ModelConfig { Mae(MaeModel), TextClassification(TextModel), CausalVae(CausalVaeModel) }
);
job_section!(
    /// `data`, by job.
    DataConfig { Mae(MaeData), TextClassification(TextData), CausalVae(CausalVaeData) }
);

impl ModelConfig {
    pub fn job(&self) -> JobKind {
        match self {
            ModelConfig::Mae(_) => JobKind::Mae,
            ModelConfig::TextClassification(_) => JobKind::TextClassification,
            ModelConfig::CausalVae(_) => JobKind::CausalVae,
        }
    }
}

impl DataConfig {
    pub fn job(&self) -> JobKind {
        match self {
            DataConfig::Mae(_) => JobKind::Mae,
            DataConfig::TextClassification(_) => JobKind::TextClassification,
            DataConfig::CausalVae(_) => JobKind::CausalVae,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mae

/// Architecture presets of the MAE paper, plus small sizes that train on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaeArch {
    MaeVitHugePatch14,
    MaeVitLargePatch16,
    MaeVitBasePatch16,
    MaeVitTinyPatch16,
    MaeVitTinyPatch4,
}

/// `model` for `job: mae`: a ViT encoder over the visible patches and a light decoder that
/// predicts the pixels of the masked ones (MAE `main_pretrain.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaeModel {
    /// Size preset (MAE `--model`): `mae_vit_base_patch16`, `mae_vit_large_patch16`,
    /// `mae_vit_huge_patch14` as in the paper; `mae_vit_tiny_patch16` and
    /// `mae_vit_tiny_patch4` (28–64 px images) for CPUs. The size keys below override it.
    #[serde(default = "mae_defaults::arch")]
    pub arch: MaeArch,
    /// Fraction of patches hidden from the encoder (MAE `--mask_ratio`).
    #[serde(default = "mae_defaults::mask_ratio")]
    #[schemars(extend("exclusiveMinimum" = 0.0, "exclusiveMaximum" = 1.0))]
    pub mask_ratio: f64,
    /// Normalise each target patch by its own mean and variance (MAE `--norm_pix_loss`).
    #[serde(default)]
    pub norm_pix_loss: bool,
    /// Side of a square patch in pixels (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub patch_size: Option<u32>,
    /// Encoder width (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub embed_dim: Option<u32>,
    /// Encoder blocks (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub depth: Option<u32>,
    /// Encoder attention heads; must divide `embed_dim` (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_heads: Option<u32>,
    /// Decoder width (default from `arch`: 512 for the paper's sizes).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub decoder_embed_dim: Option<u32>,
    /// Decoder blocks (default from `arch`: 8 for the paper's sizes).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub decoder_depth: Option<u32>,
    /// Decoder attention heads; must divide `decoder_embed_dim` (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub decoder_num_heads: Option<u32>,
}

mod mae_defaults {
    pub fn arch() -> super::MaeArch {
        super::MaeArch::MaeVitLargePatch16
    }
    pub fn mask_ratio() -> f64 {
        0.75
    }
}

/// `data` for `job: mae`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaeData {
    /// Image folder in ImageNet layout (`<path>/<class>/<image>`, searched recursively; class
    /// names are ignored) or a folder/file of IDX images (`*-images-idx3-ubyte[.gz]`)
    /// (MAE `--data_path`).
    #[schemars(length(min = 1))]
    pub path: String,
    /// Side of the square training crop in pixels; a multiple of `model.patch_size`
    /// (MAE `--input_size`).
    #[serde(default = "mae_data_defaults::input_size")]
    #[schemars(range(min = 1))]
    pub input_size: u32,
    /// Held-out images for the reconstruction loss and the sample grid (same formats as
    /// `path`, e.g. Fashion-MNIST's `t10k-images-idx3-ubyte.gz`). When absent, `eval_images`
    /// images spread evenly over `path` are held out and not trained on.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub eval_path: Option<String>,
    /// Held-out images evaluated at each `eval`, spread evenly over the held-out set (each with
    /// its own fixed mask, so evaluations are comparable).
    #[serde(default = "mae_data_defaults::eval_images")]
    #[schemars(range(min = 1))]
    pub eval_images: u32,
    /// Held-out images shown in the reconstruction grid written at each `eval`
    /// (`samples/step-N.png`: original | masked | reconstruction | reconstruction with the
    /// visible patches pasted back); 0 writes none.
    #[serde(default = "mae_data_defaults::grid_images")]
    pub grid_images: u32,
    /// Training examples, for `runner plan` where the data cannot be read (planning a cluster
    /// run from a laptop). Where it can, the data is counted and this is only compared with
    /// the count; training always counts the data itself.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_examples: Option<u64>,
}

mod mae_data_defaults {
    pub fn input_size() -> u32 {
        224
    }
    pub fn eval_images() -> u32 {
        256
    }
    pub fn grid_images() -> u32 {
        8
    }
}

// ---------------------------------------------------------------------------------------------
// text_classification

/// BERT sizes (Google's BERT and its miniatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BertArch {
    #[serde(rename = "bert-tiny")]
    Tiny,
    #[serde(rename = "bert-mini")]
    Mini,
    #[serde(rename = "bert-small")]
    Small,
    #[serde(rename = "bert-medium")]
    Medium,
    #[serde(rename = "bert-base")]
    Base,
    #[serde(rename = "bert-large")]
    Large,
}

/// `model` for `job: text_classification`: a BERT encoder with a classification head on the
/// `[CLS]` token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextModel {
    /// Size preset: `bert-tiny` (2 layers, 128 wide), `bert-mini` (4, 256), `bert-small`
    /// (4, 512), `bert-medium` (8, 512), `bert-base` (12, 768), `bert-large` (24, 1024).
    /// The size keys below override it.
    #[serde(default = "text_defaults::arch")]
    pub arch: BertArch,
    /// Number of classes (default from `data.task`: 3 for MNLI's entailment, neutral and
    /// contradiction, 2 for the other GLUE classification tasks).
    #[serde(default)]
    #[schemars(range(min = 2))]
    pub num_labels: Option<u32>,
    /// Width of the encoder (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub hidden_size: Option<u32>,
    /// Transformer layers (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_layers: Option<u32>,
    /// Attention heads; must divide `hidden_size` (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_heads: Option<u32>,
    /// Width of the feed-forward layer (default from `arch`: 4 × `hidden_size`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub intermediate_size: Option<u32>,
    /// Longest sequence the position embeddings cover; at least `data.max_seq_length`
    /// (default from `arch`: 512).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_position_embeddings: Option<u32>,
    /// Dropout probability of hidden states and attention (default from `arch`: 0.1, or the
    /// checkpoint's `hidden_dropout_prob`).
    #[serde(default)]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub dropout: Option<f64>,
    /// A Hugging Face BERT checkpoint directory (`config.json`, `model.safetensors`, and
    /// `tokenizer.json` or `vocab.txt`), or a Hub id (`google-bert/bert-base-uncased`,
    /// `org/name@revision`) found in the local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`,
    /// `~/.cache/huggingface/hub`; nothing is downloaded), to fine-tune from (HF
    /// `model_name_or_path`). Its
    /// `config.json` sets the sizes (then `arch` and the size keys are not used), its weights
    /// initialise the encoder and pooler (the classifier starts fresh), and its tokenizer is
    /// used unless `data.tokenizer` names another.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub pretrained: Option<String>,
}

mod text_defaults {
    pub fn arch() -> super::BertArch {
        super::BertArch::Base
    }
}

/// GLUE classification tasks (the names of `run_glue.py --task_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextTask {
    Mnli,
    Qnli,
    Rte,
    Wnli,
    Mrpc,
    Qqp,
    Sst2,
    Cola,
}

impl TextTask {
    /// Classes of the task's labels.
    pub fn num_labels(self) -> u32 {
        match self {
            TextTask::Mnli => 3,
            _ => 2,
        }
    }
}

/// `data` for `job: text_classification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextData {
    /// Task, which fixes the text columns and the label names (`run_glue.py --task_name`).
    #[serde(default = "text_data_defaults::task")]
    pub task: TextTask,
    /// Training examples (JSON lines, CSV or TSV with the task's columns).
    #[schemars(length(min = 1))]
    pub train_file: String,
    /// Held-out files to evaluate on (MNLI: matched and mismatched).
    #[serde(default)]
    pub validation_files: Vec<String>,
    /// WordPiece vocabulary (`vocab.txt`), a Hugging Face `tokenizer.json`, a directory
    /// holding either, or a Hub id in the local Hugging Face cache (as `model.pretrained`).
    /// Required unless `model.pretrained` supplies the tokenizer.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub tokenizer: Option<String>,
    /// Longer inputs are truncated, shorter ones padded (`run_glue.py --max_seq_length`).
    #[serde(default = "text_data_defaults::max_seq_length")]
    #[schemars(range(min = 8))]
    pub max_seq_length: u32,
    /// Training examples, for `runner plan` where the data cannot be read (planning a cluster
    /// run from a laptop). Where it can, the data is counted and this is only compared with
    /// the count; training always counts the data itself.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_examples: Option<u64>,
}

mod text_data_defaults {
    pub fn task() -> super::TextTask {
        super::TextTask::Mnli
    }
    pub fn max_seq_length() -> u32 {
        128
    }
}

// ---------------------------------------------------------------------------------------------
// causal_vae

/// CausalVAE presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CausalVaeArch {
    #[serde(rename = "causal_vae_488")]
    CausalVae488,
    #[serde(rename = "causal_vae_488_tiny")]
    CausalVae488Tiny,
}

/// Reconstruction term of the CausalVAE loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReconstructionLoss {
    L1,
    Mse,
}

/// `model` for `job: causal_vae`: causal 3-D convolutional VAE (Open-Sora-Plan CausalVAE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CausalVaeModel {
    /// Size preset: `causal_vae_488` (Open-Sora-Plan's 4×8×8 layout, 128 base channels) or
    /// `causal_vae_488_tiny` (same compression, 16 base channels, for CPUs).
    #[serde(default = "vae_defaults::arch")]
    pub arch: CausalVaeArch,
    /// Channels of the latent (default from `arch`: 4).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub latent_channels: Option<u32>,
    /// Channels of the first encoder stage (default from `arch`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub base_channels: Option<u32>,
    /// Frames per latent frame after the first (default from `arch`: 4); `data.num_frames`
    /// must be 1 + a multiple of it.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub temporal_compression: Option<u32>,
    /// Pixels per latent pixel along each side (default from `arch`: 8); `data.resolution`
    /// must be a multiple of it.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub spatial_compression: Option<u32>,
    /// Weight of the KL term against the reconstruction term.
    #[serde(default = "vae_defaults::kl_weight")]
    #[schemars(range(min = 0.0))]
    pub kl_weight: f64,
    /// Reconstruction term: `l1` or `mse`.
    #[serde(default = "vae_defaults::reconstruction_loss")]
    pub reconstruction_loss: ReconstructionLoss,
}

mod vae_defaults {
    pub fn arch() -> super::CausalVaeArch {
        super::CausalVaeArch::CausalVae488
    }
    pub fn kl_weight() -> f64 {
        1e-6
    }
    pub fn reconstruction_loss() -> super::ReconstructionLoss {
        super::ReconstructionLoss::L1
    }
}

/// `data` for `job: causal_vae`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CausalVaeData {
    /// Folder of clips searched recursively (UCF101 layout), a folder of frame folders, or a
    /// text file listing clip paths (Open-Sora-Plan `--video_path`).
    #[schemars(length(min = 1))]
    pub video_path: String,
    /// Frames per training clip: 1 + a multiple of `model.temporal_compression`
    /// (Open-Sora-Plan `--video_num_frames`).
    #[serde(default = "vae_data_defaults::num_frames")]
    #[schemars(range(min = 1))]
    pub num_frames: u32,
    /// Frames are resized on the short side and centre-cropped to this square size; a
    /// multiple of `model.spatial_compression` (`--resolution`).
    #[serde(default = "vae_data_defaults::resolution")]
    #[schemars(range(min = 1))]
    pub resolution: u32,
    /// Take every `sample_rate`-th frame (`--sample_rate`; 1 keeps every frame).
    #[serde(default = "vae_data_defaults::sample_rate")]
    #[schemars(range(min = 1))]
    pub sample_rate: u32,
    /// Held-out clips (a folder or list file, like `video_path`). Without it, `eval_clips`
    /// clips spread over `video_path` are held out and not trained on.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub eval_path: Option<String>,
    /// How many held-out clips to evaluate (reconstruction PSNR on each one's centred window).
    #[serde(default = "vae_data_defaults::eval_clips")]
    #[schemars(range(min = 1))]
    pub eval_clips: u32,
    /// Held-out clips shown at each evaluation, input over reconstruction, in
    /// `samples/step-N.gif` and `samples/step-N.png` (0: none).
    #[serde(default = "vae_data_defaults::preview_clips")]
    pub preview_clips: u32,
    /// Memory for decoded clips (MiB), so that later windows of a clip skip FFmpeg; the oldest
    /// go first when it is full (0: decode every time). Frame folders are never cached.
    #[serde(default = "vae_data_defaults::decoded_cache_mb")]
    pub decoded_cache_mb: u32,
    /// Training examples, for `runner plan` where the data cannot be read (planning a cluster
    /// run from a laptop). Where it can, the data is counted and this is only compared with
    /// the count; training always counts the data itself.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_examples: Option<u64>,
}

mod vae_data_defaults {
    pub fn num_frames() -> u32 {
        17
    }
    pub fn resolution() -> u32 {
        256
    }
    pub fn sample_rate() -> u32 {
        1
    }
    pub fn eval_clips() -> u32 {
        8
    }
    pub fn preview_clips() -> u32 {
        2
    }
    pub fn decoded_cache_mb() -> u32 {
        1024
    }
}
