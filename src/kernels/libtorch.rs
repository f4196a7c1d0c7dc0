//! libtorch's own kernels for what [`FusedOps`] asks beyond burn-tch's ops.

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;

use super::{AdamWHyper, FusedOps};

/// The tensor to update in place: `t`'s own when no other tensor shares its memory, else a copy.
fn writable(t: TchTensor) -> tch::Tensor {
    if t.can_mut() {
        t.tensor
    } else {
        t.tensor.copy()
    }
}

impl FusedOps for LibTorch {
    /// The update as PyTorch's single-tensor AdamW makes it: in place on the parameter and
    /// both moments, two temporaries (burn's composed update: a dozen ops, each allocating).
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: AdamWHyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (mut p, mut m, mut v) = (writable(param), writable(moment_1), writable(moment_2));
        let g = &grad.tensor;
        let (b1, b2) = (f64::from(hyper.beta_1), f64::from(hyper.beta_2));
        let (c1, c2) = hyper.bias_corrections();
        // The results these in-place ops also return are views of `m`, `v`, `p`.
        let _ = m.g_mul_scalar_(b1);
        let _ = m.g_add_(&g.g_mul_scalar(f64::from(1.0 - hyper.beta_1)));
        let _ = v.g_mul_scalar_(b2);
        let _ = v.addcmul_(&g.g_mul_scalar(f64::from(1.0 - hyper.beta_2)), g);
        let mut denom = v.g_div_scalar(f64::from(c2));
        let _ = denom.sqrt_();
        let _ = denom.g_add_scalar_(f64::from(hyper.epsilon));
        if let Some(decay) = hyper.decay() {
            let _ = p.g_mul_scalar_(decay);
        }
        let _ = p.addcdiv_(&m.g_mul_scalar(-hyper.lr / f64::from(c1)), &denom);
        (TchTensor::new(p), TchTensor::new(m), TchTensor::new(v))
    }

    /// `_softmax_backward_data`, the kernel PyTorch's autograd runs for softmax.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = y.tensor.dim() as i64 - 1;
        let kind = y.tensor.kind();
        TchTensor::new(tch::Tensor::internal_softmax_backward_data(
            &dy.tensor, &y.tensor, last, kind,
        ))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::libtorch::LibTorchDevice;
    use burn::tensor::TensorData;

    use super::super::{adamw, norm};
    use super::*;

    fn tensor(values: Vec<f32>) -> TchTensor {
        let n = values.len();
        TchTensor::from_data::<f32>(
            TensorData::new(values, [n / 4, 4]),
            LibTorchDevice::Cpu.into(),
        )
    }

    fn values(t: &TchTensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.tensor.reshape([-1])).unwrap()
    }

    fn close(a: &TchTensor, b: &TchTensor) {
        for (x, y) in values(a).iter().zip(&values(b)) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    fn ramp(n: usize, scale: f32, shift: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - shift) * scale)
            .collect()
    }

    #[test]
    fn the_in_place_adamw_update_equals_the_composed_one() {
        let hyper = AdamWHyper {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            time: 3,
        };
        let inputs = || {
            (
                tensor(ramp(64, 2.0, 0.5)),
                tensor(ramp(64, 0.3, 0.4)),
                tensor(ramp(64, 0.1, 0.5)),
                tensor(ramp(64, 0.01, 0.0)),
            )
        };
        let (p, g, m, v) = inputs();
        let ours = <LibTorch as FusedOps>::adamw_update(p, g, m, v, hyper);
        let (p, g, m, v) = inputs();
        let composed = adamw::composed::<LibTorch>(p, g, m, v, hyper);
        close(&ours.0, &composed.0);
        close(&ours.1, &composed.1);
        close(&ours.2, &composed.2);
    }

    #[test]
    fn softmax_backward_equals_the_composed_one() {
        let y = tensor(ramp(64, 1.0, 0.0));
        let y = TchTensor::new(y.tensor.softmax(-1, None));
        let dy = tensor(ramp(64, 3.0, 0.5));
        let ours = <LibTorch as FusedOps>::softmax_last_backward(y.clone(), dy.clone());
        close(
            &ours,
            &norm::softmax_last_backward_composed::<LibTorch>(y, dy),
        );
    }
}
