//! Dropout whose mask is a function of a seed and each element's index (SplitMix64 over
//! the index, as counter-based generators such as PyTorch's Philox are), so the backward pass
//! regenerates it instead of keeping it, and one pass draws and applies it.
//!
//! burn's `Dropout` draws a float per element from a ChaCha stream, one at a time on one
//! thread (a tenth of a bert-mini step on flex in issue 21's profile), multiplies, then
//! scales, and autodiff keeps the float mask for the backward pass. Here the seed itself is
//! one draw from the device's RNG, so a seed still fixes every mask, and the gradient
//! checkpointing of `train::recompute`, which reseeds the device before each stage, draws the
//! same masks again.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata};
use burn::nn::Dropout;
use burn::tensor::{Distribution, IntDType, Scalar, Shape, Tensor, TensorData, read_sync};

use super::FusedOps;

/// `layer` applied to `x` as burn's `Dropout::forward` applies it (only while training on an
/// autodiff device, and only with a probability above 0), with the mask drawn by
/// [`mask_bits`] on burn-flex and by burn's own `Bernoulli` draw elsewhere.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::dropout(
        x.into_dispatch(),
        layer.prob,
    ))
}

/// 32 random bits for element `i` under `seed`: half of one SplitMix64 output (Steele, Lea
/// and Flood 2014), the other half serving element `i ^ 1`.
#[inline]
pub fn mask_bits(seed: u64, i: usize) -> u32 {
    let mut z = seed.wrapping_add(((i >> 1) as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if i & 1 == 0 {
        z as u32
    } else {
        (z >> 32) as u32
    }
}

/// What an element needs: kept when its bits fall below `threshold`, then scaled by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mask {
    pub seed: u64,
    pub threshold: u64,
    pub scale: f32,
}

impl Mask {
    pub fn new(prob: f64, seed: u64) -> Mask {
        let keep = 1.0 - prob;
        Mask {
            seed,
            threshold: (keep * 4_294_967_296.0) as u64,
            // burn's `Dropout` scales by `1 / keep` computed in f64.
            scale: (1.0 / keep) as f32,
        }
    }

    #[inline]
    pub fn apply(&self, i: usize, v: f32) -> f32 {
        if u64::from(mask_bits(self.seed, i)) < self.threshold {
            v * self.scale
        } else {
            0.0
        }
    }
}

/// A seed from the device's RNG: two 32-bit draws.
fn draw_seed<B: Backend>(x: &FloatTensor<B>) -> u64 {
    let device = x.device();
    let draws = B::int_random(
        Shape::new([2]),
        Distribution::Uniform(0.0, 4_294_967_296.0),
        &device,
        IntDType::I64,
    );
    let data = read_sync(B::int_into_data(draws)).expect("reading two integers on the host");
    let v: Vec<i64> = data
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64 draws");
    ((v[0] as u64) << 32) | (v[1] as u64 & 0xffff_ffff)
}

/// burn's own dropout: a `Bernoulli(keep)` mask, the product, the scale.
pub(super) fn composed<B: Backend>(x: FloatTensor<B>, prob: f64) -> FloatTensor<B> {
    let keep = 1.0 - prob;
    let dtype = x.dtype();
    let mask = B::float_random(
        x.shape(),
        Distribution::Bernoulli(keep),
        &x.device(),
        dtype.into(),
    );
    B::float_mul_scalar(B::float_mul(x, mask), Scalar::new(1.0 / keep, &dtype))
}

/// The seeded mask applied on the host, for backends without a kernel of their own (unused
/// where [`FusedOps::dropout`] keeps burn's draw; correct wherever it is called).
pub(super) fn seeded_on_host<B: Backend>(x: FloatTensor<B>, mask: Mask) -> FloatTensor<B> {
    let (shape, dtype, device) = (x.shape(), x.dtype(), x.device());
    let v: Vec<f32> = read_sync(B::float_into_data(x))
        .expect("reading a tensor on the host")
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values");
    let out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &e)| mask.apply(i, e))
        .collect();
    B::float_from_data(TensorData::new(out, shape).convert_dtype(dtype), &device)
}

/// Dropout on an autodiff device: on burn-flex the seeded kernel with a backward that applies
/// the same mask to the gradient (nothing kept but the seed); elsewhere burn's ops, recorded
/// as usual.
pub(super) fn autodiff<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    prob: f64,
) -> FloatTensor<Autodiff<B, C>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() {
        return composed::<Autodiff<B, C>>(x, prob);
    }

    #[derive(Debug)]
    struct SeededDropout;

    impl<B: FusedOps> Backward<B, 1> for SeededDropout {
        type State = Mask;

        fn backward(self, ops: Ops<Mask, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let mask = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                B::dropout_masked(grad, mask)
            });
        }
    }

    let mask = Mask::new(prob, draw_seed::<B>(x.primitive()));
    let node = x.node();
    let inner = x.into_primitive();
    match SeededDropout
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(mask, B::dropout_masked(inner, mask)),
        OpsKind::UnTracked(prep) => prep.finish(B::dropout_masked(inner, mask)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::values;
    use burn::nn::DropoutConfig;

    #[test]
    fn the_mask_keeps_its_share_and_scales_what_it_keeps() {
        let mask = Mask::new(0.1, 42);
        let n = 200_000;
        let kept = (0..n).filter(|&i| mask.apply(i, 1.0) != 0.0).count();
        let share = kept as f64 / n as f64;
        assert!((share - 0.9).abs() < 0.005, "kept {share}");
        assert!((0..n).all(|i| [0.0, mask.scale].contains(&mask.apply(i, 1.0))));
        // Neighbours share one SplitMix64 output but not their bits.
        let other = Mask::new(0.1, 43);
        let same = (0..n)
            .filter(|&i| mask.apply(i, 1.0) == other.apply(i, 1.0))
            .count();
        assert!(
            same < n * 85 / 100,
            "seeds 42 and 43 agree on {same} of {n}"
        );
    }

    #[test]
    fn the_flex_kernel_draws_the_hosts_mask() {
        use burn::backend::flex::FlexTensor;
        let v: Vec<f32> = (0..3000).map(|i| i as f32 * 0.01 - 7.0).collect();
        let x = FlexTensor::from_data(TensorData::new(v, [3, 1000]));
        let mask = Mask::new(0.25, 7);
        let on = |t: FlexTensor| t.into_data().try_to_vec::<f32>().unwrap();
        // `x` shared: the kernel writes a new tensor; then unique: in place.
        let shared = super::super::flex::dropout_masked(x.clone(), mask);
        let host = seeded_on_host::<Flex>(x.clone(), mask);
        assert_eq!(on(shared), on(host.clone()));
        assert_eq!(on(super::super::flex::dropout_masked(x, mask)), on(host));
    }

    #[test]
    fn its_gradient_is_its_mask_and_a_seed_fixes_it() {
        let (_guard, device) = crate::train::backend::seeded_test_device(5);
        let layer = DropoutConfig::new(0.3).init();
        let run = |seed: u64| {
            device.seed(seed);
            let x = Tensor::<2>::random([4, 500], Distribution::Uniform(1.0, 2.0), &device)
                .require_grad();
            let y = dropout(&layer, x.clone());
            let grads = y.clone().sum().backward();
            let g = x.grad(&grads).unwrap();
            (values(x.inner()), values(y.inner()), values(g))
        };
        let (x, y, g) = run(1);
        let scale = (1.0 / 0.7) as f32;
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (0.25..0.35).contains(&(zeros as f64 / y.len() as f64)),
            "{zeros} dropped"
        );
        for ((x, y), g) in x.iter().zip(&y).zip(&g) {
            // Kept: y = x·scale and dy/dx = scale; dropped: both 0.
            if *y == 0.0 {
                assert_eq!(*g, 0.0);
            } else {
                assert_eq!(*y, x * scale);
                assert_eq!(*g, scale);
            }
        }
        assert_eq!(run(1).1, y, "the same seed draws the same mask");
        assert_ne!(run(2).1, y, "another seed another");
    }
}
