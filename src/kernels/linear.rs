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

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    #[test]
    fn folding_the_rows_gives_burns_linear_and_its_gradients() {
        let (_guard, device) = crate::train::backend::seeded_test_device(11);
        let layer = LinearConfig::new(8, 5).init(&device);
        // 64 rows per sample: burn keeps these batched.
        let x =
            Tensor::<3>::random([3, 64, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<3>::random([3, 64, 5], Distribution::Default, &device);
        let grads = |y: Tensor<3>| {
            let g = (y.clone() * w.clone()).sum().backward();
            [
                values(y.inner()),
                values(x.grad(&g).unwrap()),
                values(layer.weight.val().grad(&g).unwrap()),
                values(layer.bias.as_ref().unwrap().val().grad(&g).unwrap()),
            ]
        };
        let ours = grads(linear(&layer, x.clone()));
        assert_eq!(linear(&layer, x.clone()).dims(), [3, 64, 5]);
        let burns = grads(layer.forward(x.clone()));
        for ((a, b), what) in ours.iter().zip(&burns).zip(["y", "dx", "dW", "db"]) {
            assert_close(a, b, 1e-5, what);
        }
    }
}
