//! Hugging Face BERT checkpoint directories (`model.pretrained`): `config.json` gives the
//! sizes, `model.safetensors` the weights, and the directory's tokenizer the vocabulary.
//!
//! Tensor names map onto ours by three renames (`bert.` prefix dropped, `LayerNorm` →
//! `layer_norm`, `attention.self` → `attention.self_attn`); burn-store's PyTorch adapter
//! transposes linear weights and renames LayerNorm `weight`/`bias` to `gamma`/`beta`.
//! The classifier is new (as in `from_pretrained` for a classification head); any other
//! tensor of ours that the checkpoint lacks is an error naming it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde::Deserialize;

use super::model::{BertClassifier, BertShape};
use crate::train::checkpoint::list_or_none;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";

/// The keys of a Hugging Face `BertConfig` that runner uses.
#[derive(Debug, Deserialize)]
pub struct HfBertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Reads and checks `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<HfBertConfig> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "model.pretrained: cannot read `{}`; a Hugging Face checkpoint directory holds \
             config.json, model.safetensors and a tokenizer",
            path.display()
        )
    })?;
    let cfg: HfBertConfig = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a BERT config", path.display()))?;
    if let Some(t) = &cfg.model_type
        && t != "bert"
    {
        bail!(
            "`{}`: model_type `{t}` is not supported; model.pretrained reads BERT checkpoints (model_type: bert)",
            path.display()
        );
    }
    if cfg.hidden_act != "gelu" {
        bail!(
            "`{}`: hidden_act `{}` is not supported (runner's BERT uses exact GELU, `gelu`)",
            path.display(),
            cfg.hidden_act
        );
    }
    if let Some(p) = &cfg.position_embedding_type
        && p != "absolute"
    {
        bail!(
            "`{}`: position_embedding_type `{p}` is not supported (only `absolute`)",
            path.display()
        );
    }
    Ok(cfg)
}

pub fn weights_path(dir: &Path) -> PathBuf {
    dir.join(WEIGHTS)
}

/// Loads the encoder and pooler weights of `dir` into `model`; the classifier keeps its
/// fresh initialisation.
pub fn load(model: &mut BertClassifier, dir: &Path) -> Result<()> {
    let path = weights_path(dir);
    if !path.is_file() {
        bail!(
            "model.pretrained: `{}` is missing (only safetensors checkpoints are read; convert a \
             pytorch_model.bin with `transformers` `save_pretrained(safe_serialization=True)`)",
            path.display()
        );
    }
    let mut store = SafetensorsStore::from_file(&path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"^bert\.", "")
        .with_key_remapping(r"\.LayerNorm\.", ".layer_norm.")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.starts_with("classifier."))
        .collect();
    if !missing.is_empty() || !result.errors.is_empty() {
        bail!(
            "`{}` does not fit the model: missing {}{}",
            path.display(),
            list_or_none(&missing),
            if result.errors.is_empty() {
                String::new()
            } else {
                format!("; mismatched: {:?}", result.errors)
            }
        );
    }
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|p| !p.ends_with("position_ids"))
        .collect();
    tracing::info!(
        "loaded {} tensors from {}; new: the classifier{}",
        result.applied.len(),
        path.display(),
        if unused.is_empty() {
            String::new()
        } else {
            format!("; not used: {}", list_or_none(&unused))
        }
    );
    Ok(())
}

impl HfBertConfig {
    pub fn shape(&self, num_labels: usize, dropout: Option<f64>) -> BertShape {
        BertShape {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
            dropout: dropout.unwrap_or(self.hidden_dropout_prob),
            num_labels,
        }
    }
}
