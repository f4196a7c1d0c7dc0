//! Σ x² of a tensor in one pass, for the global gradient norm (`train::clip`): burn's
//! `square().sum()` writes a squared copy of every gradient first (31 MB for bert-mini's word
//! embeddings, every step).

use burn::tensor::Tensor;

use super::FusedOps;

/// The sum of the squares of every element of `x`, as a one-element tensor on `x`'s device.
/// On burn-flex the sum runs over fixed blocks in a fixed order, so it is the same run to run
/// whatever the thread count; on libtorch it is `‖x‖₂²` by `linalg_vector_norm`, the norm
/// PyTorch's `clip_grad_norm_` takes of each gradient.
pub fn sum_squares<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::sum_squares(
        x.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    #[test]
    fn sum_squares_equals_burns_square_then_sum() {
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        // Several of the flex kernel's blocks and a ragged last one.
        let n = 3 * (1 << 16) + 123;
        let x = Tensor::<1>::from_floats(
            (0..n)
                .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 3.0)
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        )
        .reshape([3, n / 3]);
        let ours = values(sum_squares(x.clone()));
        let burns = values(x.clone().square().sum());
        assert_eq!(ours.len(), 1);
        assert_close(&ours, &burns, 1e-5, "Σ x²");
        // A strided view takes the composed body and gives the same.
        assert_close(
            &values(sum_squares(x.transpose())),
            &burns,
            1e-5,
            "Σ x² of xᵀ",
        );
    }
}
