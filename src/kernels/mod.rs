//! Fused kernels: one pass where burn's composed ops take many, for the places issue 21's
//! profile found a flex step losing to PyTorch outside its matrix products: AdamW's update
//! (a dozen element-wise ops per parameter, four of them allocating), dropout (a float drawn
//! per element from a ChaCha stream on one thread, a mask kept for backward), LayerNorm and
//! softmax (recorded by burn's autodiff as 5–8 separate ops each way), GELU (libm's
//! `erff` per element), the CausalVAE's per-frame GroupNorm with its SiLU, and its 3-D
//! convolutions (burn-flex's direct loop, replaced by im2col and `gemm`); and, on every
//! backend, the sum of squares of the global gradient norm (no squared copy) and `Linear`
//! over a batch's rows as one product (`linear.rs`: burn recorded a batched product against
//! a broadcast weight, whose gradient was one product per sample, then summed).
//!
//! One backend extension trait, [`FusedOps`], through burn's extension point
//! (`#[backend_extension]`): each method has a default body, either the backend's own op or
//! one composed of burn's ops; burn-flex gets hand-written loops over contiguous `f32`
//! storage (`flex/`, falling back to the default for other dtypes and layouts), libtorch
//! its own kernels (`libtorch.rs`: softmax's backward through tch; PyTorch's fused AdamW,
//! LayerNorm's backward kernel and the multi-tensor norm and scale of gradient clipping
//! (`foreach.rs`, over a list, outside the trait: burn's extension macro takes no list of
//! tensors) through a C++ shim, `libtorch_ops.cpp`, as tch 0.22 does not wrap them).
//! The autodiff backend routes to the inner backend and records the backward of each
//! differentiable kernel itself (`dropout.rs`, `norm.rs`, `gelu.rs`, `group_norm.rs`,
//! `conv3d.rs`): LayerNorm, softmax and the GroupNorm on every backend, dropout, GELU and
//! conv3d on burn-flex (libtorch's are already single kernels, and a seeded mask would cost
//! a GPU a host round trip per layer).
//!
//! AdamW's flex kernel computes what its composed body computes, in the same order of
//! floating-point operations (a test compares it with burn's `AdamW`); the others are
//! compared with burn's ops within float tolerance. The seeded dropout draws other masks than
//! burn's `Dropout` would, from the same device RNG, so a seed still fixes every run.

// burn 0.22 marks burn-tch deprecated in favour of CubeCL; the design card names it.
#![cfg_attr(feature = "tch", allow(deprecated))]

mod adamw;
mod conv3d;
mod dropout;
mod flex;
mod foreach;
mod gelu;
mod group_norm;
#[cfg(feature = "tch")]
mod libtorch;
mod linear;
mod matmul_workspace;
mod norm;
mod sum_squares;

pub use adamw::{AdamWHyper, adamw_step};
pub use conv3d::{conv3d, conv3d_workspace};
pub use dropout::{Mask, dropout, mask_bits};
pub use foreach::{scale_all, sum_squares_all};
pub use gelu::gelu;
pub use group_norm::{FrameNorm, frame_group_norm};
pub use linear::{linear, linear_part};
pub use matmul_workspace::matmul_workspace;
pub use norm::{LayerNorm, softmax_last};
pub use sum_squares::sum_squares;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;

#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FusedOps: Backend {
    /// One AdamW update of one parameter: returns the parameter and both moments, updated
    /// (see [`adamw_step`]).
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: AdamWHyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        adamw::composed::<Self>(param, grad, moment_1, moment_2, hyper)
    }

    /// Σ x² over every element, as a one-element tensor (see [`sum_squares`]): burn's
    /// square, then sum.
    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_sum(Self::float_mul(x.clone(), x))
    }

    /// Dropout with probability `prob` (see [`dropout`]): burn's Bernoulli draw by default.
    fn dropout(x: FloatTensor<Self>, prob: f64) -> FloatTensor<Self> {
        dropout::composed::<Self>(x, prob)
    }

    /// `x` under the seeded mask `mask` ([`mask_bits`]): the forward and backward of the
    /// seeded dropout.
    fn dropout_masked(x: FloatTensor<Self>, mask: Mask) -> FloatTensor<Self> {
        dropout::seeded_on_host::<Self>(x, mask)
    }

    /// LayerNorm over the last dimension with scale `gamma` and shift `beta` (see
    /// [`LayerNorm`]): the backend's own op.
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// LayerNorm's gradients `(dx, dγ, dβ)` from its input, scale and output gradient.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        norm::layer_norm_backward_composed::<Self>(x, gamma, dy, epsilon)
    }

    /// Softmax over the last dimension: the backend's own op.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        <Self as ActivationOps<Self>>::softmax(x, last)
    }

    /// Softmax's input gradient from its output `y` and output gradient `dy`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        norm::softmax_last_backward_composed::<Self>(y, dy)
    }

    /// Exact GELU (see [`gelu`]): the backend's own op.
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu(x)
    }

    /// GELU's input gradient from its input `x` and output gradient `dy`.
    fn gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu_backward(x, dy)
    }

    /// 3-D convolution with a bias (see [`conv3d`]): the backend's own.
    fn conv3d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv3d(x, weight, Some(bias), options)
    }

    /// Its gradients `(dx, dW, db)` from its input, weight, bias and output gradient: the
    /// backend's own.
    fn conv3d_with_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        conv3d::backward_composed::<Self>(x, weight, bias, dy, options)
    }

    /// GroupNorm per frame over `[b, c, t, h, w]`, then SiLU when `how.silu` (see
    /// [`frame_group_norm`]): composed of burn's ops.
    fn frame_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        how: FrameNorm,
    ) -> FloatTensor<Self> {
        group_norm::composed::<Self>(x, gamma, beta, how)
    }

    /// Its gradients `(dx, dγ, dβ)` from its input, scale, shift and output gradient.
    fn frame_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        how: FrameNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        group_norm::backward_composed::<Self>(x, gamma, beta, dy, how)
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn dropout(x: FloatTensor<Self>, prob: f64) -> FloatTensor<Self> {
        dropout::autodiff::<B, C>(x, prob)
    }

    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        norm::layer_norm_autodiff::<B, C>(x, gamma, beta, epsilon)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        norm::softmax_last_autodiff::<B, C>(x)
    }

    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu::autodiff::<B, C>(x)
    }

    fn frame_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        how: FrameNorm,
    ) -> FloatTensor<Self> {
        group_norm::autodiff::<B, C>(x, gamma, beta, how)
    }

    fn conv3d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        conv3d::autodiff::<B, C>(x, weight, bias, options)
    }
}

impl FusedOps for Flex {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: AdamWHyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::adamw_update(param, grad, moment_1, moment_2, hyper)
    }

    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::sum_squares(x)
    }

    fn dropout_masked(x: FloatTensor<Self>, mask: Mask) -> FloatTensor<Self> {
        flex::dropout_masked(x, mask)
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::layer_norm_backward(x, gamma, dy, epsilon)
    }

    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::softmax_last_backward(y, dy)
    }

    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::gelu(x)
    }

    fn gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::gelu_backward(x, dy)
    }

    fn frame_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        how: FrameNorm,
    ) -> FloatTensor<Self> {
        flex::group_norm::forward(x, gamma, beta, how)
    }

    fn frame_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        how: FrameNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::group_norm::backward(x, gamma, beta, dy, how)
    }

    fn conv3d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        flex::conv3d::forward(x, weight, bias, options)
    }

    fn conv3d_with_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::conv3d::backward(x, weight, bias, dy, options)
    }
}

/// The forward of a three-input op with its own backward `op`, recorded as burn's autodiff
/// records its ops: `forward` computes the output from the inner tensors; when the graph
/// tracks it, `state` makes what `op`'s backward keeps from the same three.
fn forward_three<B: Backend, C: CheckpointStrategy, O: Backward<B, 3>>(
    op: O,
    [x, a, b]: [FloatTensor<Autodiff<B, C>>; 3],
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
    state: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> O::State,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [x.node(), a.node(), b.node()];
    let (x, a, b) = (x.into_primitive(), a.into_primitive(), b.into_primitive());
    match op.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(x.clone(), a.clone(), b.clone());
            prep.finish(state(x, a, b), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x, a, b)),
    }
}

/// The backward of a three-input op (input, scale, shift), as burn's `unary` is of a one-input
/// op: takes the output's gradient, computes the three with `f` from the op's state, and hands
/// each tracked parent its own.
fn backward_three<B: Backend, S>(
    ops: Ops<S, 3>,
    grads: &mut Gradients,
    f: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; 3],
) {
    let dy = grads.consume::<B>(&ops.node);
    for (parent, grad) in ops.parents.into_iter().zip(f(ops.state, dy)) {
        if let Some(node) = parent {
            grads.register::<B>(node.id, grad);
        }
    }
}

/// What the kernels' tests share.
#[cfg(test)]
mod test_support {
    use burn::tensor::Tensor;

    pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Each `a[i]` within `tolerance` of `b[i]`, relative beyond magnitude 1.
    pub fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= tolerance * y.abs().max(1.0),
                "{what}: {x} vs {y}"
            );
        }
    }
}
