//! The optimizer, built from `optimizer:`.
//!
//! AdamW with every value set from the config (burn's defaults differ from PyTorch's:
//! epsilon 1e-5 and weight decay 1e-4), and no weight decay on 1-D parameters — biases and
//! normalisation scales — as MAE's `param_groups_weight_decay` and Hugging Face's Trainer do.
//! The update is [`crate::kernels::adamw_step`], one fused kernel per parameter on burn-flex,
//! with burn's own AdamW state (`AdamWState`), so checkpoints keep their layout.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWState, AdaptiveMomentumState, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::config::types::{OptimizerConfig, OptimizerName};
use crate::kernels::{AdamWHyper, adamw_step};

/// The parameters that get no weight decay: every 1-D tensor.
pub fn no_decay_ids<M: Module>(model: &M) -> Vec<ParamId> {
    struct OneDim(Vec<ParamId>);
    impl ModuleVisitor for OneDim {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut v = OneDim(Vec::new());
    model.visit(&mut v);
    v.0
}

pub fn build<M: Module>(cfg: &OptimizerConfig, model: &M) -> ModuleOptimizer {
    match cfg.name {
        OptimizerName::Adamw => {
            let adamw = |weight_decay: f64| AdamW {
                beta_1: cfg.betas[0] as f32,
                beta_2: cfg.betas[1] as f32,
                epsilon: cfg.eps as f32,
                weight_decay: weight_decay as f32,
            };
            ModuleOptimizer::from(adamw(cfg.weight_decay)).with_group(
                ParamGroup::from_ids(no_decay_ids(model)),
                adamw(0.0),
                None,
            )
        }
    }
}

/// Decoupled-weight-decay Adam (Loshchilov & Hutter), as burn's `AdamW` without AMSGrad,
/// whose state it keeps, stepped by the fused kernel.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // A first step starts from zero moments, which is burn's first step exactly.
        let (time, moment_1, moment_2) = match state {
            Some(s) => (s.momentum.time, s.momentum.moment_1, s.momentum.moment_2),
            None => (0, grad.zeros_like(), grad.zeros_like()),
        };
        let time = time + 1;
        let hyper = AdamWHyper {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time: i32::try_from(time).unwrap_or(i32::MAX),
        };
        let (tensor, moment_1, moment_2) = adamw_step(tensor, grad, moment_1, moment_2, hyper);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use super::*;

    #[derive(Module, Debug)]
    struct Tiny {
        a: Linear,
        ln: LayerNorm,
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            a: LinearConfig::new(3, 4).init(device),
            ln: LayerNormConfig::new(4).init(device),
        }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn weight_decay_spares_biases_and_norm_scales() {
        let (_guard, device) = crate::train::backend::seeded_test_device(1);
        let model = tiny(&device);
        let x = Tensor::<2>::ones([2, 3], &device);
        // A loss with zero gradient everywhere: the update is the decay alone.
        let loss = model.ln.forward(model.a.forward(x)).sum().mul_scalar(0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let cfg = OptimizerConfig {
            weight_decay: 0.5,
            ..OptimizerConfig::default()
        };
        let mut optim = build(&cfg, &model);
        let before_w = values(model.a.weight.val());
        let before_b = values(model.a.bias.as_ref().unwrap().val());
        let before_g = values(model.ln.gamma.val());
        let model = optim.step(0.1, model, grads);
        let after_w = values(model.a.weight.val());
        for (b, a) in before_w.iter().zip(&after_w) {
            assert!(
                (a - b * (1.0 - 0.1 * 0.5)).abs() < 1e-6,
                "weights decay by lr × wd: {b} → {a}"
            );
        }
        assert_eq!(
            values(model.a.bias.as_ref().unwrap().val()),
            before_b,
            "biases do not decay"
        );
        assert_eq!(
            values(model.ln.gamma.val()),
            before_g,
            "norm scales do not decay"
        );
    }

    #[test]
    fn one_dim_parameters_are_found() {
        let (_guard, device) = crate::train::backend::seeded_test_device(2);
        let model = tiny(&device);
        // a.bias, ln.gamma, ln.beta
        assert_eq!(no_decay_ids(&model).len(), 3);
    }

    #[test]
    fn the_fused_adamw_steps_as_burns_adamw() {
        use burn::optim::AdamWConfig;
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        let cfg = OptimizerConfig {
            weight_decay: 0.1,
            ..OptimizerConfig::default()
        };
        let burns = |wd: f64| {
            AdamWConfig::new()
                .with_beta_1(cfg.betas[0] as f32)
                .with_beta_2(cfg.betas[1] as f32)
                .with_epsilon(cfg.eps as f32)
                .with_weight_decay(wd as f32)
        };
        let start = tiny(&device);
        let mut ours = build(&cfg, &start);
        let mut reference = burns(cfg.weight_decay).init().with_group(
            ParamGroup::from_ids(no_decay_ids(&start)),
            burns(0.0).build(),
            None,
        );
        let (mut a, mut b) = (start.clone(), start);
        let x = Tensor::<2>::random([5, 3], burn::tensor::Distribution::Default, &device);
        for step in 0..4 {
            let lr = 1e-2 / f64::from(step + 1);
            let grads = |m: &Tiny| {
                let loss = m.ln.forward(m.a.forward(x.clone())).powi_scalar(3).sum();
                GradientsParams::from_grads(loss.backward(), m)
            };
            let (ga, gb) = (grads(&a), grads(&b));
            a = ours.step(lr, a, ga);
            b = reference.step(lr, b, gb);
        }
        for (x, y) in [
            (values(a.a.weight.val()), values(b.a.weight.val())),
            (values(a.ln.gamma.val()), values(b.ln.gamma.val())),
        ] {
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{x} vs {y}");
            }
        }
    }
}
