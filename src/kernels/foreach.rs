//! Ops over a whole list of tensors at once, as PyTorch's multi-tensor `_foreach_*` ops, for
//! the global gradient norm and its clipping (`train::clip`): on libtorch (with the ops shim
//! build.rs compiles) one multi-tensor kernel for the list (one CUDA launch where a loop launches one or two per parameter: a
//! BERT-base has 200 parameters); elsewhere the loop, in the list's order.

use burn::tensor::Tensor;

use super::sum_squares;

/// Σ x² over every element of every tensor of `xs` (the squared global norm), as a
/// one-element tensor; `None` for an empty list. On libtorch the norms of all tensors come
/// from one `_foreach_norm`, as in PyTorch's `clip_grad_norm_`; elsewhere each tensor's
/// [`sum_squares`] is summed in `xs`'s order, so the result is the same run to run.
pub fn sum_squares_all(xs: Vec<Tensor<1>>) -> Option<Tensor<1>> {
    #[cfg(runner_torch_ops)] // libtorch builds with the ops shim
    if let Some(total) = super::libtorch::sum_squares_all(&xs) {
        return Some(total);
    }
    xs.into_iter().map(sum_squares).reduce(|a, b| a + b)
}

/// Each tensor of `xs` times `coef`, as new tensors in `xs`'s order: one `_foreach_mul` on
/// libtorch, one `mul_scalar` per tensor elsewhere.
pub fn scale_all(xs: Vec<Tensor<1>>, coef: f64) -> Vec<Tensor<1>> {
    #[cfg(runner_torch_ops)] // libtorch builds with the ops shim
    if let Some(scaled) = super::libtorch::scale_all(&xs, coef) {
        return scaled;
    }
    xs.into_iter().map(|x| x.mul_scalar(coef as f32)).collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;
    use crate::kernels::test_support::{assert_close, values};

    fn list(device: &burn::tensor::Device) -> Vec<Tensor<1>> {
        [7usize, 1, 300, 64]
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let v: Vec<f32> = (0..n)
                    .map(|i| (((i + k) * 37 % 101) as f32 / 101.0 - 0.5) * (k + 1) as f32)
                    .collect();
                Tensor::<1>::from_floats(v.as_slice(), device)
            })
            .collect()
    }

    #[test]
    fn the_sum_over_a_list_equals_the_sum_of_each_tensors() {
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        let xs = list(&device);
        let want: f32 = xs.iter().map(|x| values(x.clone().square().sum())[0]).sum();
        let got = values(sum_squares_all(xs).unwrap());
        assert_close(&got, &[want], 1e-5, "Σ‖x‖²");
        assert!(sum_squares_all(Vec::new()).is_none());
    }

    #[test]
    fn scaling_a_list_scales_each_tensor_and_keeps_the_order() {
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        let xs = list(&device);
        let scaled = scale_all(xs.clone(), 0.25);
        assert_eq!(scaled.len(), xs.len());
        for (x, s) in xs.into_iter().zip(scaled) {
            assert_close(&values(s), &values(x.mul_scalar(0.25)), 1e-7, "x × 0.25");
        }
    }
}
