//! The one place where `hardware.backend` and `hardware.device` become a burn device.

use burn::tensor::Device;

use crate::config::machine::DeviceProblem;
use crate::config::types::{Backend, Device as DeviceKind, HardwareConfig};

/// Whether this binary can train on `hw` here, and if not why (for `run`'s and
/// `validate --strict`'s checks, which run before any data is read).
pub fn check(hw: &HardwareConfig) -> Result<(), DeviceProblem> {
    resolve(hw).map(|_| ())
}

/// What `run` and `validate --strict` say when the configuration asks for libtorch and this
/// binary has none. Defined in every build so that its test also runs in the libtorch build,
/// the one CI tests in (the default build is only type-checked there).
#[cfg_attr(feature = "tch", allow(dead_code))]
fn no_tch() -> DeviceProblem {
    DeviceProblem {
        key: "hardware.backend",
        message: "this runner binary was built without the libtorch (`tch`) backend".into(),
        help: "build one with `just setup-tch && just build-tch` (cargo build --release \
            --features tch, libtorch from the torch 2.9.0 wheel; see the README's GPU section), \
            or use hardware.backend: flex (e.g. --profile cpu)"
            .into(),
    }
}

/// The device training runs on (with autodiff), or why this binary or machine cannot
/// provide it. A data-parallel rank on `cuda` takes the GPU of its `local_rank` (as torchrun's
/// workers do).
pub fn training_device(hw: &HardwareConfig, local_rank: usize) -> Result<Device, String> {
    let mut hw = hw.clone();
    if hw.device == DeviceKind::Cuda(None) && hw.nnodes * hw.nproc_per_node > 1 {
        hw.device = DeviceKind::Cuda(Some(local_rank as u32));
    }
    resolve(&hw).map_err(|p| format!("{}; {}", p.message, p.help))
}

/// `validate` has already rejected combinations no build can run (flex on a GPU); what
/// remains is what this build or this machine lacks.
fn resolve(hw: &HardwareConfig) -> Result<Device, DeviceProblem> {
    let problem = |key, message: String, help: &str| DeviceProblem {
        key,
        message,
        help: help.into(),
    };
    let device = match (hw.backend, hw.device) {
        (_, DeviceKind::Tpu) => Err(problem(
            "hardware.device",
            "no runner backend drives TPUs (burn has no XLA backend; libtorch needs torch_xla)"
                .into(),
            "train with a CUDA or CPU profile",
        )),
        (Backend::Flex, DeviceKind::Cpu) => Ok(Device::flex().autodiff()),
        (Backend::Flex, other) => Err(problem(
            "hardware.device",
            format!("the flex backend runs on the CPU only, not on `{other}`"),
            "use hardware.backend: tch for GPUs, or device: cpu",
        )),
        #[cfg(feature = "tch")]
        (Backend::Tch, kind) => libtorch::device(kind)
            .map(|d| d.autodiff())
            .map_err(|(message, help)| problem("hardware.device", message, help)),
        #[cfg(not(feature = "tch"))]
        (Backend::Tch, _) => Err(no_tch()),
    }?;
    #[cfg(feature = "tch")]
    if hw.nnodes * hw.nproc_per_node > 1 {
        collective_check(hw)
            .map_err(|(message, help)| problem("hardware.dist_backend", message, help))?;
    }
    Ok(device)
}

/// Whether this binary has the process-group backend a data-parallel `hw` asks for.
#[cfg(feature = "tch")]
fn collective_check(hw: &HardwareConfig) -> Result<(), (String, &'static str)> {
    use crate::config::types::DistBackend;
    let backend = hw.dist_backend.unwrap_or(if hw.device.is_cuda() {
        DistBackend::Nccl
    } else {
        DistBackend::Gloo
    });
    #[cfg(runner_c10d)]
    {
        let name = crate::dist::group::backend_name(backend);
        if crate::dist::c10d::has(name) {
            return Ok(());
        }
        Err((
            format!("this runner binary was built without c10d's {name} process group"),
            if backend == DistBackend::Gloo {
                "install gloo's headers (apt-get install libgloo-dev) and rebuild (`just build-tch`)"
            } else {
                "rebuild after `just setup-tch`, which installs the CUDA and NCCL headers the build needs"
            },
        ))
    }
    #[cfg(not(runner_c10d))]
    {
        let _ = backend;
        Err((
            "this runner binary was built without libtorch's c10d (data-parallel training)".into(),
            "rebuild with `just build-tch`",
        ))
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

    /// The libtorch device for `kind`, once libtorch confirms it exists: a missing GPU is an
    /// error at start, not a crash at the first tensor. Errors are (what, how to fix it).
    pub fn device(kind: DeviceKind) -> Result<Device, (String, &'static str)> {
        match kind {
            DeviceKind::Cpu => Ok(Device::libtorch()),
            DeviceKind::Cuda(index) => {
                let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                let wanted = index.unwrap_or(0) as usize;
                if count == 0 {
                    Err((
                        format!(
                            "`{kind}` asked for, but libtorch finds no CUDA device (no NVIDIA GPU \
                             or driver here, CUDA_VISIBLE_DEVICES hides them, or the torch \
                             wheel runner was built against has no CUDA)"
                        ),
                        "use hardware.device: cpu (e.g. --profile cpu), or run on a GPU machine",
                    ))
                } else if wanted >= count {
                    let valid = if count == 1 {
                        "cuda:0".to_string()
                    } else {
                        format!("cuda:0 to cuda:{}", count - 1)
                    };
                    Err((
                        format!(
                            "`{kind}` does not exist: libtorch finds {count} CUDA device{} \
                             ({valid})",
                            if count == 1 { "" } else { "s" }
                        ),
                        "pick one of those, or check CUDA_VISIBLE_DEVICES",
                    ))
                } else {
                    Ok(Device::libtorch_cuda(wanted))
                }
            }
            DeviceKind::Mps => {
                if tch::utils::has_mps() {
                    Ok(Device::libtorch_mps())
                } else {
                    Err((
                        "`mps` asked for, but libtorch finds no Metal device (MPS needs macOS \
                         on Apple silicon)"
                            .into(),
                        "use hardware.device: cpu",
                    ))
                }
            }
            DeviceKind::Tpu => Err(("libtorch drives no TPUs".into(), "use cuda or cpu")),
        }
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
        let problem = no_tch();
        assert_eq!(problem.key, "hardware.backend");
        assert!(
            problem
                .message
                .contains("without the libtorch (`tch`) backend")
        );
        assert!(problem.help.contains("just setup-tch && just build-tch"));
        assert!(problem.help.contains("hardware.backend: flex"));
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn backends_this_build_lacks_are_explained() {
        let hw = HardwareConfig {
            backend: Backend::Tch,
            device: crate::config::types::Device::Cuda(None),
            ..HardwareConfig::default()
        };
        assert_eq!(check(&hw).unwrap_err(), no_tch());
    }

    #[cfg(feature = "tch")]
    #[test]
    fn data_parallel_cpu_training_has_gloo() {
        let hw = HardwareConfig {
            backend: Backend::Tch,
            nproc_per_node: 2,
            ..HardwareConfig::default()
        };
        assert!(
            check(&hw).is_ok(),
            "{:?}",
            check(&hw).err().map(|p| p.message)
        );
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
        if tch::Cuda::device_count() == 0 {
            let p = check(&hw(crate::config::types::Device::Cuda(None))).unwrap_err();
            assert_eq!(p.key, "hardware.device");
            assert!(p.message.contains("finds no CUDA device"), "{}", p.message);
        }
        let p = check(&hw(crate::config::types::Device::Cuda(Some(99)))).unwrap_err();
        assert!(p.message.contains("cuda:99"), "{}", p.message);
        assert!(check(&hw(crate::config::types::Device::Cpu)).is_ok());
    }
}
