//! MAE pretraining throughput on runner's default (flex) backend: the step the trainer takes
//! for `job: mae` (per-sample masking, encoder over visible patches, decoder, MSE on hidden
//! patches, backward, AdamW with MAE's betas), on fixed pseudo-random images, reported as one
//! JSON line. `just bench-mae` runs it side by side with the same model in PyTorch eager
//! (bench/mae_torch.py) and prints the ratio.
//!
//! Usage: cargo bench --bench mae_throughput -- [--batch 32] [--image 224] [--patch 16]
//!        [--dim 192] [--depth 12] [--heads 3] [--dec-dim 128] [--dec-depth 2] [--dec-heads 4]
//!        [--steps 5] [--warmup 2]
//! (defaults: the `mae_vit_tiny_patch16` preset at 224 px)

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use runner::config::types::OptimizerConfig;
use runner::jobs::mae::job::device_input;
use runner::jobs::mae::masking::{Mask, visible_count};
use runner::jobs::mae::model::{MaeShape, MaeVit};
use runner::train::optim;

mod common;

use common::{arg, pseudo_random, time_steps};

fn main() {
    let (batch, steps, warmup) = (arg("--batch", 32), arg("--steps", 5), arg("--warmup", 2));
    let shape = MaeShape {
        image_size: arg("--image", 224),
        patch_size: arg("--patch", 16),
        embed_dim: arg("--dim", 192),
        depth: arg("--depth", 12),
        num_heads: arg("--heads", 3),
        decoder_embed_dim: arg("--dec-dim", 128),
        decoder_depth: arg("--dec-depth", 2),
        decoder_num_heads: arg("--dec-heads", 4),
        norm_pix_loss: true,
    };
    let device = Device::flex().autodiff();
    device.seed(0);
    let model = MaeVit::new(&shape, &device);
    let cfg = OptimizerConfig {
        lr: Some(1.5e-4),
        betas: [0.9, 0.95],
        weight_decay: 0.05,
        ..OptimizerConfig::default()
    };
    let mut opt = optim::build(&cfg, &model);
    let s = shape.image_size;
    let pixels = pseudo_random(batch * 3 * s * s, -2.0, 2.0);
    let keep = visible_count(shape.patches(), 0.75);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);

    // Taken and put back each step: a clone would keep the old tensors alive and stop burn
    // from updating them in place.
    let mut model = Some(model);
    time_steps(warmup, steps, batch, &format!("\"image\": {s}"), || {
        let m = model.take().expect("model");
        // New masks every step, drawn on the host as the loader does.
        let masks: Vec<Mask> = (0..batch)
            .map(|_| Mask::draw(shape.patches(), keep, &mut rng))
            .collect();
        let images =
            Tensor::<4>::from_data(TensorData::new(pixels.clone(), [batch, 3, s, s]), &device);
        let input = device_input(images, &masks, &device);
        let pred = m.forward(&input);
        let loss = m.loss(input.images, pred, input.hidden);
        let _value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(opt.step(1.5e-4, m, grads));
    });
}
