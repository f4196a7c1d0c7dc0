//! The jobs: what is trained. Each implements `train::job::Job`; this is the one place that
//! maps `job:` to its implementation.

pub mod text;

use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use crate::config::types::{DataConfig, Experiment, JobKind, ModelConfig};
use crate::train::trainer::{self, Settings, Summary};

/// A job with its data read and checked, ready to train.
pub enum Ready {
    Text(Arc<text::TextJob>),
}

/// Whether this build can train `job` (asked before anything is written).
pub fn supported(job: JobKind) -> Result<(), String> {
    match job {
        JobKind::TextClassification => Ok(()),
        JobKind::Mae | JobKind::CausalVae => Err(format!(
            "the `{job}` job is not implemented in this runner build yet (only \
             `text_classification` trains); `runner validate` and `runner run --dry-run` \
             still check its configuration"
        )),
    }
}

/// Settings the engine does not implement yet, refused before anything runs rather than
/// silently ignored.
pub fn unsupported_settings(exp: &Experiment) -> Result<(), String> {
    if exp.train.auto_find_batch_size {
        return Err(
            "train.auto_find_batch_size is not implemented by runner's engine yet (the \
                    CPU backend gives no out-of-memory signal to react to); set it to false and \
                    choose train.per_device_batch_size"
                .into(),
        );
    }
    if exp.train.gradient_checkpointing {
        return Err(
            "train.gradient_checkpointing is not implemented by runner's engine yet \
                    (burn-flex keeps all activations); set it to false, or lower \
                    train.per_device_batch_size and raise train.grad_accum_steps to save memory"
                .into(),
        );
    }
    Ok(())
}

/// Reads and prepares the job's data (and tokenizer, pretrained config, …).
pub fn prepare(exp: &Experiment) -> Result<Ready> {
    if let Err(why) = supported(exp.job) {
        bail!(why);
    }
    match (&exp.model, &exp.data) {
        (ModelConfig::TextClassification(m), DataConfig::TextClassification(d)) => {
            Ok(Ready::Text(Arc::new(text::TextJob::new(m, d)?)))
        }
        _ => bail!(
            "the `{}` job is not implemented in this runner build yet",
            exp.job
        ),
    }
}

impl Ready {
    pub fn train(self, settings: &Settings, device: &Device) -> Result<Summary> {
        match self {
            Ready::Text(job) => trainer::train(job, settings, device),
        }
    }
}
