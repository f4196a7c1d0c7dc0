//! Mixed precision, built on burn 0.22, which has no autocast, master weights or loss scaler.
//!
//! The scheme is Megatron's `--bf16`/`--fp16` (Apex O2), not PyTorch autocast:
//! - The model the optimizer sees (the *master*) stays fp32, and so does the AdamW state,
//!   whose moments are made from the gradients the optimizer receives (fp32 here).
//! - Before each step, [`Precision::compute_model`] casts every float parameter to bf16/fp16,
//!   detached, as a new leaf under the same `ParamId`. The job runs forward and backward on
//!   that copy: its inputs follow the parameters' dtype (each job builds its input tensors in
//!   `model.float_dtype()`), and it casts the model's output to fp32 before the loss, as
//!   Megatron computes its cross-entropy in fp32.
//! - [`Precision::master_grads`] casts each micro-batch's gradients back to fp32 (and divides out
//!   the loss scale) before they are accumulated, clipped and applied to the master.
//! - fp16 only: the loss is multiplied by a dynamic scale before backward, so small gradients
//!   do not flush to zero in fp16. A step whose gradients overflow (a non-finite norm) is
//!   skipped and the scale halves; after `loss_scale_growth_interval` clean steps it doubles
//!   (torch.amp.GradScaler's rule, which starts from 65536 and grows every 2000 steps too).
//!
//! Evaluation runs on the fp32 master: exact, and the eval code reads fp32 tensors only.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::types::{Dtype, PrecisionConfig};

/// How forward and backward compute, and the fp16 loss scaler.
#[derive(Debug, Clone)]
pub struct Precision {
    compute: FloatDType,
    scaler: Option<LossScaler>,
}

impl Precision {
    pub fn new(cfg: &PrecisionConfig) -> Precision {
        let compute = match cfg.dtype {
            Dtype::Fp32 => FloatDType::F32,
            Dtype::Bf16 => FloatDType::BF16,
            Dtype::Fp16 => FloatDType::F16,
        };
        let scaler = (cfg.dtype == Dtype::Fp16).then_some(LossScaler {
            state: LossScale {
                scale: cfg.init_loss_scale,
                clean_steps: 0,
                skipped_steps: 0,
            },
            growth_interval: cfg.loss_scale_growth_interval,
        });
        Precision { compute, scaler }
    }

    /// The model forward and backward run on: `master` itself in fp32, else a detached copy
    /// in the low precision with the same parameter ids (so its gradients name the master's
    /// parameters).
    pub fn compute_model<M: Module>(&self, master: &M) -> M {
        if self.compute == FloatDType::F32 {
            return master.clone();
        }
        master.clone().map(&mut CastParams(self.compute))
    }

    /// What the loss is multiplied by before backward (the fp16 loss scale, else 1).
    pub fn loss_multiplier(&self) -> f64 {
        self.scaler.as_ref().map_or(1.0, |s| s.state.scale)
    }

    /// `grads` of the compute model as fp32 gradients of the master, loss scale divided out.
    pub fn master_grads<M: Module>(&self, master: &M, grads: GradientsParams) -> GradientsParams {
        if self.compute == FloatDType::F32 {
            return grads;
        }
        struct ToMaster {
            grads: GradientsParams,
            unscale: Option<f32>,
        }
        impl ModuleVisitor for ToMaster {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.remove::<D>(p.id) {
                    let g = g.cast(FloatDType::F32);
                    let g = match self.unscale {
                        Some(u) => g.mul_scalar(u),
                        None => g,
                    };
                    self.grads.register::<D>(p.id, g);
                }
            }
        }
        let scale = self.loss_multiplier();
        let mut v = ToMaster {
            grads,
            unscale: (scale != 1.0).then_some((1.0 / scale) as f32),
        };
        master.visit(&mut v);
        v.grads
    }

    /// After a step's gradients are known: whether to apply them. Without a loss scaler, always
    /// (the trainer stops on non-finite gradients itself). With one, a non-finite gradient norm
    /// is an overflow: the step is skipped and the scale halves; an error once the scale would
    /// fall below 1, where the gradients are non-finite without any scaling.
    pub fn after_backward(&mut self, grad_norm: f64, step: u64) -> Result<Verdict> {
        let Some(scaler) = &mut self.scaler else {
            return Ok(Verdict::Apply);
        };
        let s = &mut scaler.state;
        if grad_norm.is_finite() {
            s.clean_steps += 1;
            if s.clean_steps >= scaler.growth_interval {
                s.scale *= 2.0;
                s.clean_steps = 0;
            }
            return Ok(Verdict::Apply);
        }
        if s.scale / 2.0 < 1.0 {
            bail!(
                "fp16 gradients are non-finite at step {step} even at loss scale {}: the model \
                 overflows fp16 itself. Use precision.dtype: bf16 (same speed on A100/H100, fp32's \
                 range), lower optimizer.lr, or check the data",
                s.scale
            );
        }
        let from = s.scale;
        s.scale /= 2.0;
        s.clean_steps = 0;
        s.skipped_steps += 1;
        Ok(Verdict::Skip { from, to: s.scale })
    }

    /// The loss scaler's state, for checkpoints and metrics (fp16 only).
    pub fn loss_scale(&self) -> Option<LossScale> {
        self.scaler.as_ref().map(|s| s.state)
    }

    /// Restores the loss scaler from a checkpoint (a checkpoint without one keeps the initial
    /// scale: it was written by an fp32 or bf16 run).
    pub fn restore(&mut self, state: Option<LossScale>) {
        if let (Some(scaler), Some(state)) = (&mut self.scaler, state) {
            scaler.state = state;
        }
    }
}

/// What to do with a step's gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Apply,
    /// fp16 overflow: the update is skipped and the loss scale goes `from` → `to`.
    Skip {
        from: f64,
        to: f64,
    },
}

/// The dynamic loss scale, the clean steps since it last changed, and the updates skipped
/// for overflow so far (over resumed segments too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    pub clean_steps: u32,
    pub skipped_steps: u64,
}

#[derive(Debug, Clone)]
struct LossScaler {
    state: LossScale,
    growth_interval: u32,
}

/// Casts every float parameter to one dtype as a new leaf (same id, same trainability).
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| {
            let grad = t.is_require_grad();
            let t = t.cast(dtype).detach();
            if grad { t.require_grad() } else { t }
        })
    }
}

/// For the jobs' tests: `loss` on a bf16 copy of `master` (as the trainer runs it) is finite,
/// within `tol` (relative) of the fp32 loss, and yields finite fp32 gradients under the
/// master's parameter ids. It proves a model computes in its parameters' dtype
/// from end to end (inputs cast at entry, fp32 loss), on any backend that has bf16.
#[cfg(test)]
pub(crate) fn assert_bf16_follows_fp32<M: Module>(
    master: &M,
    loss: impl Fn(&M) -> Tensor<1>,
    tol: f64,
) {
    let exact = f64::from(loss(master).into_scalar::<f32>());
    let precision = Precision::new(&PrecisionConfig {
        dtype: Dtype::Bf16,
        ..PrecisionConfig::default()
    });
    let compute = precision.compute_model(master);
    let l = loss(&compute);
    assert_eq!(l.dtype(), burn::tensor::DType::F32, "the loss is fp32");
    let value = f64::from(l.clone().into_scalar::<f32>());
    assert!(
        value.is_finite() && (value - exact).abs() <= tol * exact.abs().max(1e-3),
        "bf16 loss {value} vs fp32 {exact}"
    );
    let grads = precision.master_grads(master, GradientsParams::from_grads(l.backward(), &compute));
    struct Check<'a>(&'a GradientsParams, usize);
    impl ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let Some(g) = self.0.get::<D>(p.id) else {
                return;
            };
            assert_eq!(g.dtype(), burn::tensor::DType::F32);
            let v: Vec<f32> = g.into_data().try_to_vec().unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "a non-finite gradient");
            self.1 += 1;
        }
    }
    let mut check = Check(&grads, 0);
    master.visit(&mut check);
    assert!(check.1 > 0);
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;

    use burn::tensor::DType;

    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    fn cfg(dtype: Dtype) -> PrecisionConfig {
        PrecisionConfig {
            dtype,
            init_loss_scale: 1024.0,
            loss_scale_growth_interval: 3,
        }
    }

    fn loss(model: &Two, device: &Device) -> Tensor<1> {
        let dtype = model.a.weight.val().dtype();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 0.25, -1.0], [2, 3]),
            (device, dtype),
        );
        model
            .b
            .forward(model.a.forward(x))
            .cast(FloatDType::F32)
            .powf_scalar(2.0)
            .mean()
            .reshape([1])
    }

    fn grad_values(model: &Two, grads: &GradientsParams) -> Vec<f32> {
        let mut out = Vec::new();
        for id in [model.a.weight.id, model.b.weight.id] {
            let g = grads.get::<2>(id).expect("a gradient for every weight");
            assert_eq!(g.dtype(), DType::F32, "master gradients are fp32");
            out.extend(g.into_data().try_to_vec::<f32>().unwrap());
        }
        out
    }

    /// The bf16 (and scaled fp16) copy yields fp32 gradients under the master's ids that agree
    /// with the fp32 gradients to low-precision accuracy, and the master stays fp32.
    #[test]
    fn low_precision_gradients_reach_the_fp32_master() {
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        let master = Two {
            a: LinearConfig::new(3, 8).init(&device),
            b: LinearConfig::new(8, 2).init(&device),
        };
        let exact = {
            let grads = GradientsParams::from_grads(loss(&master, &device).backward(), &master);
            grad_values(&master, &grads)
        };
        for dtype in [Dtype::Bf16, Dtype::Fp16] {
            let precision = Precision::new(&cfg(dtype));
            let compute = precision.compute_model(&master);
            assert_ne!(compute.a.weight.val().dtype(), DType::F32);
            assert_eq!(compute.a.weight.id, master.a.weight.id);
            let scaled = loss(&compute, &device).mul_scalar(precision.loss_multiplier());
            let grads = GradientsParams::from_grads(scaled.backward(), &compute);
            let grads = precision.master_grads(&master, grads);
            let got = grad_values(&master, &grads);
            let tol = if dtype == Dtype::Bf16 { 3e-2 } else { 4e-3 };
            for (g, e) in got.iter().zip(&exact) {
                assert!(
                    (g - e).abs() <= tol * (1.0 + e.abs()),
                    "{dtype:?}: {g} vs fp32 {e}"
                );
            }
            assert_eq!(master.a.weight.val().dtype(), DType::F32);
        }
    }

    #[test]
    fn fp32_is_the_master_itself() {
        let (_guard, device) = crate::train::backend::seeded_test_device(4);
        let master = Two {
            a: LinearConfig::new(3, 4).init(&device),
            b: LinearConfig::new(4, 2).init(&device),
        };
        let precision = Precision::new(&cfg(Dtype::Fp32));
        assert_eq!(precision.loss_multiplier(), 1.0);
        assert_eq!(precision.loss_scale(), None);
        let compute = precision.compute_model(&master);
        assert_eq!(
            compute.a.weight.val().into_data(),
            master.a.weight.val().into_data()
        );
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_grows_after_clean_steps() {
        let mut p = Precision::new(&cfg(Dtype::Fp16));
        assert_eq!(p.loss_multiplier(), 1024.0);
        assert_eq!(
            p.after_backward(f64::INFINITY, 1).unwrap(),
            Verdict::Skip {
                from: 1024.0,
                to: 512.0
            }
        );
        assert_eq!(
            p.after_backward(f64::NAN, 2).unwrap(),
            Verdict::Skip {
                from: 512.0,
                to: 256.0
            }
        );
        // Growth interval 3: two clean steps keep the scale, the third doubles it.
        for step in 3..5 {
            assert_eq!(p.after_backward(0.5, step).unwrap(), Verdict::Apply);
            assert_eq!(p.loss_multiplier(), 256.0);
        }
        assert_eq!(p.after_backward(0.5, 5).unwrap(), Verdict::Apply);
        assert_eq!(p.loss_multiplier(), 512.0);
        assert_eq!(p.loss_scale().unwrap().clean_steps, 0);
        // An overflow resets the clean count.
        p.after_backward(0.5, 6).unwrap();
        p.after_backward(f64::INFINITY, 7).unwrap();
        assert_eq!(
            p.loss_scale().unwrap(),
            LossScale {
                scale: 256.0,
                clean_steps: 0,
                skipped_steps: 3
            }
        );
    }

    #[test]
    fn overflow_without_any_scale_left_stops_the_run() {
        let mut p = Precision::new(&PrecisionConfig {
            init_loss_scale: 1.0,
            ..cfg(Dtype::Fp16)
        });
        let err = p.after_backward(f64::INFINITY, 9).unwrap_err().to_string();
        assert!(err.contains("step 9") && err.contains("bf16"), "{err}");
        // bf16 and fp32 have no scaler: the trainer's own non-finite check applies.
        let mut bf16 = Precision::new(&cfg(Dtype::Bf16));
        assert_eq!(
            bf16.after_backward(f64::INFINITY, 1).unwrap(),
            Verdict::Apply
        );
    }

    #[test]
    fn a_restored_scale_continues_where_the_checkpoint_left_it() {
        let mut p = Precision::new(&cfg(Dtype::Fp16));
        let saved = LossScale {
            scale: 64.0,
            clean_steps: 2,
            skipped_steps: 5,
        };
        p.restore(Some(saved));
        assert_eq!(p.loss_scale(), Some(saved));
        p.after_backward(1.0, 1).unwrap();
        assert_eq!(p.loss_multiplier(), 128.0);
        p.restore(None);
        assert_eq!(
            p.loss_multiplier(),
            128.0,
            "no saved scale: keep the current one"
        );
    }
}
