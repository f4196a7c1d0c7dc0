//! What `runner plan` needs of a job, read as cheaply as counting allows: how many training
//! examples there are, the model's parameters and one sample's cost. Nothing is decoded that
//! counting does not need (held-out images and clips are left alone; an IDX file's header gives
//! its count) and no model is built, so a plan of an ImageNet-sized run takes a moment.
//!
//! Invariant: the count is the one the trainer divides into steps (`Job::train_len` of the job
//! `prepare` would build): each job's `count_train` shares its hold-out rule with its `new`,
//! and the text job, whose rows are filtered by label and whose cost depends on the longest
//! tokenized sequence, is prepared in full.
//!
//! Where the training data does not exist on this machine (planning a cluster run from a
//! laptop), `data.num_examples` stands in for the count, and what the figures then assume is
//! said in `notes`.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::cost::SampleCost;
use super::{causal_vae, mae, text};
use crate::config::types::{DataConfig, Experiment, ModelConfig};
use crate::error::Help;

/// How the training examples were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    /// By the job's own code, as training will count them.
    Data,
    /// `data.num_examples`: the data is not on this machine.
    Given,
}

pub struct Sizing {
    pub examples: usize,
    pub counted: Counted,
    pub params: u64,
    pub cost: SampleCost,
    /// What the figures assume, or where the data and `data.num_examples` disagree.
    pub notes: Vec<String>,
}

/// The training data's key, path and `data.num_examples`.
fn training_data(exp: &Experiment) -> (&'static str, &str, Option<u64>) {
    match &exp.data {
        DataConfig::Mae(d) => ("data.path", &d.path, d.num_examples),
        DataConfig::TextClassification(d) => ("data.train_file", &d.train_file, d.num_examples),
        DataConfig::CausalVae(d) => ("data.video_path", &d.video_path, d.num_examples),
    }
}

/// Why `exp` cannot be planned here: its training data does not exist on this machine and
/// `data.num_examples` does not stand in for it (a configuration error: exit 2).
pub fn unplannable(exp: &Experiment) -> Option<Help> {
    let (key, path, given) = training_data(exp);
    (!Path::new(path).exists() && given.is_none()).then(|| Help {
        message: format!(
            "{key} `{path}` does not exist on this machine, so the training examples cannot be \
             counted"
        ),
        help: "set data.num_examples to the training set's size (e.g. `runner plan … \
               data.num_examples=392702`) to plan without the data"
            .into(),
    })
}

/// The sizing of `exp`'s job; an error names a training set that is missing without
/// `data.num_examples` ([`unplannable`]), or one that exists but cannot be used (as training
/// would).
pub fn sizing(exp: &Experiment) -> Result<Sizing> {
    if let Some(help) = unplannable(exp) {
        return Err(help.into());
    }
    let (key, path, given) = training_data(exp);
    let mut notes = Vec::new();
    if let Some(n) = given.filter(|_| !Path::new(path).exists()) {
        notes.push(format!(
            "{key} `{path}` does not exist here: data.num_examples = {n} is taken as the \
             training set's size"
        ));
        let (params, cost) = match (&exp.model, &exp.data) {
            (ModelConfig::Mae(m), DataConfig::Mae(d)) => mae::job::cost_of(m, d),
            (ModelConfig::CausalVae(m), DataConfig::CausalVae(d)) => causal_vae::job::cost_of(m, d),
            (ModelConfig::TextClassification(m), DataConfig::TextClassification(d)) => {
                let (params, cost, assumed) = text::job::cost_without_data(m, d)?;
                notes.extend(assumed);
                (params, cost)
            }
            _ => unreachable!("the loader builds model and data from the same `job`"),
        };
        return Ok(Sizing {
            examples: n as usize,
            counted: Counted::Given,
            params,
            cost,
            notes,
        });
    }
    let (examples, params, cost) = match (&exp.model, &exp.data) {
        (ModelConfig::Mae(m), DataConfig::Mae(d)) => {
            let (params, cost) = mae::job::cost_of(m, d);
            (mae::job::count_train(d)?, params, cost)
        }
        (ModelConfig::CausalVae(m), DataConfig::CausalVae(d)) => {
            let (params, cost) = causal_vae::job::cost_of(m, d);
            (causal_vae::job::count_train(d)?, params, cost)
        }
        (ModelConfig::TextClassification(m), DataConfig::TextClassification(d)) => {
            let job = text::TextJob::new(m, d)?;
            (
                crate::train::job::Job::train_len(&job),
                job.num_params(),
                job.cost(),
            )
        }
        _ => unreachable!("the loader builds model and data from the same `job`"),
    };
    if let Some(n) = given.filter(|&n| n != examples as u64) {
        notes.push(format!(
            "data.num_examples is {n} but {key} has {examples} training examples: the data's \
             count is used"
        ));
    }
    Ok(Sizing {
        examples,
        counted: Counted::Data,
        params,
        cost,
        notes,
    })
}
