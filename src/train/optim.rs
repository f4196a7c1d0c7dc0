//! The optimizer, built from `optimizer:`.
//!
//! AdamW with every value set from the config (burn's defaults differ from PyTorch's:
//! epsilon 1e-5 and weight decay 1e-4), and no weight decay on 1-D parameters — biases and
//! normalisation scales — as MAE's `param_groups_weight_decay` and Hugging Face's Trainer do.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::config::types::{OptimizerConfig, OptimizerName};

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
            let adamw = |weight_decay: f64| {
                AdamWConfig::new()
                    .with_beta_1(cfg.betas[0] as f32)
                    .with_beta_2(cfg.betas[1] as f32)
                    .with_epsilon(cfg.eps as f32)
                    .with_weight_decay(weight_decay as f32)
            };
            adamw(cfg.weight_decay).init().with_group(
                ParamGroup::from_ids(no_decay_ids(model)),
                adamw(0.0).build(),
                None,
            )
        }
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
}
