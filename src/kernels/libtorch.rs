//! libtorch's own kernels for what [`FusedOps`] asks beyond burn-tch's ops.

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;

use super::{AdamWHyper, FusedOps, norm};

/// The tensor to update in place: `t`'s own when no other tensor shares its memory, else a copy.
fn writable(t: TchTensor) -> tch::Tensor {
    if t.can_mut() {
        t.tensor
    } else {
        t.tensor.copy()
    }
}

#[cfg(runner_torch_ops)]
mod ffi {
    use std::ffi::{c_char, c_void};

    use torch_sys::C_tensor;

    unsafe extern "C" {
        pub fn runner_ops_free(p: *mut c_void);
        #[allow(clippy::too_many_arguments)]
        pub fn runner_ops_fused_adamw(
            param: *mut C_tensor,
            grad: *const C_tensor,
            exp_avg: *mut C_tensor,
            exp_avg_sq: *mut C_tensor,
            step: f64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> *mut c_char;
        pub fn runner_ops_foreach_sum_squares(
            xs: *const *const C_tensor,
            n: usize,
            out: *mut *mut C_tensor,
        ) -> *mut c_char;
        pub fn runner_ops_foreach_scale(
            xs: *const *const C_tensor,
            n: usize,
            coef: f64,
            out: *mut *mut C_tensor,
        ) -> *mut c_char;
        pub fn runner_ops_layer_norm_backward(
            x: *const C_tensor,
            gamma: *const C_tensor,
            dy: *const C_tensor,
            eps: f64,
            out: *mut *mut C_tensor,
        ) -> *mut c_char;
    }

    /// The shim's message, freed; `Ok` for NULL.
    pub fn check(err: *mut c_char) -> Result<(), String> {
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: a non-NULL return is a NUL-terminated string malloc'd by the shim.
        let why = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { runner_ops_free(err.cast()) };
        Err(why)
    }
}

/// PyTorch's fused AdamW kernel (`_fused_adamw_`, what `torch.optim.AdamW(fused=True)` runs)
/// on one parameter, in place: one pass over the four tensors, one kernel on CUDA (the
/// single-tensor update below launches eight). It takes equal dtypes and contiguous tensors;
/// `None` leaves anything else, or an error from libtorch, to the single-tensor update.
#[cfg(runner_torch_ops)]
fn fused_adamw(
    p: &mut tch::Tensor,
    g: &tch::Tensor,
    m: &mut tch::Tensor,
    v: &mut tch::Tensor,
    hyper: AdamWHyper,
) -> Option<()> {
    let kind = p.kind();
    let fits = [&*p, g, &*m, &*v]
        .iter()
        .all(|t| t.kind() == kind && t.is_contiguous() && t.device() == p.device());
    if !fits {
        return None;
    }
    // SAFETY: four live tensors; the shim updates p, m, v in place and returns NULL or a
    // malloc'd message, freed here.
    let err = unsafe {
        ffi::runner_ops_fused_adamw(
            p.as_mut_ptr(),
            g.as_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            f64::from(hyper.time),
            hyper.lr,
            f64::from(hyper.beta_1),
            f64::from(hyper.beta_2),
            f64::from(hyper.weight_decay),
            f64::from(hyper.epsilon),
        )
    };
    ffi::check(err)
        .map_err(|why| {
            tracing::debug!(
                "libtorch's fused AdamW refused a parameter ({why}); updating it op by op"
            );
        })
        .ok()
}

/// Every tensor of `xs` as libtorch's own, or `None` when one lives on another backend.
#[cfg(runner_torch_ops)]
fn libtorch_tensors(xs: &[burn::tensor::Tensor<1>]) -> Option<Vec<TchTensor>> {
    xs.iter()
        .map(|x| x.clone().try_into_primitive::<LibTorch>().ok())
        .collect()
}

/// Σ‖xᵢ‖² of a list of libtorch tensors by one multi-tensor norm (`_foreach_norm`, see the
/// shim), as a one-element tensor. `None` where the list is empty, a tensor lives on another
/// backend, or libtorch refuses: the caller sums tensor by tensor.
#[cfg(runner_torch_ops)]
pub(super) fn sum_squares_all(xs: &[burn::tensor::Tensor<1>]) -> Option<burn::tensor::Tensor<1>> {
    let tensors = libtorch_tensors(xs).filter(|t| !t.is_empty())?;
    let ptrs: Vec<_> = tensors.iter().map(|t| t.tensor.as_ptr()).collect();
    let mut out = std::ptr::null_mut();
    // SAFETY: `ptrs` points at live tensors kept by `tensors`; on success the shim writes
    // one new tensor, whose ownership passes to the `tch::Tensor` made of it.
    let err = unsafe { ffi::runner_ops_foreach_sum_squares(ptrs.as_ptr(), ptrs.len(), &mut out) };
    refused("multi-tensor norm", ffi::check(err))?;
    let total = unsafe { tch::Tensor::from_ptr(out) };
    Some(burn::tensor::Tensor::from_primitive::<LibTorch>(
        TchTensor::new(total),
    ))
}

/// Each tensor of a list of libtorch tensors times `coef`, by one multi-tensor op
/// (`_foreach_mul`, out of place); `None` as for [`sum_squares_all`].
#[cfg(runner_torch_ops)]
pub(super) fn scale_all(
    xs: &[burn::tensor::Tensor<1>],
    coef: f64,
) -> Option<Vec<burn::tensor::Tensor<1>>> {
    let tensors = libtorch_tensors(xs).filter(|t| !t.is_empty())?;
    let ptrs: Vec<_> = tensors.iter().map(|t| t.tensor.as_ptr()).collect();
    let mut out = vec![std::ptr::null_mut(); ptrs.len()];
    // SAFETY: as in `sum_squares_all`; on success the shim writes `n` new tensors.
    let err =
        unsafe { ffi::runner_ops_foreach_scale(ptrs.as_ptr(), ptrs.len(), coef, out.as_mut_ptr()) };
    refused("multi-tensor scale", ffi::check(err))?;
    Some(
        out.into_iter()
            .map(|t| {
                let t = unsafe { tch::Tensor::from_ptr(t) };
                burn::tensor::Tensor::from_primitive::<LibTorch>(TchTensor::new(t))
            })
            .collect(),
    )
}

/// `Some` for the shim's success; its refusal logged (at debug: the caller falls back).
#[cfg(runner_torch_ops)]
fn refused(what: &str, result: Result<(), String>) -> Option<()> {
    result
        .map_err(|why| tracing::debug!("libtorch's {what} refused ({why}); going tensor by tensor"))
        .ok()
}

/// LayerNorm's `(dx, dγ, dβ)` by libtorch's backward kernel (`native_layer_norm_backward`).
#[cfg(runner_torch_ops)]
fn layer_norm_backward(
    x: &tch::Tensor,
    gamma: &tch::Tensor,
    dy: &tch::Tensor,
    epsilon: f64,
) -> Result<[tch::Tensor; 3], String> {
    let mut out = [std::ptr::null_mut(); 3];
    // SAFETY: three live tensors; on success the shim writes three new tensors, whose
    // ownership passes to the `tch::Tensor`s made of them here.
    let err = unsafe {
        ffi::runner_ops_layer_norm_backward(
            x.as_ptr(),
            gamma.as_ptr(),
            dy.as_ptr(),
            epsilon,
            out.as_mut_ptr(),
        )
    };
    ffi::check(err)?;
    Ok(out.map(|t| unsafe { tch::Tensor::from_ptr(t) }))
}

impl FusedOps for LibTorch {
    /// PyTorch's fused AdamW where the build has the ops shim, else the update as PyTorch's
    /// single-tensor AdamW makes it: in place on the parameter and both moments, two
    /// temporaries (burn's composed update: a dozen ops, each allocating).
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        hyper: AdamWHyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (mut p, mut m, mut v) = (writable(param), writable(moment_1), writable(moment_2));
        #[cfg(runner_torch_ops)]
        if fused_adamw(&mut p, &grad.tensor, &mut m, &mut v, hyper).is_some() {
            return (TchTensor::new(p), TchTensor::new(m), TchTensor::new(v));
        }
        single_tensor_adamw(&mut p, &grad.tensor, &mut m, &mut v, hyper);
        (TchTensor::new(p), TchTensor::new(m), TchTensor::new(v))
    }

    /// libtorch's own backward kernel where the build has the ops shim, else burn's ops.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[cfg(runner_torch_ops)]
        match layer_norm_backward(&x.tensor, &gamma.tensor, &dy.tensor, epsilon) {
            Ok([dx, d_gamma, d_beta]) => {
                return (
                    TchTensor::new(dx),
                    TchTensor::new(d_gamma),
                    TchTensor::new(d_beta),
                );
            }
            Err(why) => tracing::debug!("libtorch's LayerNorm backward refused ({why})"),
        }
        norm::layer_norm_backward_composed::<Self>(x, gamma, dy, epsilon)
    }

    /// `‖x‖₂²`: one reduction (`norm`, libtorch's `linalg_vector_norm`), no squared copy.
    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        TchTensor::new(x.tensor.norm().square().reshape([1]))
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

/// PyTorch's single-tensor AdamW (`foreach=False`): `mul_`, `add_`, `addcmul_`, `sqrt_`,
/// `addcdiv_` in place, two temporaries.
fn single_tensor_adamw(
    p: &mut tch::Tensor,
    g: &tch::Tensor,
    m: &mut tch::Tensor,
    v: &mut tch::Tensor,
    hyper: AdamWHyper,
) {
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

    const HYPER: AdamWHyper = AdamWHyper {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
        time: 3,
    };

    fn adamw_inputs() -> (TchTensor, TchTensor, TchTensor, TchTensor) {
        (
            tensor(ramp(64, 2.0, 0.5)),
            tensor(ramp(64, 0.3, 0.4)),
            tensor(ramp(64, 0.1, 0.5)),
            tensor(ramp(64, 0.01, 0.0)),
        )
    }

    /// `update` (in place on p, m, v) against burn's composed AdamW.
    fn equals_composed(
        update: impl Fn(&mut tch::Tensor, &tch::Tensor, &mut tch::Tensor, &mut tch::Tensor),
    ) {
        let (p, g, m, v) = adamw_inputs();
        let (mut p, mut m, mut v) = (p.tensor, m.tensor, v.tensor);
        update(&mut p, &g.tensor, &mut m, &mut v);
        let (p0, g0, m0, v0) = adamw_inputs();
        let composed = adamw::composed::<LibTorch>(p0, g0, m0, v0, HYPER);
        close(&TchTensor::new(p), &composed.0);
        close(&TchTensor::new(m), &composed.1);
        close(&TchTensor::new(v), &composed.2);
    }

    #[test]
    fn the_single_tensor_adamw_update_equals_the_composed_one() {
        equals_composed(|p, g, m, v| single_tensor_adamw(p, g, m, v, HYPER));
    }

    #[cfg(runner_torch_ops)]
    #[test]
    fn libtorchs_fused_adamw_equals_the_composed_one() {
        equals_composed(|p, g, m, v| {
            assert!(
                fused_adamw(p, g, m, v, HYPER).is_some(),
                "the fused kernel takes contiguous f32 tensors"
            );
        });
    }

    #[cfg(runner_torch_ops)]
    #[test]
    fn a_strided_gradient_is_left_to_the_single_tensor_update() {
        equals_composed(|p, g, m, v| {
            // The same values, laid out column-major: a non-contiguous view.
            let view = g.transpose(0, 1).contiguous().transpose(0, 1);
            assert!(!view.is_contiguous());
            assert!(fused_adamw(p, &view, m, v, HYPER).is_none());
            single_tensor_adamw(p, &view, m, v, HYPER);
        });
    }

    #[test]
    fn the_backends_adamw_update_equals_the_composed_one() {
        let (p, g, m, v) = adamw_inputs();
        let ours = <LibTorch as FusedOps>::adamw_update(p, g, m, v, HYPER);
        let (p, g, m, v) = adamw_inputs();
        let composed = adamw::composed::<LibTorch>(p, g, m, v, HYPER);
        close(&ours.0, &composed.0);
        close(&ours.1, &composed.1);
        close(&ours.2, &composed.2);
    }

    #[cfg(runner_torch_ops)]
    #[test]
    fn libtorchs_layer_norm_backward_equals_the_composed_one() {
        let rows = |values: Vec<f32>| TchTensor::new(tensor(values).tensor.reshape([5, 24]));
        let (x, dy) = (rows(ramp(120, 4.0, 0.3)), rows(ramp(120, 2.0, 0.6)));
        let gamma = TchTensor::new(tensor(ramp(24, 1.5, 0.2)).tensor.reshape([24]));
        let [dx, d_gamma, d_beta] =
            layer_norm_backward(&x.tensor, &gamma.tensor, &dy.tensor, 1e-5).unwrap();
        let composed = norm::layer_norm_backward_composed::<LibTorch>(x, gamma, dy, 1e-5);
        assert_eq!(dx.size(), [5, 24]);
        let close = |a: tch::Tensor, b: &TchTensor| {
            for (x, y) in values(&TchTensor::new(a)).iter().zip(&values(b)) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} vs {y}");
            }
        };
        close(dx, &composed.0);
        close(d_gamma, &composed.1);
        close(d_beta, &composed.2);
    }

    #[test]
    fn sum_squares_is_the_squared_norm() {
        let x = tensor(ramp(64, 3.0, 0.5));
        let expected: f32 = values(&x).iter().map(|v| v * v).sum();
        let ours = values(&<LibTorch as FusedOps>::sum_squares(x));
        assert_eq!(ours.len(), 1);
        assert!(
            (ours[0] - expected).abs() <= 1e-5 * expected,
            "{ours:?} vs {expected}"
        );
    }

    /// Gradients of several sizes as burn tensors on libtorch's CPU.
    #[cfg(runner_torch_ops)]
    fn gradients() -> Vec<burn::tensor::Tensor<1>> {
        [(7, 1.0), (1, 2.0), (300, 0.5), (64, 3.0)]
            .into_iter()
            .map(|(n, scale)| {
                let t = TchTensor::new(tensor(ramp(4 * n, scale, 0.5)).tensor.reshape([-1]));
                burn::tensor::Tensor::from_primitive::<LibTorch>(t)
            })
            .collect()
    }

    #[cfg(runner_torch_ops)]
    #[test]
    fn the_multi_tensor_norm_equals_the_per_tensor_sum() {
        let xs = gradients();
        let expected: f32 = xs
            .iter()
            .map(|x| x.clone().square().sum().into_scalar::<f32>())
            .sum();
        let total = sum_squares_all(&xs).expect("the shim takes a list of CPU f32 tensors");
        let got = total.into_scalar::<f32>();
        assert!(
            (got - expected).abs() <= 1e-5 * expected,
            "{got} vs {expected}"
        );
        assert!(
            sum_squares_all(&[]).is_none(),
            "an empty list is the caller's"
        );
    }

    /// What the trainer hands the clipping: gradients out of burn's autodiff on libtorch, which
    /// must downcast to libtorch's tensors (else clipping silently loops).
    #[cfg(runner_torch_ops)]
    #[test]
    fn autodiffs_gradients_take_the_multi_tensor_path() {
        use burn::module::Module;
        use burn::nn::LinearConfig;
        use burn::optim::GradientsParams;

        let device = burn::tensor::Device::libtorch().autodiff();
        let layer = LinearConfig::new(3, 4).init(&device);
        let x = burn::tensor::Tensor::<2>::ones([2, 3], &device);
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let mut flat = Vec::new();
        layer.visit(&mut Collect(&grads, &mut flat));
        assert_eq!(flat.len(), 2, "weight and bias");
        assert!(sum_squares_all(&flat).is_some());
        assert!(scale_all(&flat, 0.5).is_some());

        struct Collect<'a>(&'a GradientsParams, &'a mut Vec<burn::tensor::Tensor<1>>);
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(
                &mut self,
                p: &burn::module::Param<burn::tensor::Tensor<D>>,
            ) {
                let g = self.0.get::<D>(p.id).unwrap();
                let n = g.shape().num_elements();
                self.1.push(g.reshape([n]));
            }
        }
    }

    #[cfg(runner_torch_ops)]
    #[test]
    fn the_multi_tensor_scale_equals_scaling_each() {
        let xs = gradients();
        let scaled = scale_all(&xs, 0.3).expect("the shim takes a list of CPU f32 tensors");
        assert_eq!(scaled.len(), xs.len());
        for (x, s) in xs.iter().zip(scaled) {
            let want = x.clone().mul_scalar(0.3);
            let (s, want) = (
                s.try_into_primitive::<LibTorch>().unwrap(),
                want.try_into_primitive::<LibTorch>().unwrap(),
            );
            close(&s, &want);
        }
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
