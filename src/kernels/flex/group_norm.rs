//! burn-flex's per-frame GroupNorm (+ SiLU) kernels.
//!
//! In a contiguous `[b, c, t, h·w]` tensor the channels of one group of one sample are one
//! contiguous block of `c/groups · t · h·w` elements, and that block holds every element each
//! of its `t` statistics reads: a rayon task per block computes the statistics and writes the
//! output (or the gradient) while the block is in cache. The per-channel `dγ`, `dβ` partial
//! sums of the blocks are added in block order afterwards, so the result does not depend on
//! scheduling.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

use super::{elems, owned, owned_mut};
use crate::kernels::group_norm::{self, FrameNorm};

/// How a contiguous `[b, c, t, h·w]` tensor splits into per-(sample, group) blocks.
#[derive(Clone, Copy)]
struct Blocks {
    /// Channels per group.
    cg: usize,
    t: usize,
    hw: usize,
    groups: usize,
}

impl Blocks {
    fn new(x: &FlexTensor, groups: usize) -> Blocks {
        let s = x.shape();
        Blocks {
            cg: s[1] / groups,
            t: s[2],
            hw: s[3] * s[4],
            groups,
        }
    }

    fn len(&self) -> usize {
        self.cg * self.t * self.hw
    }

    /// The rows of frame `ti` in a block: channel `j`'s `h·w` pixels at `ti`.
    fn rows(&self, ti: usize) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        (0..self.cg).map(move |j| {
            let start = (j * self.t + ti) * self.hw;
            (j, start..start + self.hw)
        })
    }

    /// Mean and `1/σ` of frame `ti` of `block`. Summed per row in `f32`, across rows in `f64`.
    fn stats(&self, block: &[f32], ti: usize, epsilon: f64) -> (f32, f32) {
        let n = (self.cg * self.hw) as f64;
        let sum: f64 = self
            .rows(ti)
            .map(|(_, r)| f64::from(block[r].iter().sum::<f32>()))
            .sum();
        let mean = (sum / n) as f32;
        let squares: f64 = self
            .rows(ti)
            .map(|(_, r)| {
                f64::from(
                    block[r]
                        .iter()
                        .map(|v| (v - mean) * (v - mean))
                        .sum::<f32>(),
                )
            })
            .sum();
        let rstd = 1.0 / ((squares / n) as f32 + epsilon as f32).sqrt();
        (mean, rstd)
    }
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Every tensor `f32` and contiguous, the vectors of length `c`, `c` divisible by `groups`.
fn supported(x: &FlexTensor, vectors: &[&FlexTensor], groups: usize) -> bool {
    let s = x.shape();
    elems(x).is_some()
        && s.num_dims() == 5
        && groups > 0
        && s[1].is_multiple_of(groups)
        && vectors
            .iter()
            .all(|v| elems(v).is_some_and(|e| e.len() == s[1]))
}

pub(in crate::kernels) fn forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    how: FrameNorm,
) -> FlexTensor {
    if !supported(&x, &[&gamma, &beta], how.groups) {
        return group_norm::composed::<Flex>(x, gamma, beta, how);
    }
    let blocks = Blocks::new(&x, how.groups);
    let (xs, gs, bs) = (
        elems(&x).expect("checked"),
        elems(&gamma).expect("checked"),
        elems(&beta).expect("checked"),
    );
    let n = xs.len();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(blocks.len())
        .zip(xs.par_chunks(blocks.len()))
        .enumerate()
        .for_each(|(k, (out, block))| {
            let first = (k % blocks.groups) * blocks.cg;
            for ti in 0..blocks.t {
                let (mean, rstd) = blocks.stats(block, ti, how.epsilon);
                for (j, r) in blocks.rows(ti) {
                    let scale = gs[first + j] * rstd;
                    let shift = bs[first + j] - mean * scale;
                    for (o, &v) in out[r.clone()].iter_mut().zip(&block[r]) {
                        let z = v * scale + shift;
                        o.write(if how.silu { z * sigmoid(z) } else { z });
                    }
                }
            }
        });
    // SAFETY: the blocks cover the tensor and every element of each was written above.
    unsafe { out.set_len(n) };
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(x.shape()),
        DType::F32,
    )
}

pub(in crate::kernels) fn backward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    dy: FlexTensor,
    how: FrameNorm,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    if !supported(&x, &[&gamma, &beta], how.groups) || elems(&dy).is_none() {
        return group_norm::backward_composed::<Flex>(x, gamma, beta, dy, how);
    }
    let blocks = Blocks::new(&x, how.groups);
    let c = gamma.shape()[0];
    let (xs, gs, bs) = (
        elems(&x).expect("checked"),
        elems(&gamma).expect("checked"),
        elems(&beta).expect("checked"),
    );
    let n = xs.len();
    let inv_n = 1.0 / (blocks.cg * blocks.hw) as f32;
    let mut dx = owned(dy);
    // Per block: (Σ dz·x̂, Σ dz) of each of its channels.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = owned_mut(&mut dx, n)
        .par_chunks_mut(blocks.len())
        .zip(xs.par_chunks(blocks.len()))
        .enumerate()
        .map(|(k, (g, block))| {
            let first = (k % blocks.groups) * blocks.cg;
            let (mut pg, mut pb) = (vec![0f32; blocks.cg], vec![0f32; blocks.cg]);
            for ti in 0..blocks.t {
                let (mean, rstd) = blocks.stats(block, ti, how.epsilon);
                // First pass: dy → dz in place, and the frame's two sums.
                let (mut a, mut b) = (0f64, 0f64);
                for (j, r) in blocks.rows(ti) {
                    let (gamma, beta) = (gs[first + j], bs[first + j]);
                    let (mut sg, mut sb) = (0f32, 0f32);
                    for (d, &v) in g[r.clone()].iter_mut().zip(&block[r]) {
                        let x_hat = (v - mean) * rstd;
                        let dz = if how.silu {
                            let z = gamma * x_hat + beta;
                            let s = sigmoid(z);
                            *d * s * (1.0 + z * (1.0 - s))
                        } else {
                            *d
                        };
                        *d = dz;
                        sg += dz * x_hat;
                        sb += dz;
                    }
                    pg[j] += sg;
                    pb[j] += sb;
                    a += f64::from(gamma * sb);
                    b += f64::from(gamma * sg);
                }
                // Second pass: dz → dx.
                let (a, b) = (a as f32 * inv_n, b as f32 * inv_n);
                for (j, r) in blocks.rows(ti) {
                    let gamma = gs[first + j];
                    for (d, &v) in g[r.clone()].iter_mut().zip(&block[r]) {
                        let x_hat = (v - mean) * rstd;
                        *d = rstd * (*d * gamma - a - x_hat * b);
                    }
                }
            }
            (pg, pb)
        })
        .collect();
    let (mut d_gamma, mut d_beta) = (vec![0f32; c], vec![0f32; c]);
    for (k, (pg, pb)) in partials.iter().enumerate() {
        let first = (k % blocks.groups) * blocks.cg;
        for j in 0..blocks.cg {
            d_gamma[first + j] += pg[j];
            d_beta[first + j] += pb[j];
        }
    }
    let vector = |v: Vec<f32>| {
        FlexTensor::new(
            Bytes::from_elems(v),
            Layout::contiguous(gamma.shape()),
            DType::F32,
        )
    };
    (dx, vector(d_gamma), vector(d_beta))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Shape;

    use super::*;

    fn tensor(shape: &[usize], seed: u64) -> FlexTensor {
        let n: usize = shape.iter().product();
        // A fixed pseudo-random fill (SplitMix64), values in [-2, 3).
        let mut s = seed;
        let v = (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z >> 40) as f32 / (1u64 << 24) as f32 * 5.0 - 2.0
            })
            .collect::<Vec<f32>>();
        FlexTensor::new(
            Bytes::from_elems(v),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }

    fn close(a: &FlexTensor, b: &FlexTensor, what: &str) {
        let (a, b) = (elems(a).unwrap(), elems(b).unwrap());
        crate::kernels::test_support::assert_close(a, b, 2e-5, what);
    }

    /// The kernels against the composed bodies other backends run, at the backend level.
    #[test]
    fn kernels_equal_the_composed_bodies() {
        let shape = [2, 6, 4, 3, 5];
        let (x, dy) = (tensor(&shape, 1), tensor(&shape, 2));
        let (gamma, beta) = (tensor(&[6], 3), tensor(&[6], 4));
        for silu in [true, false] {
            let how = FrameNorm {
                groups: 3,
                epsilon: 1e-6,
                silu,
            };
            let ours = forward(x.clone(), gamma.clone(), beta.clone(), how);
            let composed =
                group_norm::composed::<Flex>(x.clone(), gamma.clone(), beta.clone(), how);
            close(&ours, &composed, "y");
            let ours = backward(x.clone(), gamma.clone(), beta.clone(), dy.clone(), how);
            let (x, gamma, beta, dy) = (x.clone(), gamma.clone(), beta.clone(), dy.clone());
            let composed = group_norm::backward_composed::<Flex>(x, gamma, beta, dy, how);
            close(&ours.0, &composed.0, "dx");
            close(&ours.1, &composed.1, "dγ");
            close(&ours.2, &composed.2, "dβ");
        }
    }
}
