//! `mae` as a [`Job`]: images are decoded and augmented in loader workers, each sample's crop,
//! flip and mask drawn from its own seed; the held-out images are decoded once at start with
//! fixed masks, so every evaluation measures the same reconstruction task.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{eval_view, normalize, push_normalized, train_view};
use super::grid;
use super::masking::{Mask, visible_count};
use super::model::{MaeInput, MaeShape, MaeVit, patch_stats, patchify, unpatchify};
use super::source::Images;
use crate::config::types::{MaeData, MaeModel};
use crate::jobs::cost::SampleCost;
use crate::jobs::{Skipped, spread};
use crate::train::job::{HeldOut, Job};
use crate::train::recompute::Stages;
use crate::train::seed::mix;

pub struct MaeJob {
    shape: MaeShape,
    /// Visible patches per image.
    keep: usize,
    train: Images,
    /// Held-out images, already cropped and normalised, `[n, 3, S, S]` flat.
    eval_pixels: Vec<f32>,
    eval_masks: Vec<Mask>,
    grid_images: usize,
    /// Unreadable training images met so far (each reported once).
    unreadable: Skipped,
}

/// A batch as host data.
pub struct MaeBatch {
    n: usize,
    pixels: Vec<f32>,
    masks: Vec<Mask>,
}

/// Tag mixed into the seed of the held-out masks (apart from every epoch's draws).
const EVAL_MASK_TAG: u64 = 0x6576_616c_6d61_736b;

impl MaeJob {
    pub fn new(model: &MaeModel, data: &MaeData, seed: u64) -> Result<MaeJob> {
        let shape = shape_of(model, data);
        let source =
            Images::open(Path::new(&data.path)).map_err(|e| anyhow::anyhow!("data.path: {e:#}"))?;
        let wanted = data.eval_images as usize;
        let (train, held_out) = match &data.eval_path {
            Some(p) => {
                let held = Images::open(Path::new(p))
                    .map_err(|e| anyhow::anyhow!("data.eval_path: {e:#}"))?;
                let picks = spread(held.len(), wanted.min(held.len()));
                (source, held.subset(&picks))
            }
            None => {
                check_hold_out(source.len(), wanted)?;
                let picks = spread(source.len(), wanted);
                let chosen: HashSet<usize> = picks.iter().copied().collect();
                let rest: Vec<usize> = (0..source.len()).filter(|i| !chosen.contains(i)).collect();
                tracing::info!(
                    "holding out {wanted} of {} images in data.path for evaluation (set \
                     data.eval_path to use separate images)",
                    source.len()
                );
                (source.subset(&rest), source.subset(&picks))
            }
        };
        let size = data.input_size;
        let mut eval_pixels = Vec::new();
        let mut unreadable = 0;
        for i in 0..held_out.len() {
            match held_out.load(i) {
                Ok(img) => push_normalized(&eval_view(&img, size), &mut eval_pixels),
                Err(e) => {
                    unreadable += 1;
                    tracing::warn!("skipping unreadable held-out image: {e:#}");
                }
            }
        }
        let n_eval = eval_pixels.len() / (3 * (size * size) as usize);
        if unreadable > 0 {
            tracing::warn!("{unreadable} held-out images skipped as unreadable, {n_eval} kept");
        }
        if n_eval == 0 {
            bail!("no readable held-out image (all {unreadable} failed to decode)");
        }
        let keep = visible_count(shape.patches(), model.mask_ratio);
        let eval_masks = (0..n_eval)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, EVAL_MASK_TAG), i as u64));
                Mask::draw(shape.patches(), keep, &mut rng)
            })
            .collect();
        tracing::info!(
            "{} training images, {n_eval} held-out, {}×{} px, {} patches of {}×{} ({keep} visible)",
            train.len(),
            size,
            size,
            shape.patches(),
            shape.patch_size,
            shape.patch_size
        );
        Ok(MaeJob {
            shape,
            keep,
            train,
            eval_pixels,
            eval_masks,
            grid_images: (data.grid_images as usize).min(n_eval),
            unreadable: Skipped::default(),
        })
    }

    pub fn shape(&self) -> &MaeShape {
        &self.shape
    }

    fn image_len(&self) -> usize {
        3 * self.shape.image_size * self.shape.image_size
    }

    /// Held-out images `range` with their masks, on the device.
    fn eval_input(&self, range: std::ops::Range<usize>, device: &Device) -> MaeInput {
        let n = range.len();
        let s = self.shape.image_size;
        let px =
            self.eval_pixels[range.start * self.image_len()..range.end * self.image_len()].to_vec();
        let images = Tensor::<4>::from_data(TensorData::new(px, [n, 3, s, s]), device);
        device_input(images, &self.eval_masks[range], device)
    }

    /// original | masked | reconstruction | reconstruction with visible patches pasted back.
    fn write_grid(&self, model: &MaeVit, device: &Device, path: &Path) -> Result<()> {
        let input = self.eval_input(0..self.grid_images, device);
        let p = self.shape.patch_size;
        let original = patchify(input.images.clone(), p);
        let mut pred = model.forward(&input);
        if self.shape.norm_pix_loss {
            // The model predicts standardised patches; shown with the original patch's own
            // statistics, as MAE's visualisations of norm_pix_loss models do.
            let (mean, var) = patch_stats(original.clone());
            pred = pred * (var + 1e-6).sqrt() + mean;
        }
        let hidden = input.hidden.clone().unsqueeze_dim::<3>(2);
        let visible = hidden.clone().neg() + 1.0;
        // Hidden patches are shown mid-grey.
        let grey = grey_patch(original.dims(), device);
        let masked = original.clone() * visible.clone() + grey * hidden.clone();
        let pasted = original * visible + pred.clone() * hidden;
        let columns = [
            input.images.clone(),
            unpatchify(masked, p),
            unpatchify(pred, p),
            unpatchify(pasted, p),
        ];
        let columns: Vec<Vec<f32>> = columns
            .into_iter()
            .map(|t| {
                t.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            })
            .collect::<Result<_>>()?;
        grid::write(path, &columns, self.grid_images, self.shape.image_size)
    }
}

/// A tensor of `shape` holding the normalised value of mid-grey (128) in each channel
/// (patch values are in (row, column, channel) order).
fn grey_patch(shape: [usize; 3], device: &Device) -> Tensor<3> {
    let channel: Vec<f32> = (0..3).map(|c| normalize(128, c)).collect();
    let values: Vec<f32> = (0..shape[0] * shape[1] * shape[2])
        .map(|i| channel[i % 3])
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The network's sizes from the configuration.
pub fn shape_of(model: &MaeModel, data: &MaeData) -> MaeShape {
    let dims = model.dims();
    MaeShape {
        image_size: data.input_size as usize,
        patch_size: dims.patch_size as usize,
        embed_dim: dims.embed_dim as usize,
        depth: dims.depth as usize,
        num_heads: dims.num_heads as usize,
        decoder_embed_dim: dims.decoder_embed_dim as usize,
        decoder_depth: dims.decoder_depth as usize,
        decoder_num_heads: dims.decoder_num_heads as usize,
        norm_pix_loss: model.norm_pix_loss,
    }
}

/// Moves images and their masks to the device as the model's gather indices.
pub fn device_input(images: Tensor<4>, masks: &[Mask], device: &Device) -> MaeInput {
    let b = masks.len();
    let l = masks.first().map_or(0, |m| m.shuffle.len());
    let keep = masks.first().map_or(0, |m| m.keep);
    let mut keep_index = Vec::with_capacity(b * keep);
    let mut restore_index = Vec::with_capacity(b * l);
    let mut hidden = Vec::with_capacity(b * l);
    for (s, m) in masks.iter().enumerate() {
        let base = (s * l) as i64;
        keep_index.extend(m.shuffle[..keep].iter().map(|&p| base + p as i64));
        restore_index.extend(m.restore.iter().map(|&j| base + j as i64));
        hidden.extend(m.hidden());
    }
    MaeInput {
        images,
        keep_index: Tensor::from_data(TensorData::new(keep_index, [b * keep]), device),
        restore_index: Tensor::from_data(TensorData::new(restore_index, [b * l]), device),
        hidden: Tensor::from_data(TensorData::new(hidden, [b, l]), device),
        keep,
    }
}

/// Without `data.eval_path`, `wanted` of the `total` images in `data.path` are held out, and at
/// least as many must be left to train on.
fn check_hold_out(total: usize, wanted: usize) -> Result<()> {
    if wanted * 2 > total {
        bail!(
            "data.path has {total} images, too few to hold out data.eval_images = {wanted} of them \
             for evaluation; set data.eval_path to separate held-out images or lower \
             data.eval_images"
        );
    }
    Ok(())
}

/// The training images [`MaeJob::new`] would keep, counted without reading them (an IDX
/// file's header, an image folder's file names): what `runner plan` counts.
pub fn count_train(data: &MaeData) -> Result<usize> {
    let total =
        Images::count(Path::new(&data.path)).map_err(|e| anyhow::anyhow!("data.path: {e:#}"))?;
    if data.eval_path.is_some() {
        return Ok(total);
    }
    let wanted = data.eval_images as usize;
    check_hold_out(total, wanted)?;
    Ok(total - wanted)
}

/// The model's parameters and one image's cost, from the sizes alone (no data is read).
pub fn cost_of(model: &MaeModel, data: &MaeData) -> (u64, SampleCost) {
    let shape = shape_of(model, data);
    let keep = visible_count(shape.patches(), model.mask_ratio);
    (shape.num_params(), shape.cost(keep))
}

impl Job for MaeJob {
    type Model = MaeVit;
    type Batch = MaeBatch;

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&self, indices: &[usize], epoch_seed: u64) -> Result<MaeBatch> {
        let size = self.shape.image_size as u32;
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        let mut masks = Vec::with_capacity(indices.len());
        let mut first_error = None;
        for &i in indices {
            let img = match self.train.load(i) {
                Ok(img) => img,
                Err(e) => {
                    self.unreadable.note(i, |n| {
                        tracing::warn!("skipping unreadable image ({n} so far): {e:#}")
                    });
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let mut rng = ChaCha8Rng::seed_from_u64(mix(epoch_seed, i as u64));
            push_normalized(&train_view(&img, size, &mut rng), &mut pixels);
            masks.push(Mask::draw(self.shape.patches(), self.keep, &mut rng));
        }
        if masks.is_empty() {
            let e = first_error.expect("an empty batch had errors");
            bail!("every image of a training batch is unreadable, e.g. {e:#}; check data.path");
        }
        Ok(MaeBatch {
            n: masks.len(),
            pixels,
            masks,
        })
    }

    fn batch_len(batch: &MaeBatch) -> usize {
        batch.n
    }

    fn init_model(&self, device: &Device) -> Result<MaeVit> {
        Ok(MaeVit::new(&self.shape, device))
    }

    fn loss(&self, model: &MaeVit, batch: MaeBatch, device: &Device) -> Result<Tensor<1>> {
        let s = self.shape.image_size;
        let images =
            Tensor::<4>::from_data(TensorData::new(batch.pixels, [batch.n, 3, s, s]), device);
        let input = device_input(images, &batch.masks, device);
        let pred = model.forward(&input);
        Ok(model.loss(input.images, pred, input.hidden))
    }

    type Boundary = Tensor<3>;

    fn stages<'a>(
        &'a self,
        batch: MaeBatch,
        device: &Device,
    ) -> Result<Stages<'a, MaeVit, Tensor<3>>> {
        let s = self.shape.image_size;
        let images =
            Tensor::<4>::from_data(TensorData::new(batch.pixels, [batch.n, 3, s, s]), device);
        let input = device_input(images, &batch.masks, device);
        Ok(MaeVit::loss_stages(&self.shape, input))
    }

    fn held_out(&self) -> Vec<HeldOut> {
        vec![HeldOut {
            name: "held_out".into(),
            len: self.eval_masks.len(),
        }]
    }

    /// The loss summed over the examples (each batch's mean × its size).
    fn eval_sums(
        &self,
        model: &MaeVit,
        device: &Device,
        _set: usize,
        range: std::ops::Range<usize>,
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let mut loss_sum = 0.0f64;
        let mut start = range.start;
        while start < range.end {
            let end = (start + batch_size.max(1)).min(range.end);
            let input = self.eval_input(start..end, device);
            let pred = model.forward(&input);
            let loss: f32 = model.loss(input.images, pred, input.hidden).into_scalar();
            loss_sum += f64::from(loss) * (end - start) as f64;
            start = end;
        }
        Ok(vec![loss_sum])
    }

    fn eval_metrics(&self, _set: usize, sums: &[f64]) -> Vec<(String, f64)> {
        vec![("loss".into(), sums[0] / self.eval_masks.len().max(1) as f64)]
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["loss"]
    }

    /// The reconstruction grid of the first held-out images, `samples/step-N.png`.
    fn draw(&self, model: &MaeVit, device: &Device, step: u64, run_dir: &Path) -> Result<()> {
        if self.grid_images == 0 {
            return Ok(());
        }
        let dir = run_dir.join("samples");
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
        self.write_grid(model, device, &dir.join(format!("step-{step:08}.png")))
    }
}
