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
