//! LayerNorm and softmax with their own backward passes. burn's autodiff records neither as
//! one op: it runs the backend trait's composed default (mean, subtract, square, mean, sqrt,
//! divide, scale, shift; max, subtract, exp, sum, divide), keeps each intermediate for
//! backward and differentiates each. Here the forward is the backend's own fused kernel
//! (burn-flex's, libtorch's `layer_norm` and `softmax`) and the backward one kernel per row on
//! burn-flex (`flex.rs`), libtorch's `_softmax_backward_data` for softmax (`libtorch.rs`), and
//! burn's ops for LayerNorm's on libtorch (tch 0.22 does not wrap its backward kernel).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata};
use burn::module::{Module, Param};
use burn::nn::LayerNormConfig;
use burn::tensor::{DType, Device, FloatDType, Scalar, Shape, Tensor};

use super::FusedOps;

/// burn's `LayerNorm` (the same parameters under the same names, `gamma` and `beta`, so
/// records and checkpoints map as before) whose `forward` trains through [`FusedOps`]:
/// in `f32`, and for `f16`/`bf16` inputs widened to `f32` and back, as burn's own widens.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Option<Param<Tensor<1>>>,
    pub epsilon: f64,
}

impl LayerNorm {
    /// Unit scale, zero shift, as `LayerNormConfig::new(d).with_epsilon(epsilon).init(device)`.
    pub fn new(d: usize, epsilon: f64, device: &Device) -> LayerNorm {
        let burns = LayerNormConfig::new(d).with_epsilon(epsilon).init(device);
        LayerNorm {
            gamma: burns.gamma,
            beta: burns.beta,
            epsilon,
        }
    }

    /// Normalises `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (gamma, beta) = (self.gamma.val(), self.beta.as_ref().map(|b| b.val()));
        let original = x.dtype();
        let beta = match beta {
            Some(beta) if original != DType::F64 => beta,
            beta => return burn::tensor::module::layer_norm(x, gamma, beta, self.epsilon),
        };
        let fused = |x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>| {
            Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::layer_norm(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                self.epsilon,
            ))
        };
        if original == DType::F32 {
            return fused(x, gamma, beta);
        }
        let f32 = FloatDType::F32;
        fused(x.cast(f32), gamma.cast(f32), beta.cast(f32)).cast(FloatDType::from(original))
    }
}

/// Softmax over the last dimension.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::softmax_last(
        x.into_dispatch(),
    ))
}

/// `x` as `[rows, d]`.
fn rows<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    B::float_reshape(x, Shape::new([shape.num_elements() / d, d]))
}

/// LayerNorm's gradients in burn's ops: `(dx, dγ, dβ)` for `y = γ·x̂ + β`, `x̂ = (x − μ)/σ`:
/// `dx = (g − mean(g) − x̂·mean(g·x̂)) / σ` with `g = dy·γ`.
pub(super) fn layer_norm_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    dy: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let (x, dy) = (rows::<B>(x), rows::<B>(dy));
    let d = gamma.shape()[0];
    let dtype = x.dtype();
    let mean = B::float_mean_dim(x.clone(), 1);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
    let sigma = B::float_sqrt(B::float_add_scalar(var, Scalar::new(epsilon, &dtype)));
    let x_hat = B::float_div(centered, sigma.clone());
    let d_beta = B::float_reshape(B::float_sum_dim(dy.clone(), 0), Shape::new([d]));
    let d_gamma = B::float_reshape(
        B::float_sum_dim(B::float_mul(dy.clone(), x_hat.clone()), 0),
        Shape::new([d]),
    );
    let g = B::float_mul(dy, B::float_reshape(gamma, Shape::new([1, d])));
    let mean_g = B::float_mean_dim(g.clone(), 1);
    let mean_gx = B::float_mean_dim(B::float_mul(g.clone(), x_hat.clone()), 1);
    let dx = B::float_div(
        B::float_sub(B::float_sub(g, mean_g), B::float_mul(x_hat, mean_gx)),
        sigma,
    );
    (B::float_reshape(dx, shape), d_gamma, d_beta)
}

/// Softmax's gradient in burn's ops: `dx = y·(dy − Σ dy·y)` over the last dimension.
pub(super) fn softmax_last_backward_composed<B: Backend>(
    y: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(dy.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(dy, dot))
}

pub(super) fn layer_norm_autodiff<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct LayerNormBackward;

    impl<B: FusedOps> Backward<B, 3> for LayerNormBackward {
        type State = (FloatTensor<B>, FloatTensor<B>, f64);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            super::backward_three::<B, _>(ops, grads, |(x, gamma, epsilon), dy| {
                let (dx, d_gamma, d_beta) = B::layer_norm_backward(x, gamma, dy, epsilon);
                [dx, d_gamma, d_beta]
            });
        }
    }

    super::forward_three::<B, C, _>(
        LayerNormBackward,
        [x, gamma, beta],
        |x, gamma, beta| <B as FusedOps>::layer_norm(x, gamma, beta, epsilon),
        // The shift's gradient is the output gradient's sum: β is not kept.
        |x, gamma, _| (x, gamma, epsilon),
    )
}

pub(super) fn softmax_last_autodiff<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let last = x.shape().num_dims() - 1;

    #[derive(Debug)]
    struct SoftmaxBackward;

    impl<B: FusedOps> Backward<B, 1> for SoftmaxBackward {
        type State = FloatTensor<B>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let y = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |dy| {
                B::softmax_last_backward(y, dy)
            });
        }
    }

    let node = x.node();
    let y = B::softmax(x.into_primitive(), last);
    match SoftmaxBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, activation};

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_close(a, b, 1e-5, what);
    }

    #[test]
    fn layer_norm_and_its_gradients_equal_burns() {
        let (_guard, device) = crate::train::backend::seeded_test_device(6);
        let random =
            |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.5, 2.0), &device);
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-6).init(&device);
        norm.gamma = Param::from_tensor(random([1, 1, 24]).reshape([24]));
        norm.beta = Some(Param::from_tensor(random([1, 1, 24]).reshape([24])));
        let ours = LayerNorm {
            gamma: norm.gamma.clone(),
            beta: norm.beta.clone(),
            epsilon: 1e-6,
        };
        let (x, w) = (random([3, 7, 24]).require_grad(), random([3, 7, 24]));
        let grads = |y: Tensor<3>| {
            let g = (y.clone() * w.clone()).sum().backward();
            let beta = norm.beta.as_ref().unwrap().val();
            [
                values(y.inner()),
                values(x.grad(&g).unwrap()),
                values(norm.gamma.val().grad(&g).unwrap()),
                values(beta.grad(&g).unwrap()),
            ]
        };
        let ours = grads(ours.forward(x.clone()));
        let burns = grads(norm.forward(x.clone()));
        for ((a, b), what) in ours.iter().zip(&burns).zip(["y", "dx", "dγ", "dβ"]) {
            close(a, b, what);
        }
    }

    #[test]
    fn softmax_and_its_gradient_equal_burns() {
        let (_guard, device) = crate::train::backend::seeded_test_device(7);
        let x = Tensor::<4>::random([2, 3, 5, 40], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let w = Tensor::<4>::random([2, 3, 5, 40], Distribution::Default, &device);
        let grads = |y: Tensor<4>| {
            let g = (y.clone() * w.clone()).sum().backward();
            [values(y.inner()), values(x.grad(&g).unwrap())]
        };
        let ours = grads(softmax_last(x.clone()));
        let burns = grads(activation::softmax(x.clone(), 3));
        close(&ours[0], &burns[0], "y");
        close(&ours[1], &burns[1], "dx");
    }
}
