//! The one place where `hardware.backend` and `hardware.device` become a burn device.

use burn::tensor::Device;

use crate::config::types::{Backend, Device as DeviceKind, HardwareConfig};

/// Whether this binary can train on `hw` (for `run`'s and `validate --strict`'s checks).
pub fn check(hw: &HardwareConfig) -> Result<(), String> {
    training_device(hw).map(|_| ())
}

/// The device training runs on (with autodiff), or why this binary cannot provide it.
/// `validate` has already rejected combinations no build can run (flex on a GPU);
/// what remains is what this build lacks.
pub fn training_device(hw: &HardwareConfig) -> Result<Device, String> {
    match (hw.backend, hw.device) {
        (_, DeviceKind::Tpu) => Err(
            "no runner backend drives TPUs (burn has no XLA backend; libtorch needs torch_xla)"
                .into(),
        ),
        (Backend::Flex, DeviceKind::Cpu) => Ok(Device::flex().autodiff()),
        (Backend::Flex, other) => Err(format!(
            "the flex backend runs on the CPU only, not on `{other}`"
        )),
        (Backend::Tch, _) => {
            Err("this runner binary was built without the libtorch (`tch`) backend".into())
        }
    }
}

/// The embedded CPU device, without autodiff, for work beside training (reading a run's
/// weights to convert them in `runner export`), whatever backend the run trained on.
pub fn host_device() -> Device {
    Device::flex()
}

/// burn-flex keeps one process-wide RNG: seeding and drawing from several threads at once
/// (parallel tests, say) interleaves draws. Whatever needs reproducible draws holds this.
pub static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// For tests: the flex training device seeded with `seed`, and the guard of [`RNG_LOCK`]
/// that keeps other tests' draws out until it is dropped.
#[cfg(test)]
pub(crate) fn seeded_test_device(seed: u64) -> (std::sync::MutexGuard<'static, ()>, Device) {
    let guard = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(seed);
    (guard, device)
}

#[cfg(test)]
mod tests {
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use super::*;
    use crate::config::types::OptimizerConfig;
    use crate::train::{clip, optim};

    #[derive(Module, Debug)]
    struct Mlp {
        a: Linear,
        ln: LayerNorm,
        b: Linear,
    }

    /// Five AdamW steps with clipping on a fixed batch; the losses as raw bits.
    fn losses(seed: u64) -> Vec<u32> {
        let (_guard, device) = seeded_test_device(seed);
        let mut model = Mlp {
            a: LinearConfig::new(8, 16).init(&device),
            ln: LayerNormConfig::new(16).init(&device),
            b: LinearConfig::new(16, 3).init(&device),
        };
        let cfg = OptimizerConfig {
            lr: Some(1e-2),
            weight_decay: 0.01,
            ..OptimizerConfig::default()
        };
        let mut opt = optim::build(&cfg, &model);
        let x = Tensor::<2>::random(
            [32, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut out = Vec::new();
        for _ in 0..5 {
            let y = model
                .b
                .forward(model.ln.forward(model.a.forward(x.clone())));
            let loss = y.powf_scalar(2.0).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            out.push(loss.into_scalar::<f32>().to_bits());
            let (grads, _) = clip::clip_global_norm(&model, grads, 0.1);
            model = opt.step(1e-2, model, grads);
        }
        out
    }

    #[test]
    fn same_seed_same_losses_bit_for_bit() {
        let first = losses(7);
        assert_eq!(first, losses(7));
        assert_ne!(first, losses(8), "a different seed draws different weights");
        assert!(
            f32::from_bits(first[4]) < f32::from_bits(first[0]),
            "the loss falls"
        );
    }

    #[test]
    fn backends_this_build_lacks_are_explained() {
        let hw = HardwareConfig {
            backend: Backend::Tch,
            device: crate::config::types::Device::Cuda(None),
            ..HardwareConfig::default()
        };
        assert!(
            training_device(&hw)
                .unwrap_err()
                .contains("without the libtorch (`tch`) backend")
        );
    }
}
