// libtorch kernels that tch 0.22 does not wrap, reached from src/kernels/libtorch.rs.
//
// Compiled by build.rs against the headers of the torch wheel runner links (the same libtorch
// burn-tch uses). Every function runs through `guarded` (src/shim_guard.hpp): NULL on
// success, else what libtorch threw as a malloc'd message, so no C++ exception crosses into
// Rust. Tensors are `at::Tensor*`, what tch's `C_tensor` handles are.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/native_layer_norm_backward.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/stack.h>

#include <cstdlib>
#include <vector>

#include "../shim_guard.hpp"

using runner_shim::guarded;

extern "C" {

void runner_ops_free(void* p) { std::free(p); }

// One AdamW step of one parameter by PyTorch's fused kernel (`torch.optim.AdamW(fused=True)`):
// one pass over the parameter, its gradient and both moments, all four updated in place on
// their device (a single CUDA kernel; one vectorised loop on the CPU). `step` is the step
// this update makes, from 1; the kernel reads it from a tensor on the parameter's device,
// which a fill makes without a host-to-device copy.
char* runner_ops_fused_adamw(at::Tensor* param, const at::Tensor* grad, at::Tensor* exp_avg,
                             at::Tensor* exp_avg_sq, double step, double lr, double beta1,
                             double beta2, double weight_decay, double eps) {
  return guarded([&] {
    at::Tensor steps = at::full({}, step, param->options().dtype(at::kFloat));
    at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {steps}, lr, beta1,
                      beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  });
}

// LayerNorm's gradients over the last dimension by libtorch's own backward kernel
// (`native_layer_norm_backward`, what PyTorch's autograd runs): `dx`, `dgamma`, `dbeta` for
// `y = gamma * (x - mean) * rstd + beta`, returned as new tensors through `out[0..3]`. The
// forward's statistics (mean, 1/sigma) are recomputed by its own vectorised forward kernel
// rather than kept from it (`var_mean`'s Welford loop is scalar, several times slower).
char* runner_ops_layer_norm_backward(const at::Tensor* x, const at::Tensor* gamma,
                                     const at::Tensor* dy, double eps, at::Tensor** out) {
  return guarded([&] {
    int64_t d = x->size(-1);
    auto stats = at::native_layer_norm(*x, at::IntArrayRef{d}, std::nullopt, std::nullopt, eps);
    const at::Tensor& mean = std::get<1>(stats);
    const at::Tensor& rstd = std::get<2>(stats);
    // The kernel reads the shift only for the shape and dtype of its gradient, which are
    // gamma's: gamma stands in for it (backward does not keep the shift).
    auto [dx, dgamma, dbeta] = at::native_layer_norm_backward(
        *dy, *x, at::IntArrayRef{d}, mean, rstd, *gamma, *gamma, {true, true, true});
    out[0] = new at::Tensor(std::move(dx));
    out[1] = new at::Tensor(std::move(dgamma));
    out[2] = new at::Tensor(std::move(dbeta));
  });
}

// The tensors `xs[0..n]` point at, as a list (each a new handle on the same storage).
static std::vector<at::Tensor> tensors(const at::Tensor* const* xs, size_t n) {
  std::vector<at::Tensor> list;
  list.reserve(n);
  for (size_t i = 0; i < n; ++i) list.push_back(*xs[i]);
  return list;
}

// The global gradient norm's Σ‖xᵢ‖² over `n` tensors as PyTorch's `clip_grad_norm_` takes it:
// every norm by one multi-tensor kernel (`_foreach_norm`: one CUDA launch for a whole list
// of same-device, same-dtype tensors; a loop of `linalg_vector_norm` on the CPU), stacked,
// squared and summed on the device: a one-element tensor through `out`, where one fused norm
// per tensor and a running sum took two launches per tensor.
char* runner_ops_foreach_sum_squares(const at::Tensor* const* xs, size_t n, at::Tensor** out) {
  return guarded([&] {
    std::vector<at::Tensor> list = tensors(xs, n);
    at::Tensor norms = at::stack(at::_foreach_norm(list, 2));
    *out = new at::Tensor(norms.square().sum().reshape({1}));
  });
}

// `n` tensors each times `coef`, as new tensors through `out[0..n]` (`_foreach_mul`, out of
// place: one CUDA launch for the list, which `clip_grad_norm_` makes in place; out of place
// here because autodiff may hand two parameters the same gradient storage, which an in-place
// scale would scale twice).
char* runner_ops_foreach_scale(const at::Tensor* const* xs, size_t n, double coef,
                               at::Tensor** out) {
  return guarded([&] {
    std::vector<at::Tensor> scaled = at::_foreach_mul(tensors(xs, n), at::Scalar(coef));
    for (size_t i = 0; i < n; ++i) out[i] = new at::Tensor(std::move(scaled[i]));
  });
}

}  // extern "C"
