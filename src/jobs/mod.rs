//! The jobs: what is trained. Each implements `train::job::Job`; this is the one place that
//! maps `job:` to its implementation.

pub mod causal_vae;
pub mod cost;
pub mod mae;
pub mod sizing;
pub mod text;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;

use crate::config::machine::MissingTool;
use crate::config::types::{DataConfig, Experiment, ModelConfig};
use crate::train::trainer::{self, Settings, Summary};

/// A job with its data read and checked, ready to train.
pub enum Ready {
    Mae(Arc<mae::MaeJob>),
    Text(Arc<text::TextJob>),
    CausalVae(Arc<causal_vae::CausalVaeJob>),
}

/// Training examples skipped so far (unreadable, too short): each is reported once, with the
/// running count, however often the epochs draw it.
#[derive(Default)]
pub(crate) struct Skipped(std::sync::Mutex<std::collections::HashSet<usize>>);

impl Skipped {
    /// Records example `i`; the first time, calls `report` with how many are skipped so far.
    pub(crate) fn note(&self, i: usize, report: impl FnOnce(usize)) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(i) {
            report(seen.len());
        }
    }
}

/// `n` indices spread evenly over `0..len` (the first is 0): which examples are held out.
pub(crate) fn spread(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| i * len / n.max(1)).collect()
}

/// A program the job needs that this machine lacks (FFmpeg when the clips include video
/// containers), for `runner validate --strict` and the checks before `runner run`.
pub fn missing_tool(exp: &Experiment) -> Option<MissingTool> {
    let DataConfig::CausalVae(d) = &exp.data else {
        return None;
    };
    let keys = [
        ("data.video_path", Some(&d.video_path)),
        ("data.eval_path", d.eval_path.as_ref()),
    ];
    for (key, path) in keys {
        // Listing problems are reported by `prepare`, with the rest of the data checks.
        let Some(clips) = path.and_then(|p| causal_vae::clips::list(Path::new(p)).ok()) else {
            continue;
        };
        let refs: Vec<&causal_vae::clips::Clip> = clips.iter().collect();
        let Some(why) = causal_vae::video::ffmpeg_needed_for(&refs) else {
            continue;
        };
        let message = match causal_vae::ffmpeg::Ffmpeg::find() {
            Ok(Some(_)) => continue,
            Ok(None) => format!("FFmpeg is needed {why}, but no `ffmpeg` program is on PATH"),
            Err(e) => format!("FFmpeg is needed {why}, but {e:#}"),
        };
        return Some(MissingTool {
            key: key.into(),
            message,
            help: causal_vae::ffmpeg::INSTALL_HINT.into(),
        });
    }
    None
}

/// Reads and prepares the job's data (and tokenizer, pretrained config, …).
pub fn prepare(exp: &Experiment) -> Result<Ready> {
    match (&exp.model, &exp.data) {
        (ModelConfig::TextClassification(m), DataConfig::TextClassification(d)) => {
            Ok(Ready::Text(Arc::new(text::TextJob::new(m, d)?)))
        }
        (ModelConfig::Mae(m), DataConfig::Mae(d)) => {
            Ok(Ready::Mae(Arc::new(mae::MaeJob::new(m, d, exp.seed)?)))
        }
        (ModelConfig::CausalVae(m), DataConfig::CausalVae(d)) => Ok(Ready::CausalVae(Arc::new(
            causal_vae::CausalVaeJob::new(m, d)?,
        ))),
        // The loader builds both sections from `job`, so they always match.
        _ => bail!(
            "the model and data sections do not belong to job `{}`",
            exp.job
        ),
    }
}

impl Ready {
    /// Examples in the training set, as the job counts them (unusable rows left out).
    pub fn train_len(&self) -> usize {
        use crate::train::job::Job as _;
        match self {
            Ready::Mae(job) => job.train_len(),
            Ready::Text(job) => job.train_len(),
            Ready::CausalVae(job) => job.train_len(),
        }
    }

    /// Every metric evaluations report, as `<set>.<metric>` (what `eval.metric_for_best`
    /// names).
    pub fn metrics(&self) -> Vec<String> {
        use crate::train::job::Job;
        fn of<J: Job>(job: &J) -> Vec<String> {
            job.held_out()
                .iter()
                .flat_map(|set| {
                    job.metric_names()
                        .into_iter()
                        .map(move |m| format!("{}.{m}", set.name))
                })
                .collect()
        }
        match self {
            Ready::Mae(job) => of(&**job),
            Ready::Text(job) => of(&**job),
            Ready::CausalVae(job) => of(&**job),
        }
    }

    pub fn train(self, settings: &Settings, device: &Device) -> Result<Summary> {
        match self {
            Ready::Mae(job) => trainer::train(job, settings, device),
            Ready::Text(job) => trainer::train(job, settings, device),
            Ready::CausalVae(job) => trainer::train(job, settings, device),
        }
    }
}

/// An MAE run's model with `weights` loaded, on the host; `refusal` words the error for a run
/// of another job (given its name).
fn load_mae(
    exp: &Experiment,
    weights: &Path,
    refusal: impl Fn(&str) -> String,
) -> Result<(mae::model::MaeVit, mae::model::MaeShape)> {
    let (ModelConfig::Mae(m), DataConfig::Mae(d)) = (&exp.model, &exp.data) else {
        bail!("{}", refusal(&exp.job.to_string()));
    };
    let shape = mae::job::shape_of(m, d);
    let model = crate::train::checkpoint::load_model_weights(
        mae::model::MaeVit::new(&shape, &crate::train::backend::host_device()),
        weights,
    )?;
    Ok((model, shape))
}

/// What a finished MAE run's encoder computes for whole images (see [`mae::model::MaeVit::encode`]).
pub struct EncoderFeatures {
    /// `[B, 1 + L, D]`, row-major.
    pub values: Vec<f32>,
    pub dims: [usize; 3],
    /// The model's sizes, as a ViT built to receive the exported encoder needs them.
    pub shape: mae::model::MaeShape,
}

/// The features of `images` (normalised, `[batch, 3, H, W]` row-major) under an MAE run's
/// weights, on the host: what the exported encoder must reproduce in another framework.
pub fn mae_encoder_features(
    exp: &Experiment,
    weights: &Path,
    images: Vec<f32>,
    batch: usize,
) -> Result<EncoderFeatures> {
    let (model, shape) = load_mae(exp, weights, |job| {
        format!("encoder features need an MAE run; this run's job is `{job}`")
    })?;
    let device = crate::train::backend::host_device();
    let side = shape.image_size;
    if images.len() != batch * 3 * side * side {
        bail!(
            "{} values are not {batch} images of 3 × {side} × {side}",
            images.len()
        );
    }
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(images, [batch, 3, side, side]),
        &device,
    );
    let features = model.encode(images);
    let dims = features.dims();
    let values = features
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("features: {e:?}"))?;
    Ok(EncoderFeatures {
        values,
        dims,
        shape,
    })
}

/// What `runner export` wrote.
pub struct Exported {
    pub tensors: usize,
    pub parameters: usize,
}

/// Writes a trained run's weights (`weights`, runner's own safetensors) under the reference
/// implementation's names: for `mae`, `models_mae.py`'s, the encoder alone with
/// `encoder_only`.
pub fn export(
    exp: &Experiment,
    weights: &Path,
    encoder_only: bool,
    out: &Path,
) -> Result<Exported> {
    let (model, _) = load_mae(exp, weights, |job| {
        format!(
            "`runner export` writes MAE weights under the reference names; this run's job is \
             `{job}`, whose weights are already in the run directory's model.safetensors"
        )
    })?;
    let tensors = mae::export::reference_tensors(&model, encoder_only);
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "producer".to_string(),
            format!("runner {}", env!("CARGO_PKG_VERSION")),
        ),
        ("source".to_string(), weights.display().to_string()),
        (
            "contents".to_string(),
            if encoder_only {
                "encoder"
            } else {
                "encoder+decoder"
            }
            .to_string(),
        ),
        (
            "layout".to_string(),
            "models_mae.MaskedAutoencoderViT".to_string(),
        ),
    ]);
    mae::export::write(out, &tensors, metadata)?;
    Ok(Exported {
        tensors: tensors.len(),
        parameters: tensors.iter().map(|t| t.values.len()).sum(),
    })
}
