//! CausalVAE training throughput on runner (`--backend flex` or `tch`): the step the trainer
//! takes for `job: causal_vae` (causal encoder, sampled latent, decoder, L1 + kl_weight · KL,
//! backward, AdamW), on fixed pseudo-random clips in [−1, 1], reported as one JSON line.
//! `just bench-vae` runs it side by side with the same model in PyTorch eager
//! (bench/causalvae_torch.py) and prints the ratio.
//!
//! Usage: cargo bench --bench causal_vae_throughput -- [--batch 1] [--frames 9]
//!        [--resolution 32] [--base 16] [--res-blocks 1] [--steps 5] [--warmup 2]
//!        [--backend flex|tch] [--device cpu|cuda|cuda:N]
//! (defaults: experiments/causalvae-tiny.yaml's model and clips, flex; tch needs
//! `--features tch`)

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use runner::config::types::{OptimizerConfig, ReconstructionLoss};
use runner::jobs::causal_vae::model::{CausalVae, VaeShape};
use runner::train::optim;

mod common;

use common::{arg, pseudo_random, time_steps};

fn main() {
    let (batch, steps, warmup) = (arg("--batch", 1), arg("--steps", 5), arg("--warmup", 2));
    let (frames, size) = (arg("--frames", 9), arg("--resolution", 32));
    let shape = VaeShape {
        base_channels: arg("--base", 16),
        latent_channels: 4,
        num_res_blocks: arg("--res-blocks", 1),
        spatial_levels: 3,
        temporal_levels: 2,
    };
    let on = common::device();
    let device = on.0.clone();
    let model = CausalVae::new(&shape, &device);
    let cfg = OptimizerConfig {
        lr: Some(1e-3),
        betas: [0.9, 0.999],
        ..OptimizerConfig::default()
    };
    let mut opt = optim::build(&cfg, &model);
    let pixels = pseudo_random(batch * 3 * frames * size * size, -1.0, 1.0);
    // Taken and put back each step: a clone would keep the old tensors alive and stop burn
    // from updating them in place.
    let mut model = Some(model);
    let fields = format!(
        "\"frames\": {frames}, \"resolution\": {size}, \"params\": {}",
        model.as_ref().map_or(0, |m| m.num_params())
    );
    time_steps(&on, warmup, steps, batch, &fields, || {
        let m = model.take().expect("model");
        let x = Tensor::<5>::from_data(
            TensorData::new(pixels.clone(), [batch, 3, frames, size, size]),
            &device,
        );
        let [c, t, h, w] = shape.latent_dims(frames, size);
        let eps = Tensor::<5>::random([batch, c, t, h, w], Distribution::Normal(0.0, 1.0), &device);
        let loss = m.loss(x, eps, 1e-6, ReconstructionLoss::L1);
        let _value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(opt.step(1e-3, m, grads));
    });
}
