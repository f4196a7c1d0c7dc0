//! `text_classification` as a [`Job`]: examples are read and tokenized once at start, batches
//! are padded to their longest member, the loss is cross-entropy, and every validation file
//! reports loss, accuracy and macro-F1.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;

use super::data::{Example, label_names, read_examples};
use super::model::{BertClassifier, BertInput, BertShape};
use super::pretrained;
use super::tokenize::{Encoded, TextTokenizer};
use crate::config::types::{TextData, TextModel};
use crate::jobs::cost::SampleCost;
use crate::train::job::{HeldOut, Job};
use crate::train::recompute::Stages;

pub struct TextJob {
    shape: BertShape,
    pretrained: Option<PathBuf>,
    pad_id: u32,
    train: Vec<Encoded>,
    train_labels: Vec<usize>,
    valid: Vec<ValidSet>,
}

struct ValidSet {
    name: String,
    encoded: Vec<Encoded>,
    labels: Vec<usize>,
}

/// A padded batch as host data.
pub struct TextBatch {
    batch: usize,
    seq: usize,
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
    attention_mask: Vec<f32>,
    labels: Vec<i64>,
}

impl TextJob {
    pub fn new(model: &TextModel, data: &TextData) -> Result<TextJob> {
        let (tokenizer_path, pretrained) = tokenizer_path(model, data)?;
        let max_len = data.max_seq_length as usize;
        let tokenizer = TextTokenizer::load(&tokenizer_path, max_len)?;
        let shape = model_shape(model, data, pretrained.as_deref(), tokenizer.vocab_size())?;
        if tokenizer.vocab_size() > shape.vocab_size {
            bail!(
                "the tokenizer `{}` has {} tokens but the model's vocabulary has {}; use the \
                 checkpoint's own tokenizer",
                tokenizer_path.display(),
                tokenizer.vocab_size(),
                shape.vocab_size
            );
        }
        let num_labels = shape.num_labels;

        let read = |path: &str| -> Result<(Vec<Encoded>, Vec<usize>)> {
            let (examples, report) = read_examples(Path::new(path), data.task)?;
            if report.skipped() > 0 {
                let by_label: Vec<String> = report
                    .skipped_labels
                    .iter()
                    .map(|(l, n)| format!("{n} × `{l}`"))
                    .collect();
                tracing::warn!(
                    "{path}: skipped {} rows whose label is not one of {:?}: {}",
                    report.skipped(),
                    label_names(data.task),
                    by_label.join(", ")
                );
            }
            let encoded = tokenizer
                .encode_all(&examples)
                .with_context(|| format!("cannot tokenize `{path}`"))?;
            Ok((
                encoded,
                examples.iter().map(|e: &Example| e.label).collect(),
            ))
        };
        let (train, train_labels) = read(&data.train_file)?;
        tracing::info!("{}: {} training examples", data.train_file, train.len());
        let mut valid = Vec::new();
        for file in &data.validation_files {
            let (encoded, labels) = read(file)?;
            let name = Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            tracing::info!(
                "{file}: {} examples; majority-class accuracy {:.4}",
                labels.len(),
                majority_accuracy(&labels, num_labels)
            );
            valid.push(ValidSet {
                name,
                encoded,
                labels,
            });
        }
        Ok(TextJob {
            shape,
            pretrained,
            pad_id: tokenizer.pad_id(),
            train,
            train_labels,
            valid,
        })
    }

    pub fn shape(&self) -> &BertShape {
        &self.shape
    }

    fn batch(&self, encoded: &[&Encoded], labels: &[usize]) -> TextBatch {
        let batch = encoded.len();
        let seq = encoded.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let mut out = TextBatch {
            batch,
            seq,
            input_ids: vec![i64::from(self.pad_id); batch * seq],
            token_type_ids: vec![0; batch * seq],
            attention_mask: vec![0.0; batch * seq],
            labels: labels.iter().map(|&l| l as i64).collect(),
        };
        for (row, e) in encoded.iter().enumerate() {
            for (col, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                out.input_ids[row * seq + col] = i64::from(id);
                out.token_type_ids[row * seq + col] = i64::from(ty);
                out.attention_mask[row * seq + col] = 1.0;
            }
        }
        out
    }

    /// One sample at the longest training sequence (a batch pads to its longest): what
    /// `runner plan` counts.
    pub fn cost(&self) -> SampleCost {
        let longest = self.train.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        self.shape.cost(longest)
    }

    /// Parameters, counted from the sizes.
    pub fn num_params(&self) -> u64 {
        self.shape.num_params()
    }

    fn logits(model: &BertClassifier, batch: &TextBatch, device: &Device) -> Tensor<2> {
        model.forward(&Self::input(batch, device))
    }

    fn input(batch: &TextBatch, device: &Device) -> BertInput {
        let shape = [batch.batch, batch.seq];
        let int =
            |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
        BertInput {
            input_ids: int(&batch.input_ids),
            token_type_ids: int(&batch.token_type_ids),
            attention_mask: Tensor::<2>::from_data(
                TensorData::new(batch.attention_mask.clone(), shape),
                device,
            ),
        }
    }
}

/// Where a path or Hugging Face id of `key` is on this machine (`config::hub`).
fn locate(key: &str, value: &str) -> Result<PathBuf> {
    crate::config::hub::locate(value)
        .map(|found| found.path().to_path_buf())
        .map_err(|why| anyhow::anyhow!("{key}: {why}"))
}

/// Where the tokenizer comes from (`data.tokenizer`, else the pretrained checkpoint), and the
/// checkpoint's folder; either may be a Hugging Face id in the local cache.
fn tokenizer_path(model: &TextModel, data: &TextData) -> Result<(PathBuf, Option<PathBuf>)> {
    let pretrained = model
        .pretrained
        .as_deref()
        .map(|p| locate("model.pretrained", p))
        .transpose()?;
    let path = match (&data.tokenizer, &pretrained) {
        (Some(t), _) => locate("data.tokenizer", t)?,
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("no tokenizer: set data.tokenizer or model.pretrained"),
    };
    Ok((path, pretrained))
}

/// The model's sizes: the pretrained checkpoint's `config.json` (in `pretrained`, found),
/// else `arch` and the size keys with a vocabulary of `vocab_size` (the tokenizer's).
fn model_shape(
    model: &TextModel,
    data: &TextData,
    pretrained: Option<&Path>,
    vocab_size: usize,
) -> Result<BertShape> {
    let num_labels = label_names(data.task).len();
    let shape = match pretrained {
        Some(dir) => {
            let cfg = pretrained::read_config(dir)?;
            check_explicit_sizes(model, &cfg)?;
            cfg.shape(num_labels, model.dropout)
        }
        None => {
            let dims = model.dims();
            BertShape {
                vocab_size,
                hidden_size: dims.hidden_size as usize,
                num_layers: dims.num_layers as usize,
                num_heads: dims.num_heads as usize,
                intermediate_size: dims.intermediate_size as usize,
                max_position_embeddings: dims.max_position_embeddings as usize,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                dropout: dims.dropout,
                num_labels,
            }
        }
    };
    if data.max_seq_length as usize > shape.max_position_embeddings {
        bail!(
            "data.max_seq_length {} exceeds the model's {} position embeddings",
            data.max_seq_length,
            shape.max_position_embeddings
        );
    }
    Ok(shape)
}

/// The vocabulary of Google's uncased English BERT, which `runner plan` assumes when neither
/// the tokenizer nor a pretrained checkpoint can be read.
const BERT_VOCAB: usize = 30522;

/// The model's parameters and one sample's cost where the training file cannot be read (for
/// `runner plan`): every sequence at `data.max_seq_length`, the longest a batch can be, and the
/// vocabulary from the tokenizer or the checkpoint when they can be read, else BERT's. The
/// notes say what was assumed.
pub fn cost_without_data(
    model: &TextModel,
    data: &TextData,
) -> Result<(u64, SampleCost, Vec<String>)> {
    let mut notes = vec![format!(
        "every sequence counted at data.max_seq_length = {} (an upper bound: a batch is padded \
         to its longest)",
        data.max_seq_length
    )];
    // The checkpoint (a folder or a Hub id in the local cache) when its config can be read.
    let checkpoint = model.pretrained.as_deref().and_then(|dir| {
        let found = locate("model.pretrained", dir)
            .ok()
            .filter(|d| d.join("config.json").is_file());
        if found.is_none() {
            notes.push(format!(
                "the checkpoint `{dir}` cannot be read here: its sizes are taken from model.arch \
                 and the size keys"
            ));
        }
        found
    });
    let vocab = if checkpoint.is_some() {
        0 // the checkpoint's config.json sets it
    } else {
        let tokenizer = data.tokenizer.as_deref().map(|t| {
            let found = locate("data.tokenizer", t);
            (
                t,
                found.and_then(|p| Ok(TextTokenizer::load(&p, data.max_seq_length as usize)?)),
            )
        });
        match tokenizer {
            Some((_, Ok(t))) => t.vocab_size(),
            Some((path, Err(_))) => {
                notes.push(format!(
                    "the tokenizer `{path}` cannot be read here: a vocabulary of {BERT_VOCAB} \
                     tokens (BERT's) is assumed"
                ));
                BERT_VOCAB
            }
            None => {
                notes.push(format!(
                    "no tokenizer can be read here: a vocabulary of {BERT_VOCAB} tokens (BERT's) \
                     is assumed"
                ));
                BERT_VOCAB
            }
        }
    };
    let shape = model_shape(model, data, checkpoint.as_deref(), vocab)?;
    Ok((
        shape.num_params(),
        shape.cost(data.max_seq_length as usize),
        notes,
    ))
}

/// Sizes set explicitly next to `pretrained` must agree with the checkpoint's.
fn check_explicit_sizes(model: &TextModel, cfg: &pretrained::HfBertConfig) -> Result<()> {
    let pairs = [
        ("hidden_size", model.hidden_size, cfg.hidden_size),
        ("num_layers", model.num_layers, cfg.num_hidden_layers),
        ("num_heads", model.num_heads, cfg.num_attention_heads),
        (
            "intermediate_size",
            model.intermediate_size,
            cfg.intermediate_size,
        ),
        (
            "max_position_embeddings",
            model.max_position_embeddings,
            cfg.max_position_embeddings,
        ),
    ];
    for (key, ours, theirs) in pairs {
        if let Some(v) = ours
            && v as usize != theirs
        {
            bail!(
                "model.{key} is {v} but the pretrained checkpoint's config.json says {theirs}; \
                 remove model.{key} (the checkpoint fixes the sizes)"
            );
        }
    }
    Ok(())
}

impl Job for TextJob {
    type Model = BertClassifier;
    type Batch = TextBatch;

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&self, indices: &[usize], _epoch_seed: u64) -> Result<TextBatch> {
        let encoded: Vec<&Encoded> = indices.iter().map(|&i| &self.train[i]).collect();
        let labels: Vec<usize> = indices.iter().map(|&i| self.train_labels[i]).collect();
        Ok(self.batch(&encoded, &labels))
    }

    fn batch_len(batch: &TextBatch) -> usize {
        batch.batch
    }

    fn init_model(&self, device: &Device) -> Result<BertClassifier> {
        let mut model = BertClassifier::new(&self.shape, device);
        if let Some(dir) = &self.pretrained {
            pretrained::load(&mut model, dir)?;
        }
        Ok(model)
    }

    fn load_weights(&self, model: BertClassifier, path: &Path) -> Result<BertClassifier> {
        crate::train::checkpoint::load_model_weights(model, path)
    }

    fn loss(&self, model: &BertClassifier, batch: TextBatch, device: &Device) -> Result<Tensor<1>> {
        Ok(cross_entropy(
            Self::logits(model, &batch, device),
            &batch,
            device,
        ))
    }

    type Boundary = Tensor<3>;

    fn stages<'a>(
        &'a self,
        batch: TextBatch,
        device: &Device,
    ) -> Result<Stages<'a, BertClassifier, Tensor<3>>> {
        Ok(BertClassifier::loss_stages(
            self.shape.num_layers,
            Self::input(&batch, device),
            targets(&batch, device),
        ))
    }

    fn held_out(&self) -> Vec<HeldOut> {
        self.valid
            .iter()
            .map(|v| HeldOut {
                name: v.name.clone(),
                len: v.labels.len(),
            })
            .collect()
    }

    /// The loss sum, then the confusion counts (what accuracy and macro-F1 are made of).
    fn eval_sums(
        &self,
        model: &BertClassifier,
        device: &Device,
        set: usize,
        range: std::ops::Range<usize>,
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let set = &self.valid[set];
        let mut confusion = Confusion::new(self.shape.num_labels);
        let mut loss_sum = 0.0f64;
        for (chunk, labels) in set.encoded[range.clone()]
            .chunks(batch_size.max(1))
            .zip(set.labels[range].chunks(batch_size.max(1)))
        {
            let refs: Vec<&Encoded> = chunk.iter().collect();
            let batch = self.batch(&refs, labels);
            let logits = Self::logits(model, &batch, device);
            let loss = cross_entropy(logits.clone(), &batch, device);
            loss_sum += f64::from(loss.into_scalar::<f32>()) * batch.batch as f64;
            let argmax = logits.argmax(1).into_data();
            let argmax: Vec<i64> = argmax
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (p, &g) in argmax.into_iter().zip(labels) {
                confusion.add(p as usize, g);
            }
        }
        let mut sums = vec![loss_sum];
        sums.extend(confusion.counts.iter().map(|&c| c as f64));
        Ok(sums)
    }

    fn eval_metrics(&self, set: usize, sums: &[f64]) -> Vec<(String, f64)> {
        let confusion = Confusion::from_counts(self.shape.num_labels, &sums[1..]);
        let n = self.valid[set].labels.len().max(1) as f64;
        let values = [sums[0] / n, confusion.accuracy(), confusion.macro_f1()];
        self.metric_names()
            .into_iter()
            .map(String::from)
            .zip(values)
            .collect()
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["loss", "accuracy", "macro_f1"]
    }
}

/// Mean cross-entropy of `logits` against the batch's labels.
fn cross_entropy(logits: Tensor<2>, batch: &TextBatch, device: &Device) -> Tensor<1> {
    super::model::cross_entropy(logits, targets(batch, device))
}

fn targets(batch: &TextBatch, device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [batch.batch]), device)
}

/// Counts of (gold, predicted) label pairs: what accuracy and macro-F1 are made of, and what
/// the ranks of a data-parallel evaluation add up.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    classes: usize,
    /// `counts[gold * classes + pred]`.
    counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// From counts summed as f64 (exact below 2^53).
    fn from_counts(classes: usize, counts: &[f64]) -> Confusion {
        Confusion {
            classes,
            counts: counts.iter().map(|&c| c.round() as u64).collect(),
        }
    }

    pub fn add(&mut self, pred: usize, gold: usize) {
        self.counts[gold * self.classes + pred] += 1;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let right: u64 = (0..self.classes)
            .map(|c| self.counts[c * self.classes + c])
            .sum();
        right as f64 / total as f64
    }

    /// Mean F1 over the classes that occur among the gold labels or the predictions
    /// (scikit-learn's `f1_score(average="macro")`).
    pub fn macro_f1(&self) -> f64 {
        let k = self.classes;
        let mut sum = 0.0;
        let mut present = 0;
        for c in 0..k {
            let tp = self.counts[c * k + c];
            let gold: u64 = (0..k).map(|p| self.counts[c * k + p]).sum();
            let pred: u64 = (0..k).map(|g| self.counts[g * k + c]).sum();
            let (fn_, fp) = (gold - tp, pred - tp);
            if tp + fp + fn_ == 0 {
                continue;
            }
            present += 1;
            sum += 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
        }
        if present == 0 {
            0.0
        } else {
            sum / present as f64
        }
    }
}

fn majority_accuracy(labels: &[usize], classes: usize) -> f64 {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts.into_iter().max().unwrap_or(0) as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusion(pred: &[usize], gold: &[usize], classes: usize) -> Confusion {
        let mut c = Confusion::new(classes);
        for (&p, &g) in pred.iter().zip(gold) {
            c.add(p, g);
        }
        c
    }

    #[test]
    fn macro_f1_matches_scikit_learn() {
        // sklearn.metrics.f1_score([0,1,2,0,1,2], [0,2,1,0,0,1], average="macro") = 0.26666…
        let gold = [0, 1, 2, 0, 1, 2];
        let pred = [0, 2, 1, 0, 0, 1];
        let c = confusion(&pred, &gold, 3);
        assert!((c.macro_f1() - 0.266_666_666_7).abs() < 1e-9);
        assert_eq!(confusion(&gold, &gold, 3).macro_f1(), 1.0);
        // A class absent from both is left out, not counted as 0.
        assert_eq!(confusion(&[0, 1], &[0, 1], 3).macro_f1(), 1.0);
        assert_eq!(c.accuracy(), 2.0 / 6.0);
        // Two ranks' halves, summed, are the whole.
        let (a, b) = (
            confusion(&pred[..4], &gold[..4], 3),
            confusion(&pred[4..], &gold[4..], 3),
        );
        let summed: Vec<f64> = a
            .counts
            .iter()
            .zip(&b.counts)
            .map(|(x, y)| (x + y) as f64)
            .collect();
        assert_eq!(Confusion::from_counts(3, &summed), c);
    }
}
