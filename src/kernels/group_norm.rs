//! The CausalVAE's GroupNorm with statistics per frame, and the SiLU that follows it in every
//! ResNet block, as one op with its own backward pass.
//!
//! Composed of burn's ops (as the model had it) a norm and its SiLU are a dozen recorded ops:
//! two strided means for each statistic over `[b, groups, c/groups, t, h·w]`, the centred
//! input, its square, the normalised tensor, the scaled, the shifted, a sigmoid and a product,
//! each kept for backward (five tensors of the input's size). The fused op keeps its input
//! only and recomputes the statistics and the pre-activation in backward, as PyTorch's
//! `native_group_norm` keeps its input and two floats per group (and its SiLU one more
//! tensor). burn-flex gets one loop per pass (`flex/group_norm.rs`); other backends run the
//! composed bodies here, at the backend level, so their autodiff records one op either way.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata};
use burn::nn::GroupNorm;
use burn::tensor::{DType, FloatDType, Scalar, Shape, Tensor};

use super::FusedOps;

/// What the op computes, besides its tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameNorm {
    /// Groups of channels sharing statistics (divides the channel count).
    pub groups: usize,
    pub epsilon: f64,
    /// Whether SiLU follows the norm.
    pub silu: bool,
}

/// `norm` over `x: [b, c, t, h, w]` with statistics per frame (over the group's channels and
/// the frame's pixels), then SiLU when `silu`: `SiLU(γ·(x − μ)/σ + β)`.
///
/// Per frame, frame `t`'s output depends on frames `≤ t` only (the reference pools its
/// statistics over all frames, which lets a later frame shift an earlier one). In `f32`; `f16`
/// and `bf16` inputs are widened to `f32` and back, as burn's own norms widen.
pub fn frame_group_norm(norm: &GroupNorm, x: Tensor<5>, silu: bool) -> Tensor<5> {
    let c = norm.num_channels;
    let (gamma, beta) = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => (gamma.val(), beta.val()),
        // Without an affine transform: unit scale and zero shift, as constants.
        _ => (
            Tensor::ones([c], &x.device()),
            Tensor::zeros([c], &x.device()),
        ),
    };
    let how = FrameNorm {
        groups: norm.num_groups,
        epsilon: norm.epsilon,
        silu,
    };
    let fused = |x: Tensor<5>, gamma: Tensor<1>, beta: Tensor<1>| {
        Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::frame_group_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            how,
        ))
    };
    let original = x.dtype();
    if original == DType::F32 {
        return fused(x, gamma, beta);
    }
    let f32 = FloatDType::F32;
    fused(x.cast(f32), gamma.cast(f32), beta.cast(f32)).cast(FloatDType::from(original))
}

/// The shapes the composed bodies work in: `x` as `[b, groups, c/groups, t, h·w]`, the
/// per-channel vectors as `[1, groups, c/groups, 1, 1]`.
struct Grouped {
    shape: Shape,
    grouped: Shape,
    channel: Shape,
}

impl Grouped {
    fn new(shape: Shape, groups: usize) -> Grouped {
        let [b, c, t, h, w] = [shape[0], shape[1], shape[2], shape[3], shape[4]];
        Grouped {
            shape,
            grouped: Shape::new([b, groups, c / groups, t, h * w]),
            channel: Shape::new([1, groups, c / groups, 1, 1]),
        }
    }
}

/// Mean over the group's channels and the frame's pixels (dims 2 and 4 of the grouped shape).
fn frame_mean<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mean_dim(B::float_mean_dim(x, 4), 2)
}

/// `(x̂, 1/σ)` in the grouped shape.
fn normalised<B: Backend>(x: FloatTensor<B>, g: &Grouped, epsilon: f64) -> [FloatTensor<B>; 2] {
    let x = B::float_reshape(x, g.grouped.clone());
    let dtype = x.dtype();
    let centred = B::float_sub(x.clone(), frame_mean::<B>(x));
    let var = frame_mean::<B>(B::float_mul(centred.clone(), centred.clone()));
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(
        var,
        Scalar::new(epsilon, &dtype),
    )));
    [B::float_mul(centred, rstd.clone()), rstd]
}

/// `γ·x̂ + β` in the grouped shape.
fn affine<B: Backend>(
    x_hat: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    g: &Grouped,
) -> FloatTensor<B> {
    B::float_add(
        B::float_mul(x_hat, B::float_reshape(gamma, g.channel.clone())),
        B::float_reshape(beta, g.channel.clone()),
    )
}

pub(super) fn composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    how: FrameNorm,
) -> FloatTensor<B> {
    let g = Grouped::new(x.shape(), how.groups);
    let [x_hat, _] = normalised::<B>(x, &g, how.epsilon);
    let z = affine::<B>(x_hat, gamma, beta, &g);
    let y = if how.silu {
        B::float_mul(z.clone(), B::sigmoid(z))
    } else {
        z
    };
    B::float_reshape(y, g.shape)
}

/// The op's gradients `(dx, dγ, dβ)` in burn's ops. With `z = γ·x̂ + β` and `s = sigmoid(z)`:
/// `dz = dy·s·(1 + z·(1 − s))` under SiLU (else `dy`), `dβ = Σ dz`, `dγ = Σ dz·x̂`, and with
/// `g = dz·γ`, `dx = (g − mean(g) − x̂·mean(g·x̂)) / σ`, the means per group and frame.
pub(super) fn backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    dy: FloatTensor<B>,
    how: FrameNorm,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let g = Grouped::new(x.shape(), how.groups);
    let c = g.shape[1];
    let dtype = x.dtype();
    let [x_hat, rstd] = normalised::<B>(x, &g, how.epsilon);
    let dy = B::float_reshape(dy, g.grouped.clone());
    let dz = if how.silu {
        let z = affine::<B>(x_hat.clone(), gamma.clone(), beta, &g);
        let s = B::sigmoid(z.clone());
        let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), Scalar::new(1.0, &dtype));
        let slope = B::float_add_scalar(B::float_mul(z, one_minus_s), Scalar::new(1.0, &dtype));
        B::float_mul(dy, B::float_mul(s, slope))
    } else {
        dy
    };
    // Per channel: sum over the batch (0), the frames (3) and the pixels (4).
    let per_channel = |t: FloatTensor<B>| {
        let t = B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(t, 4), 3), 0);
        B::float_reshape(t, Shape::new([c]))
    };
    let d_beta = per_channel(dz.clone());
    let d_gamma = per_channel(B::float_mul(dz.clone(), x_hat.clone()));
    let dx_hat = B::float_mul(dz, B::float_reshape(gamma, g.channel.clone()));
    let mean_g = frame_mean::<B>(dx_hat.clone());
    let mean_gx = frame_mean::<B>(B::float_mul(dx_hat.clone(), x_hat.clone()));
    let dx = B::float_mul(
        B::float_sub(B::float_sub(dx_hat, mean_g), B::float_mul(x_hat, mean_gx)),
        rstd,
    );
    (B::float_reshape(dx, g.shape), d_gamma, d_beta)
}

pub(super) fn autodiff<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    how: FrameNorm,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct FrameNormBackward;

    impl<B: FusedOps> Backward<B, 3> for FrameNormBackward {
        type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FrameNorm);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            super::backward_three::<B, _>(ops, grads, |(x, gamma, beta, how), dy| {
                let (dx, d_gamma, d_beta) = B::frame_group_norm_backward(x, gamma, beta, dy, how);
                [dx, d_gamma, d_beta]
            });
        }
    }

    super::forward_three::<B, C, _>(
        FrameNormBackward,
        [x, gamma, beta],
        |x, gamma, beta| B::frame_group_norm(x, gamma, beta, how),
        |x, gamma, beta| (x, gamma, beta, how),
    )
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::GroupNormConfig;
    use burn::tensor::activation::silu;
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_close(a, b, 2e-5, what);
    }

    /// The model's former per-frame GroupNorm, in burn's tensor ops.
    fn reference(norm: &GroupNorm, x: Tensor<5>, with_silu: bool) -> Tensor<5> {
        let [b, c, t, h, w] = x.dims();
        let g = norm.num_groups;
        let y = x.reshape([b, g, c / g, t, h * w]);
        let mean = y.clone().mean_dim(4).mean_dim(2);
        let centred = y - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(4).mean_dim(2);
        let y = (centred / (var + norm.epsilon).sqrt()).reshape([b, c, t, h, w]);
        let gamma = norm.gamma.as_ref().unwrap().val().reshape([1, c, 1, 1, 1]);
        let beta = norm.beta.as_ref().unwrap().val().reshape([1, c, 1, 1, 1]);
        let y = y * gamma + beta;
        if with_silu { silu(y) } else { y }
    }

    /// Output and gradients of `x`, `γ`, `β` under a weighted sum.
    fn run(norm: &GroupNorm, x: &Tensor<5>, w: &Tensor<5>, y: Tensor<5>) -> [Vec<f32>; 4] {
        let g = (y.clone() * w.clone()).sum().backward();
        [
            values(y.inner()),
            values(x.grad(&g).unwrap()),
            values(norm.gamma.as_ref().unwrap().val().grad(&g).unwrap()),
            values(norm.beta.as_ref().unwrap().val().grad(&g).unwrap()),
        ]
    }

    #[test]
    fn frame_group_norm_and_its_gradients_equal_the_composed_norm() {
        let (_guard, device) = crate::train::backend::seeded_test_device(8);
        let mut norm = GroupNormConfig::new(4, 12).with_epsilon(1e-6).init(&device);
        let random = |shape: [usize; 5], mean: f64, sd: f64| {
            Tensor::<5>::random(shape, Distribution::Normal(mean, sd), &device)
        };
        norm.gamma = Some(Param::from_tensor(
            random([1, 1, 1, 1, 12], 1.0, 0.5).reshape([12]),
        ));
        norm.beta = Some(Param::from_tensor(
            random([1, 1, 1, 1, 12], 0.0, 0.5).reshape([12]),
        ));
        let x = random([2, 12, 3, 5, 7], 0.5, 2.0).require_grad();
        let w = random([2, 12, 3, 5, 7], 0.0, 1.0);
        for with_silu in [true, false] {
            let ours = run(&norm, &x, &w, frame_group_norm(&norm, x.clone(), with_silu));
            let theirs = run(&norm, &x, &w, reference(&norm, x.clone(), with_silu));
            for ((a, b), what) in ours.iter().zip(&theirs).zip(["y", "dx", "dγ", "dβ"]) {
                close(a, b, &format!("{what} (silu: {with_silu})"));
            }
        }
    }

    #[test]
    fn each_frame_is_normalised_on_its_own() {
        let (_guard, device) = crate::train::backend::seeded_test_device(9);
        let norm = GroupNormConfig::new(2, 4).with_epsilon(1e-6).init(&device);
        let x = Tensor::<5>::random([1, 4, 2, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let before = values(frame_group_norm(&norm, x.clone(), false).slice([0..1, 0..4, 0..1]));
        // A later frame scaled and shifted leaves the first frame's output as it was.
        let later = x.clone().slice([0..1, 0..4, 1..2]) * 50.0 + 7.0;
        let x = x.slice_assign([0..1, 0..4, 1..2], later);
        let after = values(frame_group_norm(&norm, x, false).slice([0..1, 0..4, 0..1]));
        assert_eq!(before, after);
    }
}
