//! burn-flex's kernels: loops over contiguous `f32` storage, split across rayon's threads
//! (as burn-flex's own ops are), writing in place where a tensor is uniquely owned. Other
//! dtypes and strided layouts take the composed body.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

use super::gelu::{gelu_derivative, gelu_value};
use super::{AdamWHyper, Mask, adamw, dropout, norm};

pub(super) mod conv3d;
pub(super) mod group_norm;

/// Elements per rayon task: large enough that the split costs nothing beside the work.
const CHUNK: usize = 1 << 16;

/// The elements of a contiguous `f32` tensor, `None` for other dtypes and layouts.
fn elems(t: &FlexTensor) -> Option<&[f32]> {
    t.as_slice::<f32>()
}

/// `t` as a uniquely owned contiguous `f32` tensor starting at offset 0, so its storage can be
/// written in place: `t` itself when it already is (no copy), else a copy.
fn owned(t: FlexTensor) -> FlexTensor {
    if t.is_unique() && matches!(t.layout().contiguous_offsets(), Some((0, _))) {
        return t;
    }
    let shape = t.shape();
    let copy = elems(&t).expect("checked contiguous f32").to_vec();
    FlexTensor::new(
        Bytes::from_elems(copy),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// The first `n` elements of an owned tensor's storage, writable.
fn owned_mut(t: &mut FlexTensor, n: usize) -> &mut [f32] {
    &mut t.storage_mut::<f32>()[..n]
}

fn all_f32(ts: &[&FlexTensor]) -> bool {
    let shape = ts[0].shape();
    ts.iter().all(|t| elems(t).is_some() && t.shape() == shape)
}

pub(super) fn adamw_update(
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: FlexTensor,
    moment_2: FlexTensor,
    hyper: AdamWHyper,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    if !all_f32(&[&param, &grad, &moment_1, &moment_2]) {
        return adamw::composed::<Flex>(param, grad, moment_1, moment_2, hyper);
    }
    let n = param.shape().num_elements();
    let (mut p, mut m, mut v) = (owned(param), owned(moment_1), owned(moment_2));
    let g = elems(&grad).expect("checked");
    let (b1, b2) = (hyper.beta_1, hyper.beta_2);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let (c1, c2) = hyper.bias_corrections();
    let eps = hyper.epsilon;
    // Scalars reach burn's ops as f64 and are rounded to the tensor's f32 there.
    let decay = hyper.decay().map(|d| d as f32);
    let lr = hyper.lr as f32;
    let (ps, ms, vs) = (
        owned_mut(&mut p, n),
        owned_mut(&mut m, n),
        owned_mut(&mut v, n),
    );
    ps.par_chunks_mut(CHUNK)
        .zip(ms.par_chunks_mut(CHUNK))
        .zip(vs.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| {
            for i in 0..p.len() {
                let gi = g[i];
                let mi = m[i] * b1 + gi * f1;
                let vi = v[i] * b2 + gi * gi * f2;
                m[i] = mi;
                v[i] = vi;
                let delta = (mi / c1) / ((vi / c2).sqrt() + eps);
                let pi = match decay {
                    Some(d) => p[i] * d,
                    None => p[i],
                };
                p[i] = pi - delta * lr;
            }
        });
    (p, m, v)
}

/// Σ x² over fixed blocks of [`CHUNK`] elements: each block summed in `f32` over eight lanes
/// (vectorised), the blocks' sums added in `f64` in order, so the result does not depend on
/// how rayon splits the work.
pub(super) fn sum_squares(x: FlexTensor) -> FlexTensor {
    let Some(xs) = elems(&x) else {
        return Flex::float_sum(Flex::float_mul(x.clone(), x));
    };
    let blocks: Vec<f32> = xs
        .par_chunks(CHUNK)
        .map(|block| {
            let mut lanes = [0f32; 8];
            let mut rows = block.chunks_exact(8);
            for row in &mut rows {
                for (lane, v) in lanes.iter_mut().zip(row) {
                    *lane += v * v;
                }
            }
            let tail: f32 = rows.remainder().iter().map(|v| v * v).sum();
            lanes.iter().sum::<f32>() + tail
        })
        .collect();
    let total: f64 = blocks.iter().map(|&b| f64::from(b)).sum();
    FlexTensor::new(
        Bytes::from_elems(vec![total as f32]),
        Layout::contiguous(burn::tensor::Shape::new([1])),
        DType::F32,
    )
}

/// A new contiguous `f32` tensor of `shape` whose element `i` is `f(i)`, filled in parallel
/// without first zeroing its buffer.
fn from_fn(shape: burn::tensor::Shape, f: impl Fn(usize) -> f32 + Sync) -> FlexTensor {
    let n = shape.num_elements();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, slot) in chunk.iter_mut().enumerate() {
                slot.write(f(c * CHUNK + j));
            }
        });
    // SAFETY: every one of the `n` elements was written above.
    unsafe { out.set_len(n) };
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// `f(i, x[i])` over a contiguous `f32` tensor: in place when `x` is uniquely owned.
fn map_indexed(x: FlexTensor, f: impl Fn(usize, f32) -> f32 + Sync) -> FlexTensor {
    let n = x.shape().num_elements();
    if x.is_unique() && matches!(x.layout().contiguous_offsets(), Some((0, _))) {
        let mut x = x;
        owned_mut(&mut x, n)
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = f(c * CHUNK + j, *v);
                }
            });
        return x;
    }
    let src = elems(&x).expect("checked contiguous f32");
    from_fn(x.shape(), |i| f(i, src[i]))
}

pub(super) fn dropout_masked(x: FlexTensor, mask: Mask) -> FlexTensor {
    if elems(&x).is_none() {
        return dropout::seeded_on_host::<Flex>(x, mask);
    }
    map_indexed(x, |i, v| mask.apply(i, v))
}

/// Rows per rayon task in the row-wise kernels (a fixed split, so the order in which the
/// per-task partial sums of LayerNorm's `dγ`, `dβ` are added does not depend on scheduling).
const ROWS_PER_TASK: usize = 32;

pub(super) fn layer_norm_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    dy: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (Some(xs), Some(gs), Some(dys)) = (elems(&x), elems(&gamma), elems(&dy)) else {
        return norm::layer_norm_backward_composed::<Flex>(x, gamma, dy, epsilon);
    };
    let d = gs.len();
    let n = xs.len();
    let eps = epsilon as f32;
    let inv_d = 1.0 / d as f32;
    let chunk = ROWS_PER_TASK * d;
    let mut dx: Vec<f32> = Vec::with_capacity(n);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .zip(xs.par_chunks(chunk))
        .zip(dys.par_chunks(chunk))
        .map(|((out, x), dy)| {
            let (mut pg, mut pb) = (vec![0f32; d], vec![0f32; d]);
            for ((out, x), dy) in out.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
                let mean = x.iter().sum::<f32>() * inv_d;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_d;
                let rstd = 1.0 / (var + eps).sqrt();
                let (mut a, mut b) = (0f32, 0f32);
                for j in 0..d {
                    let x_hat = (x[j] - mean) * rstd;
                    let g = dy[j] * gs[j];
                    a += g;
                    b += g * x_hat;
                    pg[j] += dy[j] * x_hat;
                    pb[j] += dy[j];
                }
                let (a, b) = (a * inv_d, b * inv_d);
                for j in 0..d {
                    let x_hat = (x[j] - mean) * rstd;
                    out[j].write(rstd * (dy[j] * gs[j] - a - x_hat * b));
                }
            }
            (pg, pb)
        })
        .collect();
    // SAFETY: every row of every chunk was written above.
    unsafe { dx.set_len(n) };
    let (mut d_gamma, mut d_beta) = (vec![0f32; d], vec![0f32; d]);
    for (pg, pb) in &partials {
        for j in 0..d {
            d_gamma[j] += pg[j];
            d_beta[j] += pb[j];
        }
    }
    let vector = |v: Vec<f32>| {
        FlexTensor::new(
            Bytes::from_elems(v),
            Layout::contiguous(gamma.shape()),
            DType::F32,
        )
    };
    let dx = FlexTensor::new(
        Bytes::from_elems(dx),
        Layout::contiguous(x.shape()),
        DType::F32,
    );
    (dx, vector(d_gamma), vector(d_beta))
}

/// `dy` with each chunk of `chunk` elements rewritten by `f(dy_chunk, x_chunk)` in parallel:
/// the shape of a backward kernel that needs its op's input or output `x` alongside the
/// upstream gradient, which is usually owned by this op alone and so written in place.
fn backward_in_place(
    dy: FlexTensor,
    x: &[f32],
    chunk: usize,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) -> FlexTensor {
    let mut dx = owned(dy);
    owned_mut(&mut dx, x.len())
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(g, x)| f(g, x));
    dx
}

pub(super) fn softmax_last_backward(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
    let (Some(ys), Some(_)) = (elems(&y), elems(&dy)) else {
        return norm::softmax_last_backward_composed::<Flex>(y, dy);
    };
    let shape = y.shape();
    let d = shape[shape.num_dims() - 1];
    backward_in_place(dy, ys, ROWS_PER_TASK * d, |g, y| {
        for (g, y) in g.chunks_mut(d).zip(y.chunks(d)) {
            let dot: f32 = y.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
            for (g, y) in g.iter_mut().zip(y) {
                *g = y * (*g - dot);
            }
        }
    })
}

pub(super) fn gelu(x: FlexTensor) -> FlexTensor {
    if elems(&x).is_none() {
        return <Flex as ActivationOps<Flex>>::gelu(x);
    }
    map_indexed(x, |_, v| gelu_value(v))
}

pub(super) fn gelu_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
    let (Some(xs), Some(_)) = (elems(&x), elems(&dy)) else {
        return <Flex as ActivationOps<Flex>>::gelu_backward(x, dy);
    };
    backward_in_place(dy, xs, CHUNK, |g, x| {
        for (g, x) in g.iter_mut().zip(x) {
            *g *= gelu_derivative(*x);
        }
    })
}
