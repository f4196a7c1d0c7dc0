//! `causal_vae` as a [`Job`]: training windows are decoded in loader workers, each sample's
//! start frame drawn from its own seed; the held-out clips' centred windows are decoded once at
//! start, so every evaluation reconstructs the same frames.
//!
//! The loss is [`CausalVae::loss`]; evaluations report PSNR, the reconstruction error and the
//! KL of the posterior mean's reconstruction.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::clips::{self, Clip};
use super::model::{CausalVae, VaeShape, reconstruction_error};
use super::preview::{self, Pair};
use super::video::{self, VideoReader, Window};
use super::weights;
use crate::config::types::{CausalVaeData, CausalVaeModel, ReconstructionLoss};
use crate::jobs::cost::SampleCost;
use crate::jobs::{Skipped, spread};
use crate::train::job::{HeldOut, Job};
use crate::train::recompute::Stages;
use crate::train::seed::mix;

pub struct CausalVaeJob {
    shape: VaeShape,
    kl_weight: f64,
    reconstruction: ReconstructionLoss,
    frames: usize,
    size: usize,
    train: Vec<Clip>,
    reader: VideoReader,
    /// Held-out windows, `[n, 3, T, S, S]` flat in [−1, 1].
    eval_pixels: Vec<f32>,
    preview_clips: usize,
    /// Training clips too short for a window, and unreadable ones (each reported once).
    too_short: Skipped,
    unreadable: Skipped,
}

pub struct VaeBatch {
    n: usize,
    pixels: Vec<f32>,
    /// The posterior sample's standard-normal noise, `[n, latent, T', H', W']` flat.
    noise: Vec<f32>,
}

/// Mixed into a clip's seed for its posterior noise, a stream apart from its window draw.
const NOISE_STREAM: u64 = 0x006e_6f69_7365; // "noise"

impl CausalVaeJob {
    pub fn new(model: &CausalVaeModel, data: &CausalVaeData) -> Result<CausalVaeJob> {
        let shape = shape_of(model);
        let all = clips::list(Path::new(&data.video_path))
            .map_err(|e| anyhow::anyhow!("data.video_path: {e:#}"))?;
        let wanted = data.eval_clips as usize;
        let (train, held_out) = match &data.eval_path {
            Some(p) => {
                let held = clips::list(Path::new(p))
                    .map_err(|e| anyhow::anyhow!("data.eval_path: {e:#}"))?;
                let picks = spread(held.len(), wanted.min(held.len()));
                (all, picks.into_iter().map(|i| held[i].clone()).collect())
            }
            None => {
                check_hold_out(all.len(), wanted)?;
                let picks: HashSet<usize> = spread(all.len(), wanted).into_iter().collect();
                let (mut train, mut held) = (Vec::new(), Vec::new());
                for (i, c) in all.into_iter().enumerate() {
                    if picks.contains(&i) {
                        held.push(c)
                    } else {
                        train.push(c)
                    }
                }
                tracing::info!(
                    "holding out {wanted} of {} clips in data.video_path for evaluation (set \
                     data.eval_path to use separate clips)",
                    train.len() + held.len()
                );
                (train, held)
            }
        };
        // Before any decoding: a missing FFmpeg is an error now, not mid-epoch.
        let every: Vec<&Clip> = train.iter().chain(&held_out).collect();
        let ffmpeg = video::require_ffmpeg(&every)?;
        if let Some(f) = &ffmpeg {
            tracing::info!("decoding video containers with {}", f.version());
        }
        let frames = data.num_frames as usize;
        let size = data.resolution as usize;
        let reader = VideoReader::new(
            ffmpeg,
            data.resolution,
            frames,
            data.sample_rate as usize,
            data.decoded_cache_mb as usize * (1 << 20),
        );
        // Held-out windows: decoded now (keys after the training clips' in the cache).
        let mut eval_pixels = Vec::new();
        let mut skipped = Vec::new();
        for (i, clip) in held_out.iter().enumerate() {
            match reader.window(train.len() + i, clip, video::centre_start) {
                Ok(Window::Frames(bytes)) => push_clip(&bytes, frames, size, &mut eval_pixels),
                Ok(Window::TooShort { frames: n }) => {
                    skipped.push(format!("`{}` ({n} frames)", clip.path().display()))
                }
                Err(e) => skipped.push(format!("{e:#}")),
            }
        }
        let n_eval = eval_pixels.len() / (3 * frames * size * size);
        if !skipped.is_empty() {
            tracing::warn!(
                "{} held-out clips skipped (too short for {} frames every {} or unreadable): {}",
                skipped.len(),
                frames,
                data.sample_rate,
                skipped.join("; ")
            );
        }
        if n_eval == 0 {
            bail!(
                "no usable held-out clip: {}; held-out clips need at least {} frames",
                skipped.join("; "),
                video::span(frames, data.sample_rate as usize)
            );
        }
        tracing::info!(
            "{} training clips, {n_eval} held-out; windows of {frames} frames every {} at \
             {size}×{size} px, latent {:?}",
            train.len(),
            data.sample_rate,
            shape.latent_dims(frames, size)
        );
        Ok(CausalVaeJob {
            shape,
            kl_weight: model.kl_weight,
            reconstruction: model.reconstruction_loss,
            frames,
            size,
            train,
            reader,
            eval_pixels,
            preview_clips: (data.preview_clips as usize).min(n_eval),
            too_short: Skipped::default(),
            unreadable: Skipped::default(),
        })
    }

    /// The posterior mean's reconstruction of `n` clips (evaluations compare like with like,
    /// free of sampling noise): the reconstructed pixels, the mean reconstruction error and
    /// the summed KL.
    fn reconstruct(
        &self,
        model: &CausalVae,
        input: &[f32],
        n: usize,
        device: &Device,
    ) -> Result<(Vec<f32>, f32, f32)> {
        let x = self.clips(input.to_vec(), n, device);
        let posterior = model.encode(x.clone());
        let recon = model.decode(posterior.mean.clone());
        let rec: f32 = reconstruction_error(x, recon.clone(), self.reconstruction)
            .mean()
            .into_scalar();
        let kl: f32 = posterior.kl().sum().into_scalar();
        let recon = recon
            .into_data()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok((recon, rec, kl))
    }

    fn clip_len(&self) -> usize {
        3 * self.frames * self.size * self.size
    }

    fn clips(&self, pixels: Vec<f32>, n: usize, device: &Device) -> Tensor<5> {
        let (t, s) = (self.frames, self.size);
        Tensor::from_data(TensorData::new(pixels, [n, 3, t, s, s]), device)
    }

    fn latent_dims(&self) -> [usize; 4] {
        self.shape.latent_dims(self.frames, self.size)
    }

    fn latent_len(&self) -> usize {
        self.latent_dims().iter().product()
    }
}

/// Window bytes `[T][S][S][3]` → `[3][T][S][S]` floats in [−1, 1], appended to `out`.
fn push_clip(bytes: &[u8], frames: usize, size: usize, out: &mut Vec<f32>) {
    let plane = size * size;
    let start = out.len();
    out.resize(start + 3 * frames * plane, 0.0);
    for t in 0..frames {
        for p in 0..plane {
            for c in 0..3 {
                let v = bytes[(t * plane + p) * 3 + c];
                out[start + (c * frames + t) * plane + p] = f32::from(v) / 127.5 - 1.0;
            }
        }
    }
}

/// The network's sizes from the configuration.
pub fn shape_of(model: &CausalVaeModel) -> VaeShape {
    let dims = model.dims();
    VaeShape {
        base_channels: dims.base_channels as usize,
        latent_channels: dims.latent_channels as usize,
        num_res_blocks: dims.num_res_blocks as usize,
        spatial_levels: dims.spatial_compression.trailing_zeros() as usize,
        temporal_levels: dims.temporal_compression.trailing_zeros() as usize,
    }
}

/// Peak signal-to-noise ratio of clips in [−1, 1] (on the [0, 1] scale), per clip, in dB.
pub fn psnr(x: &[f32], recon: &[f32], clip_len: usize) -> Vec<f64> {
    x.chunks(clip_len)
        .zip(recon.chunks(clip_len))
        .map(|(a, b)| {
            let mse = a
                .iter()
                .zip(b)
                .map(|(&a, &b)| {
                    let d = f64::from((b.clamp(-1.0, 1.0) - a) / 2.0);
                    d * d
                })
                .sum::<f64>()
                / a.len() as f64;
            10.0 * (1.0 / mse.max(1e-10)).log10()
        })
        .collect()
}

/// Without `data.eval_path`, `wanted` of the `total` clips are held out, and some must be left
/// to train on.
fn check_hold_out(total: usize, wanted: usize) -> Result<()> {
    if wanted >= total {
        bail!(
            "data.video_path has {total} clips, too few to hold out data.eval_clips = {wanted} of \
             them and train on the rest; set data.eval_path to separate held-out clips or lower \
             data.eval_clips"
        );
    }
    Ok(())
}

/// The training clips [`CausalVaeJob::new`] would keep, listed without decoding any: what
/// `runner plan` counts. (Clips too short for a window are skipped when drawn, in training as
/// here: they count.)
pub fn count_train(data: &CausalVaeData) -> Result<usize> {
    let total = clips::list(Path::new(&data.video_path))
        .map_err(|e| anyhow::anyhow!("data.video_path: {e:#}"))?
        .len();
    if data.eval_path.is_some() {
        return Ok(total);
    }
    check_hold_out(total, data.eval_clips as usize)?;
    Ok(total - data.eval_clips as usize)
}

/// The model's parameters and one clip's cost, from the sizes alone (no data is read).
pub fn cost_of(model: &CausalVaeModel, data: &CausalVaeData) -> (u64, SampleCost) {
    let (cost, params) = shape_of(model).cost(data.num_frames as usize, data.resolution as usize);
    (params, cost)
}

impl Job for CausalVaeJob {
    type Model = CausalVae;
    type Batch = VaeBatch;

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&self, indices: &[usize], epoch_seed: u64) -> Result<VaeBatch> {
        let mut pixels = Vec::with_capacity(indices.len() * self.clip_len());
        let mut noise = Vec::with_capacity(indices.len() * self.latent_len());
        let mut n = 0;
        let mut problems = Vec::new();
        for &i in indices {
            let clip = &self.train[i];
            let mut rng = ChaCha8Rng::seed_from_u64(mix(epoch_seed, i as u64));
            match self.reader.window(i, clip, |total, span| {
                video::random_start(total, span, &mut rng)
            }) {
                Ok(Window::Frames(bytes)) => {
                    push_clip(&bytes, self.frames, self.size, &mut pixels);
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(mix(mix(epoch_seed, i as u64), NOISE_STREAM));
                    noise.extend(
                        (0..self.latent_len()).map(|_| rng.sample::<f32, _>(StandardNormal)),
                    );
                    n += 1;
                }
                Ok(Window::TooShort { frames }) => {
                    self.too_short.note(i, |count| {
                        tracing::warn!(
                            "skipping `{}`: {frames} frames, too short for {} frames at \
                             sample_rate ({count} short clips so far)",
                            clip.path().display(),
                            self.frames
                        )
                    });
                    problems.push(format!("`{}` has {frames} frames", clip.path().display()));
                }
                Err(e) => {
                    self.unreadable.note(i, |count| {
                        tracing::warn!("skipping unreadable clip ({count} so far): {e:#}")
                    });
                    problems.push(format!("{e:#}"));
                }
            }
        }
        if n == 0 {
            bail!(
                "no clip of a training batch is usable: {}; check data.video_path, or lower \
                 data.num_frames / data.sample_rate for short clips",
                problems.join("; ")
            );
        }
        Ok(VaeBatch { n, pixels, noise })
    }

    fn batch_len(batch: &VaeBatch) -> usize {
        batch.n
    }

    fn init_model(&self, device: &Device) -> Result<CausalVae> {
        Ok(CausalVae::new(&self.shape, device))
    }

    fn load_weights(&self, model: CausalVae, path: &Path) -> Result<CausalVae> {
        weights::load(model, path)
    }

    fn loss(&self, model: &CausalVae, batch: VaeBatch, device: &Device) -> Result<Tensor<1>> {
        let x = self.clips(batch.pixels, batch.n, device);
        let [c, t, h, w] = self.latent_dims();
        let eps = Tensor::from_data(TensorData::new(batch.noise, [batch.n, c, t, h, w]), device);
        Ok(model.loss(x, eps, self.kl_weight, self.reconstruction))
    }

    type Boundary = Tensor<5>;

    fn stages<'a>(
        &'a self,
        batch: VaeBatch,
        device: &Device,
    ) -> Result<Stages<'a, CausalVae, Tensor<5>>> {
        let x = self.clips(batch.pixels, batch.n, device);
        let [c, t, h, w] = self.latent_dims();
        let eps = Tensor::from_data(TensorData::new(batch.noise, [batch.n, c, t, h, w]), device);
        Ok(CausalVae::loss_stages(
            &self.shape,
            x,
            eps,
            self.kl_weight,
            self.reconstruction,
        ))
    }

    fn held_out(&self) -> Vec<HeldOut> {
        vec![HeldOut {
            name: "held_out".into(),
            len: self.eval_pixels.len() / self.clip_len(),
        }]
    }

    /// PSNR, reconstruction error and KL, each summed over the clips.
    fn eval_sums(
        &self,
        model: &CausalVae,
        device: &Device,
        _set: usize,
        range: std::ops::Range<usize>,
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let len = self.clip_len();
        let (mut psnr_sum, mut rec_sum, mut kl_sum) = (0.0f64, 0.0f64, 0.0f64);
        let mut start = range.start;
        while start < range.end {
            let end = (start + batch_size.max(1)).min(range.end);
            let input = &self.eval_pixels[start * len..end * len];
            let (recon, rec, kl) = self.reconstruct(model, input, end - start, device)?;
            rec_sum += f64::from(rec) * (end - start) as f64;
            kl_sum += f64::from(kl);
            psnr_sum += psnr(input, &recon, len).into_iter().sum::<f64>();
            start = end;
        }
        Ok(vec![psnr_sum, rec_sum, kl_sum])
    }

    fn eval_metrics(&self, _set: usize, sums: &[f64]) -> Vec<(String, f64)> {
        let n = (self.eval_pixels.len() / self.clip_len()).max(1) as f64;
        self.metric_names()
            .into_iter()
            .map(String::from)
            .zip(sums.iter().map(|s| s / n))
            .collect()
    }

    fn metric_names(&self) -> Vec<&'static str> {
        let reconstruction = match self.reconstruction {
            ReconstructionLoss::L1 => "l1",
            ReconstructionLoss::Mse => "mse",
        };
        vec!["psnr", reconstruction, "kl"]
    }

    /// Input over reconstruction of the first held-out clips, `samples/step-N.gif` and `.png`.
    fn draw(&self, model: &CausalVae, device: &Device, step: u64, run_dir: &Path) -> Result<()> {
        let len = self.clip_len();
        let clips = self.preview_clips.min(self.eval_pixels.len() / len);
        if clips == 0 {
            return Ok(());
        }
        let input = &self.eval_pixels[..clips * len];
        let (recon, _, _) = self.reconstruct(model, input, clips, device)?;
        let dir = run_dir.join("samples");
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
        let pairs: Vec<Pair<'_>> = (0..clips)
            .map(|i| Pair {
                input: &input[i * len..(i + 1) * len],
                reconstruction: &recon[i * len..(i + 1) * len],
            })
            .collect();
        preview::write(
            &dir.join(format!("step-{step:08}")),
            &pairs,
            self.frames,
            self.size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_laid_out_channel_time_height_width() {
        // Two 1×1 frames, RGB (0, 10, 20) then (255, 127, 0): out is [R0, R1, G0, G1, B0, B1].
        let mut out = vec![7.0];
        push_clip(&[0, 10, 20, 255, 127, 0], 2, 1, &mut out);
        let v = |b: f32| b / 127.5 - 1.0;
        let want = [7.0, -1.0, 1.0, v(10.0), v(127.0), v(20.0), -1.0];
        assert_eq!(out.len(), want.len());
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn psnr_on_the_unit_scale() {
        // A difference of 0.2 in [−1, 1] is 0.1 on [0, 1]: MSE 0.01, 20 dB.
        let x = vec![0.0f32; 8];
        let r = vec![0.2f32; 8];
        let p = psnr(&x, &r, 4);
        assert_eq!(p.len(), 2);
        assert!((p[0] - 20.0).abs() < 1e-4, "{p:?}");
        // Reconstructions are clamped to the valid range first.
        let p = psnr(&[1.0; 4], &[3.0; 4], 4);
        assert!(p[0] > 90.0);
    }
}
