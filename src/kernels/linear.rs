//! `Linear` over the rows of a batch as one matrix product.
//!
//! burn 0.22's dispatching backend does not route `linear` to each backend's own op
//! (burn-dispatch's `ModuleOps::linear` is left to the trait's default), so under autodiff a
//! `Linear` on `[batch, seq, d_in]` is recorded as a matmul against the weight broadcast to
//! `[1, d_in, d_out]` plus a bias add. burn's matmul policy keeps the batches apart whenever
//! `seq` fills its 32-row tiles (bert-mini's 128 tokens) or folding them would not make the
//! product squarer (the MAE's 50- and 197-token blocks at width 128 and 192): the weight's
//! gradient is then `batch` separate `[d_in, seq] × [seq, d_out]` products, written out as
//! `[batch, d_in, d_out]` and summed over the batch. PyTorch's `F.linear` folds the rows; so
//! does this, and the weight gradient is one `[d_in, rows] × [rows, d_out]` product.
//! (Upstream: burn-dispatch's `linear` is commented out in 0.22.1; routing it, or folding in
//! the default `linear` whenever the weight is shared, would make this module unnecessary.)

use std::ops::Range;

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer.forward(x)` with every leading dimension of `x` folded into the rows of one
/// `[rows, d_in] × [d_in, d_out]` product.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D <= 2 {
        return layer.forward(x);
    }
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, d_in]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// The output features `cols` of `layer.forward(x)`, from that slice of its weight and bias,
/// rows folded as in [`linear`]: one part of a fused projection (the MAE's q, k and v of
/// timm's one `qkv` layer, which export keeps whole). Each part comes out contiguous, so the
/// heads are a view of it; slicing the output instead leaves strided parts whose reshape
/// copies, and whose gradients burn's autodiff writes into zero-filled tensors of the whole
/// output's size, one per part. Here that happens to the weight, a `d_in × d_out` matrix.
pub fn linear_part<const D: usize>(layer: &Linear, x: Tensor<D>, cols: Range<usize>) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let weight = layer.weight.val().narrow(1, cols.start, cols.len());
    let mut y = x.reshape([rows, d_in]).matmul(weight);
    if let Some(bias) = &layer.bias {
        y = y + bias
            .val()
            .narrow(0, cols.start, cols.len())
            .unsqueeze::<2>();
    }
    let mut out = dims;
    out[D - 1] = cols.len();
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    /// A layer of `d_in → d_out` with random weights and biases, and an input of 64 rows per
    /// sample (burn keeps those batched).
    fn layer_and_input(
        seed: u64,
        d_in: usize,
        d_out: usize,
    ) -> (std::sync::MutexGuard<'static, ()>, Linear, Tensor<3>) {
        let (guard, device) = crate::train::backend::seeded_test_device(seed);
        let mut layer = LinearConfig::new(d_in, d_out).init(&device);
        layer.bias = Some(burn::module::Param::from_tensor(Tensor::random(
            [d_out],
            Distribution::Normal(0.0, 1.0),
            &device,
        )));
        let x = Tensor::<3>::random([3, 64, d_in], Distribution::Normal(0.0, 1.0), &device);
        (guard, layer, x.require_grad())
    }

    /// `y` and the gradients of a fixed weighting of it: dx, dW, db; each pair within 1e-5.
    fn assert_same_output_and_gradients(
        layer: &Linear,
        x: &Tensor<3>,
        ours: Tensor<3>,
        theirs: Tensor<3>,
    ) {
        let w = Tensor::<3>::random(ours.dims(), Distribution::Default, &x.device());
        let grads = |y: Tensor<3>| {
            let g = (y.clone() * w.clone()).sum().backward();
            [
                values(y.inner()),
                values(x.grad(&g).unwrap()),
                values(layer.weight.val().grad(&g).unwrap()),
                values(layer.bias.as_ref().unwrap().val().grad(&g).unwrap()),
            ]
        };
        let (ours, theirs) = (grads(ours), grads(theirs));
        for ((a, b), what) in ours.iter().zip(&theirs).zip(["y", "dx", "dW", "db"]) {
            assert_close(a, b, 1e-5, what);
        }
    }

    #[test]
    fn folding_the_rows_gives_burns_linear_and_its_gradients() {
        let (_guard, layer, x) = layer_and_input(11, 8, 5);
        let ours = linear(&layer, x.clone());
        assert_eq!(ours.dims(), [3, 64, 5]);
        assert_same_output_and_gradients(&layer, &x, ours, layer.forward(x.clone()));
    }

    #[test]
    fn the_parts_of_a_fused_projection_are_its_output_and_gradients() {
        let (_guard, layer, x) = layer_and_input(12, 8, 9);
        // Three parts of three features, put back side by side, against the whole layer.
        let parts = (0..3)
            .map(|i| linear_part(&layer, x.clone(), 3 * i..3 * i + 3))
            .collect::<Vec<_>>();
        assert_eq!(parts[0].dims(), [3, 64, 3]);
        let whole = linear(&layer, x.clone());
        assert_same_output_and_gradients(&layer, &x, Tensor::cat(parts, 2), whole);
    }
}
