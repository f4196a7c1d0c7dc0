//! AdamW's update of one parameter as one kernel: burn's `AdamW` takes about a dozen
//! element-wise ops per parameter, four of them allocating a tensor the parameter's size
//! (for bert-mini's 30,522 × 256 word embeddings: 31 MB each, every step).

use burn::backend::TensorMetadata;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Scalar, Tensor};

use super::FusedOps;

/// The scalars of one update. `lr` and the bias corrections are per step; the rest come
/// from `optimizer:`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWHyper {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// The step this update makes, from 1.
    pub time: i32,
}

impl AdamWHyper {
    /// `1 - β₁ᵗ` and `1 - β₂ᵗ`, in `f32` as burn computes them.
    pub fn bias_corrections(&self) -> (f32, f32) {
        (
            1.0 - self.beta_1.powi(self.time),
            1.0 - self.beta_2.powi(self.time),
        )
    }

    /// The factor decoupled weight decay scales the parameter by, `None` when there is none.
    pub fn decay(&self) -> Option<f64> {
        let rate = self.lr * f64::from(self.weight_decay);
        (rate != 0.0).then_some(1.0 - rate)
    }
}

/// One AdamW step on one parameter (burn's `AdamW` without AMSGrad or cautious decay, and its
/// order of operations): the moments `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`; the
/// parameter `p ← p(1 − lr·λ) − lr · (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`. Returns `(p, m, v)`.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    hyper: AdamWHyper,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <burn::backend::Dispatch as FusedOps>::adamw_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        hyper,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// The update in burn's ops, for backends without a kernel of their own.
pub(super) fn composed<B: FusedOps>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    hyper: AdamWHyper,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dtype = param.dtype();
    let s = |v: f64| Scalar::new(v, &dtype);
    let (b1, b2) = (f64::from(hyper.beta_1), f64::from(hyper.beta_2));
    let m = B::float_add(
        B::float_mul_scalar(moment_1, s(b1)),
        B::float_mul_scalar(grad.clone(), s(f64::from(1.0 - hyper.beta_1))),
    );
    let v = B::float_add(
        B::float_mul_scalar(moment_2, s(b2)),
        B::float_mul_scalar(
            B::float_mul(grad.clone(), grad),
            s(f64::from(1.0 - hyper.beta_2)),
        ),
    );
    let (c1, c2) = hyper.bias_corrections();
    let m_hat = B::float_div_scalar(m.clone(), s(f64::from(c1)));
    let v_hat = B::float_div_scalar(v.clone(), s(f64::from(c2)));
    let delta = B::float_div(
        m_hat,
        B::float_add_scalar(B::float_sqrt(v_hat), s(f64::from(hyper.epsilon))),
    );
    let decayed = match hyper.decay() {
        Some(factor) => B::float_mul_scalar(param, s(factor)),
        None => param,
    };
    let p = B::float_sub(decayed, B::float_mul_scalar(delta, s(hyper.lr)));
    (p, m, v)
}
