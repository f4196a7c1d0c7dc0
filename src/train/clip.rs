//! Gradient clipping by the global L2 norm over all parameters, as PyTorch's
//! `clip_grad_norm_` does (burn's `GradientClipping::Norm` clips each tensor on its own).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::kernels::{scale_all, sum_squares_all};

/// Scales `grads` so that their global norm is at most `max_norm` (no clipping when
/// `max_norm` is 0) and returns them with the norm before clipping. The coefficient is
/// `max_norm / (norm + 1e-6)`, capped at 1, exactly PyTorch's.
pub fn clip_global_norm<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let flat = flat_grads(model, &grads);
    let norm = norm_of(flat.clone());
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            /// Puts each scaled gradient back, in the order `flat_grads` took them (the
            /// module's visiting order).
            struct Replace<'a, I> {
                grads: &'a mut GradientsParams,
                scaled: I,
            }
            impl<I: Iterator<Item = Tensor<1>>> ModuleVisitor for Replace<'_, I> {
                fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                    if let Some(g) = self.grads.remove::<D>(p.id) {
                        let scaled = self
                            .scaled
                            .next()
                            .expect("one scaled gradient per gradient");
                        self.grads.register::<D>(p.id, scaled.reshape(g.dims()));
                    }
                }
            }
            let scaled = scale_all(flat, coef);
            model.visit(&mut Replace {
                grads: &mut grads,
                scaled: scaled.into_iter(),
            });
        }
    }
    (grads, norm)
}

/// sqrt(Σ g²) over every parameter's gradient, read back once: on libtorch one multi-tensor
/// norm over all of them; elsewhere one pass per gradient (no squared copy), summed in the
/// module's fixed visiting order, so the result is the same run to run ([`sum_squares_all`]).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    norm_of(flat_grads(model, grads))
}

/// sqrt(Σ g²) over `flat` (see [`global_norm`]), read back once.
fn norm_of(flat: Vec<Tensor<1>>) -> f64 {
    sum_squares_all(flat).map_or(0.0, |sq| f64::from(sq.into_scalar::<f32>()).sqrt())
}

/// Every parameter's gradient, flattened (a view of a contiguous gradient, else a copy), in
/// the module's visiting order.
fn flat_grads<M: Module>(model: &M, grads: &GradientsParams) -> Vec<Tensor<1>> {
    struct Flat<'a> {
        grads: &'a GradientsParams,
        out: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                let n = g.shape().num_elements();
                self.out.push(g.reshape([n]));
            }
        }
    }
    let mut v = Flat {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::prelude::*;

    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    fn grads_of(model: &Two, device: &Device) -> GradientsParams {
        let x = Tensor::<2>::from_floats([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]], device);
        let loss = model.b.forward(model.a.forward(x)).powf_scalar(2.0).sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn flat(model: &Two, grads: &GradientsParams) -> Vec<f32> {
        let mut out = Vec::new();
        for id in [model.a.weight.id, model.b.weight.id] {
            out.extend(
                grads
                    .get::<2>(id)
                    .unwrap()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
        for id in [
            model.a.bias.as_ref().unwrap().id,
            model.b.bias.as_ref().unwrap().id,
        ] {
            out.extend(
                grads
                    .get::<1>(id)
                    .unwrap()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
        out
    }

    /// The model on each device this build has (flex; libtorch's CPU with `tch`, where the
    /// norm and the scale are libtorch's multi-tensor ops).
    fn setup() -> (std::sync::MutexGuard<'static, ()>, Vec<(Two, Device)>) {
        let (guard, devices) = crate::train::backend::seeded_test_devices(3);
        let models = devices
            .into_iter()
            .map(|device| {
                let model = Two {
                    a: LinearConfig::new(3, 5).init(&device),
                    b: LinearConfig::new(5, 2).init(&device),
                };
                (model, device)
            })
            .collect();
        (guard, models)
    }

    #[test]
    fn norm_is_over_all_parameters_together() {
        let (_guard, models) = setup();
        for (model, device) in models {
            norm_is_over_all_parameters_together_on(&model, &device);
        }
    }

    fn norm_is_over_all_parameters_together_on(model: &Two, device: &Device) {
        let grads = grads_of(model, device);
        let want = flat(model, &grads)
            .iter()
            .map(|g| f64::from(*g).powi(2))
            .sum::<f64>()
            .sqrt();
        let got = global_norm(model, &grads);
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    }

    #[test]
    fn clipping_scales_every_gradient_by_one_coefficient() {
        let (_guard, models) = setup();
        for (model, device) in models {
            clipping_scales_every_gradient_by_one_coefficient_on(&model, &device);
        }
    }

    fn clipping_scales_every_gradient_by_one_coefficient_on(model: &Two, device: &Device) {
        let before = flat(model, &grads_of(model, device));
        let (clipped, norm) = clip_global_norm(model, grads_of(model, device), 0.5);
        assert!(
            norm > 0.5,
            "the test needs a norm above the threshold, got {norm}"
        );
        let after = flat(model, &clipped);
        let coef = 0.5 / (norm + 1e-6);
        for (b, a) in before.iter().zip(&after) {
            assert!(
                (f64::from(*a) - f64::from(*b) * coef).abs() < 1e-5,
                "{b} → {a}"
            );
        }
        let new_norm = after
            .iter()
            .map(|g| f64::from(*g).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((new_norm - 0.5).abs() < 1e-4, "{new_norm}");
    }

    #[test]
    fn small_gradients_and_zero_threshold_are_left_alone() {
        let (_guard, models) = setup();
        for (model, device) in models {
            let before = flat(&model, &grads_of(&model, &device));
            let (same, _) = clip_global_norm(&model, grads_of(&model, &device), 1e9);
            assert_eq!(flat(&model, &same), before);
            let (off, _) = clip_global_norm(&model, grads_of(&model, &device), 0.0);
            assert_eq!(flat(&model, &off), before);
        }
    }
}
