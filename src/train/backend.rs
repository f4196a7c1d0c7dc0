//! The one place where `hardware.backend` and `hardware.device` become a burn device, and
//! where this binary says what it can make devices on (`facts`). Whether a configuration can
//! run is the capability table's (`config::capability`); this module only asks it.

use burn::tensor::Device;

use crate::config::capability::{self, DeviceFacts};
use crate::config::types::{Backend, Device as DeviceKind, HardwareConfig};
use crate::error::fail;

/// What this binary can make devices on, here: libtorch compiled in, the CUDA devices and
/// the Metal device it finds (asked of libtorch, which loads it).
pub fn facts() -> DeviceFacts {
    #[cfg(feature = "tch")]
    {
        DeviceFacts {
            tch: true,
            cuda_devices: usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
            mps: tch::utils::has_mps(),
        }
    }
    #[cfg(not(feature = "tch"))]
    {
        DeviceFacts::default()
    }
}

/// The device training runs on (with autodiff), or the capability table's reason this binary
/// or machine cannot provide it. A data-parallel rank on `cuda` takes the GPU of its
/// `local_rank` (as torchrun's workers do).
pub fn training_device(hw: &HardwareConfig, local_rank: usize) -> anyhow::Result<Device> {
    let mut hw = hw.clone();
    if hw.device == DeviceKind::Cuda(None) && capability::world_size(&hw) > 1 {
        hw.device = DeviceKind::Cuda(Some(local_rank as u32));
    }
    if let Err(r) = capability::device(&hw, &facts()) {
        return Err(fail(r.message, r.help));
    }
    crate::train::memory::keep_freed_buffers();
    make(&hw).map(Device::autodiff)
}

/// The device of a combination the table accepted.
fn make(hw: &HardwareConfig) -> anyhow::Result<Device> {
    match (hw.backend, hw.device) {
        (Backend::Flex, DeviceKind::Cpu) => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        (Backend::Tch, kind) => libtorch::device(kind),
        (backend, device) => anyhow::bail!(
            "no device for backend `{}` on `{device}` (the capability table should have said \
             why; please report this)",
            backend.as_str()
        ),
    }
}

/// Where models are initialised: burn-flex's seeded stream, whatever the training device, so
/// a seed gives the same initial weights on every backend (and a parity test can compare
/// one step on two of them). The trainer then forks the model onto the training device.
pub fn init_device() -> Device {
    Device::flex().autodiff()
}

/// The embedded CPU device, without autodiff, for work beside training (reading a run's
/// weights to convert them in `runner export`), whatever backend the run trained on.
pub fn host_device() -> Device {
    Device::flex()
}

/// Seeds the training device's RNG (dropout, on-device noise) and, when it is another
/// backend, the embedded one that initialisation draws from.
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
    let init = init_device();
    if init != *device {
        init.seed(seed);
    }
}

#[cfg(feature = "tch")]
// burn 0.22 marks burn-tch deprecated in favour of CubeCL; the design card names it.
#[allow(deprecated)]
mod libtorch {
    use burn::tensor::Device;

    use crate::config::types::Device as DeviceKind;

    /// The libtorch device for `kind` (which the capability table found on this machine).
    pub fn device(kind: DeviceKind) -> anyhow::Result<Device> {
        Ok(match kind {
            DeviceKind::Cpu => Device::libtorch(),
            DeviceKind::Cuda(index) => Device::libtorch_cuda(index.unwrap_or(0) as usize),
            DeviceKind::Mps => Device::libtorch_mps(),
            DeviceKind::Tpu => anyhow::bail!("libtorch drives no TPUs"),
        })
    }
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

/// For tests that must hold on every backend this build has: the seeded flex training device,
/// plus libtorch's CPU device with the `tch` feature (its dtype rules are stricter than flex's:
/// a bf16 weight meeting an fp32 input is an error there).
#[cfg(test)]
pub(crate) fn seeded_test_devices(seed: u64) -> (std::sync::MutexGuard<'static, ()>, Vec<Device>) {
    let (guard, flex) = seeded_test_device(seed);
    #[allow(unused_mut)]
    let mut devices = vec![flex];
    #[cfg(feature = "tch")]
    {
        let tch = libtorch::device(DeviceKind::Cpu).ok().unwrap().autodiff();
        tch.seed(seed);
        devices.push(tch);
    }
    (guard, devices)
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
    fn a_build_without_libtorch_names_the_feature_and_the_recipe() {
        let hw = HardwareConfig {
            backend: Backend::Tch,
            ..HardwareConfig::default()
        };
        let r = capability::device(&hw, &DeviceFacts::default()).unwrap_err();
        assert_eq!(r.key, "hardware.backend");
        assert!(r.message.contains("without the libtorch (`tch`) backend"));
        assert!(r.help.contains("just setup-tch && just build-tch"));
        assert!(r.help.contains("hardware.backend: flex"));
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn backends_this_build_lacks_are_explained() {
        let hw = HardwareConfig {
            backend: Backend::Tch,
            device: crate::config::types::Device::Cuda(None),
            ..HardwareConfig::default()
        };
        assert_eq!(facts(), DeviceFacts::default());
        let e = training_device(&hw, 0).unwrap_err();
        assert!(format!("{e:#}").contains("without the libtorch"), "{e:#}");
    }

    #[cfg(feature = "tch")]
    #[test]
    fn an_absent_gpu_is_named_before_training() {
        // This machine (and CI) has no GPU; on one with a GPU the first assertion is skipped.
        let hw = |device| HardwareConfig {
            backend: Backend::Tch,
            device,
            ..HardwareConfig::default()
        };
        let f = facts();
        assert!(f.tch);
        if f.cuda_devices == 0 {
            let r =
                capability::device(&hw(crate::config::types::Device::Cuda(None)), &f).unwrap_err();
            assert_eq!(r.key, "hardware.device");
            assert!(r.message.contains("finds no CUDA device"), "{}", r.message);
        }
        let r = capability::device(&hw(crate::config::types::Device::Cuda(Some(99))), &f);
        assert!(r.unwrap_err().message.contains("cuda:99"));
        assert!(training_device(&hw(crate::config::types::Device::Cpu), 0).is_ok());
    }
}
