//! MAE pretraining throughput on runner (`--backend flex` or `tch`): the step the trainer
//! takes for `job: mae` (per-sample masking, encoder over visible patches, decoder, MSE on hidden
//! patches, backward, AdamW with MAE's betas), on fixed pseudo-random images, reported as one
//! JSON line. `just bench-mae` runs it side by side with the same model in PyTorch eager
//! (bench/mae_torch.py) and prints the ratio.
//!
//! Usage: cargo bench --bench mae_throughput -- [--batch 32] [--image 224] [--patch 16]
//!        [--dim 192] [--depth 12] [--heads 3] [--dec-dim 128] [--dec-depth 2] [--dec-heads 4]
//!        [--steps 5] [--warmup 2] [--backend flex|tch] [--device cpu|cuda|cuda:N]
//!        [--dtype fp32|bf16|fp16]
//! (defaults: the `mae_vit_tiny_patch16` preset at 224 px, flex, fp32; tch needs
//! `--features tch`. ViT-B/16 on a GPU: `--backend tch --device cuda --dtype bf16 --batch 64
//! --dim 768 --heads 12 --dec-dim 512 --dec-depth 8 --dec-heads 16`.)

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use runner::config::types::{Dtype, OptimizerConfig, PrecisionConfig};
use runner::jobs::mae::job::device_input;
use runner::jobs::mae::masking::{Mask, visible_count};
use runner::jobs::mae::model::{MaeShape, MaeVit};
use runner::train::optim;
use runner::train::precision::Precision;

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
    let mut on = common::device();
    let device = on.0.clone();
    // `--dtype bf16|fp16`: the trainer's mixed precision (fp32 master weights and AdamW state,
    // forward and backward on a low-precision copy); on CUDA only, as the trainer allows.
    let dtype = match common::arg_str("--dtype", "fp32").as_str() {
        "fp32" => Dtype::Fp32,
        "bf16" => Dtype::Bf16,
        "fp16" => Dtype::Fp16,
        other => panic!("--dtype {other}: expected fp32, bf16 or fp16"),
    };
    if dtype != Dtype::Fp32 {
        on.1 = format!("{} {}", on.1, dtype.as_str());
    }
    let precision = Precision::new(&PrecisionConfig {
        dtype,
        ..PrecisionConfig::default()
    });
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
    time_steps(
        &on,
        warmup,
        steps,
        batch,
        &format!("\"image\": {s}"),
        || {
            let m = model.take().expect("model");
            // New masks every step, drawn on the host as the loader does.
            let masks: Vec<Mask> = (0..batch)
                .map(|_| Mask::draw(shape.patches(), keep, &mut rng))
                .collect();
            let images =
                Tensor::<4>::from_data(TensorData::new(pixels.clone(), [batch, 3, s, s]), &device);
            let input = device_input(images, &masks, &device);
            let compute = precision.compute_model(&m);
            let pred = compute.forward(&input);
            let loss = compute
                .loss(input.images, pred, input.hidden)
                .mul_scalar(precision.loss_multiplier());
            let _value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &compute);
            let grads = precision.master_grads(&m, grads);
            drop(compute);
            model = Some(opt.step(1.5e-4, m, grads));
        },
    );
}
