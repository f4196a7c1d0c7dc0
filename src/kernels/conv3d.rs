//! 3-D convolution with its own backward pass on burn-flex.
//!
//! burn-flex's `conv3d` converts its input to channels-last on one thread, then runs an
//! im2col and a small product per 512-pixel tile; burn computes the backward pass from
//! other convolutions: the input's gradient as a transposed convolution, the weight's as a
//! convolution whose "kernel" is the whole output (one tile, one thread). The `perf` profile
//! of a CausalVAE step put 38% of it in that tile closure and 8% in the transposed
//! convolution. The kernel here (`flex/conv3d.rs`) is one matrix product per tile of output
//! rows for each of the three: `Y = W·cols`, `dW += dY·colsᵀ`, `dcols = Wᵀ·dY` scattered back
//! into `dx` (col2im), with the im2col and col2im split across threads by rows and channels.
//! Other backends keep burn's convolution and its backward (libtorch's are its own kernels).

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex};
use burn::nn::PaddingConfig3d;
use burn::nn::conv::Conv3d;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

use super::FusedOps;

/// `conv`'s forward pass over `x: [b, c_in, d, h, w]`, as `Conv3d::forward` computes it
/// (which it runs for `Same` padding and a convolution without bias).
pub fn conv3d(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    let padding = match conv.padding {
        PaddingConfig3d::Valid => [0, 0, 0],
        PaddingConfig3d::Explicit(d, h, w) => [d, h, w],
        PaddingConfig3d::Same => return conv.forward(x),
    };
    let Some(bias) = &conv.bias else {
        return conv.forward(x);
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::conv3d_with_bias(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

/// The backend's convolution's gradients `(dx, dW, db)`, as burn's autodiff computes them.
pub(super) fn backward_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    dy: FloatTensor<B>,
    options: ConvOptions<3>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dx = B::conv3d_x_backward(x.clone(), weight.clone(), dy.clone(), options.clone());
    let dw = B::conv3d_weight_backward(x.clone(), weight, dy.clone(), options);
    let db = B::conv3d_bias_backward(x, bias, dy);
    (dx, dw, db)
}

pub(super) fn autodiff<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    options: ConvOptions<3>,
) -> FloatTensor<Autodiff<B, C>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() {
        return <Autodiff<B, C> as ModuleOps<_>>::conv3d(x, weight, Some(bias), options);
    }

    #[derive(Debug)]
    struct Conv3dBackward;

    impl<B: FusedOps> Backward<B, 3> for Conv3dBackward {
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            ConvOptions<3>,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            super::backward_three::<B, _>(ops, grads, |(x, weight, bias, options), dy| {
                let (dx, dw, db) = B::conv3d_with_bias_backward(x, weight, bias, dy, options);
                [dx, dw, db]
            });
        }
    }

    super::forward_three::<B, C, _>(
        Conv3dBackward,
        [x, weight, bias],
        |x, weight, bias| B::conv3d_with_bias(x, weight, bias, options.clone()),
        |x, weight, bias| (x, weight, bias, options.clone()),
    )
}

/// Elements of the column buffer [`conv3d`] keeps on burn-flex for a convolution of `c_in`
/// channels and a kernel of `kernel_volume` taps (1 for a pointwise one, stride 1) over
/// `positions` output positions of one sample: for `runner plan`.
pub fn conv3d_workspace(c_in: usize, kernel_volume: usize, positions: usize) -> usize {
    super::flex::conv3d::workspace(c_in, kernel_volume, positions)
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::conv::Conv3dConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    /// Output and the gradients of `x`, `W`, `b` under a weighted sum.
    fn run(conv: &Conv3d, x: &Tensor<5>, w: &Tensor<5>, y: Tensor<5>) -> [Vec<f32>; 4] {
        let g = (y.clone() * w.clone()).sum().backward();
        [
            values(y.inner()),
            values(x.grad(&g).unwrap()),
            values(conv.weight.val().grad(&g).unwrap()),
            values(conv.bias.as_ref().unwrap().val().grad(&g).unwrap()),
        ]
    }

    #[test]
    fn conv3d_and_its_gradients_equal_burns() {
        // The CausalVAE's shapes: 3³ stride 1 padded in space, 1×3×3 stride 2 unpadded, 1³
        // (no columns), 3³ stride 2 in time; odd sizes so that windows fall off every edge.
        // The last has 64 · 27 taps over rows of 41: nine tiles of up to 29 rows a sample. In
        // turn on one thread, so each case reuses the last one's stale column buffer. Its
        // weight gradient sums 20,000 products, in another order than burn's: a wider
        // tolerance.
        let small = ([3, 5], [2, 3, 5, 7, 6]);
        let cases = [
            ([3, 3, 3], [1, 1, 1], 1, small),
            ([1, 3, 3], [1, 2, 2], 0, small),
            ([1, 1, 1], [1, 1, 1], 0, small),
            ([3, 3, 3], [2, 1, 1], 1, small),
            ([3, 3, 3], [1, 1, 1], 1, ([64, 2], [2, 64, 3, 81, 41])),
        ];
        for (kernel, stride, pad, (channels, input)) in cases {
            let tolerance = if input[1] > 3 { 2e-4 } else { 2e-5 };
            let (_guard, device) = crate::train::backend::seeded_test_device(10);
            let mut conv = Conv3dConfig::new(channels, kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig3d::Explicit(0, pad, pad))
                .init(&device);
            let bias = Tensor::<1>::random([channels[1]], Distribution::Normal(0.0, 1.0), &device);
            conv.bias = Some(Param::from_tensor(bias));
            let x =
                Tensor::<5>::random(input, Distribution::Normal(0.0, 1.0), &device).require_grad();
            let y = conv.forward(x.clone());
            let w = Tensor::<5>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
            let ours = run(&conv, &x, &w, conv3d(&conv, x.clone()));
            let burns = run(&conv, &x, &w, y);
            for ((a, b), what) in ours.iter().zip(&burns).zip(["y", "dx", "dW", "db"]) {
                assert_close(a, b, tolerance, &format!("{what} ({kernel:?}, {stride:?})"));
            }
        }
    }
}
