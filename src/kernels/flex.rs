//! burn-flex's kernels: loops over contiguous `f32` storage, split across rayon's threads
//! (as burn-flex's own ops are), writing in place where a tensor is uniquely owned. Other
//! dtypes and strided layouts take the composed body.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

use super::{AdamWHyper, Mask, adamw, dropout};

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
