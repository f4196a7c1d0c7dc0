//! burn-flex's 3-D convolution: im2col by tiles of output rows and one `gemm` product per
//! tile, forward and backward (see `kernels/conv3d.rs` for why).
//!
//! For one sample, `cols` holds, for every kernel tap `r = (c, kt, kh, kw)` (a row), the input
//! value each output position of the tile reads through that tap (a column; zero where the
//! window falls off the input). Then `Y[:, tile] = W·cols` is the output in its own layout
//! (`[c_out, d·h·w]` of one sample), `dW += dY[:, tile]·colsᵀ`, and `dcols = Wᵀ·dY[:, tile]`
//! is added back to the positions it was read from (col2im). A tile spans whole output rows
//! and holds at most [`COLS_BUDGET`] elements, so `cols` stays in cache-sized memory whatever
//! the clip's size. The products run on rayon's threads; the im2col is split by rows, the
//! col2im by input channels (each task writes one channel's planes), and the weight gradient
//! is summed over tiles and samples in a fixed order, so results do not depend on scheduling.
//! A pointwise convolution (kernel 1 × 1 × 1, stride 1, no padding) needs no `cols`: the
//! input is its own, and `Wᵀ·dY` is its input gradient.

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;
use std::cell::Cell;

use super::elems;
use crate::kernels::conv3d;

/// Elements of one tile's `cols` (8 MiB of `f32`): a quarter of it ran the CausalVAE 4–10% slower.
const COLS_BUDGET: usize = 2 << 20;

thread_local! {
    /// The last convolution's `cols` (then `dcols`) on this thread, kept for the next: every
    /// tile overwrites what it uses, so the buffer is never zeroed again (a fresh zeroed one
    /// per call was 5% of the CausalVAE's step in `memset`).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `f` over this thread's scratch buffer of `len` elements, whose contents are stale.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Taken out, not borrowed: a nested call (none today) would get a fresh buffer.
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.set(buf);
    r
}

/// Elements of the column buffer a convolution of `c_in` channels and a kernel of
/// `kernel_volume` taps over `positions` output positions keeps: none when pointwise, else
/// at most [`COLS_BUDGET`] (a tile holds whole rows, so it may hold fewer: this is its bound).
pub(in crate::kernels) fn workspace(c_in: usize, kernel_volume: usize, positions: usize) -> usize {
    if kernel_volume == 1 {
        0
    } else {
        (c_in * kernel_volume * positions).min(COLS_BUDGET)
    }
}

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    input: [usize; 3],
    c_out: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    pad: [usize; 3],
    output: [usize; 3],
}

impl Geometry {
    /// The geometry when the kernel handles it: `f32`, contiguous, no groups or dilation.
    fn of(
        x: &FlexTensor,
        weight: &FlexTensor,
        bias: &FlexTensor,
        options: &ConvOptions<3>,
    ) -> Option<Geometry> {
        let (xs, ws) = (x.shape(), weight.shape());
        let plain = options.groups == 1 && options.dilation == [1, 1, 1];
        if !plain || xs.num_dims() != 5 || ws.num_dims() != 5 || xs[1] != ws[1] {
            return None;
        }
        let c_out = ws[0];
        let all_f32 = elems(x).is_some() && elems(weight).is_some();
        if !all_f32 || elems(bias).is_none_or(|b| b.len() != c_out) {
            return None;
        }
        let input = [xs[2], xs[3], xs[4]];
        let kernel = [ws[2], ws[3], ws[4]];
        let (begin, end) = (options.padding_begin(), options.padding_end());
        let mut output = [0; 3];
        for i in 0..3 {
            let span = input[i] + begin[i] + end[i];
            if span < kernel[i] {
                return None;
            }
            output[i] = (span - kernel[i]) / options.stride[i] + 1;
        }
        Some(Geometry {
            batch: xs[0],
            c_in: xs[1],
            input,
            c_out,
            kernel,
            stride: options.stride,
            pad: begin,
            output,
        })
    }

    /// Kernel taps per output channel: the rows of `cols`.
    fn taps(&self) -> usize {
        self.c_in * self.kernel.iter().product::<usize>()
    }

    fn in_plane(&self) -> usize {
        self.input.iter().product()
    }

    fn out_plane(&self) -> usize {
        self.output.iter().product()
    }

    /// Output rows (of `output[2]` positions) per tile: as many as the budget allows, at most
    /// the sample's (all of them when pointwise, which builds no columns).
    fn rows_per_tile(&self) -> usize {
        let rows = self.output[0] * self.output[1];
        if self.pointwise() {
            return rows;
        }
        (COLS_BUDGET / (self.taps() * self.output[2])).clamp(1, rows)
    }

    /// Elements of the column buffer the tiles need.
    fn scratch_len(&self) -> usize {
        if self.pointwise() {
            0
        } else {
            self.taps() * self.rows_per_tile() * self.output[2]
        }
    }

    /// The columns of the output rows `first..first + rows` of one sample `x`, as `[taps,
    /// rows·ow]` at the pointer with the row stride returned: the input itself when
    /// pointwise, else built into `scratch` (see [`Self::im2col`]).
    fn tile_columns(
        &self,
        x: &[f32],
        first: usize,
        rows: usize,
        scratch: &mut [f32],
    ) -> (*const f32, isize) {
        let ow = self.output[2];
        if self.pointwise() {
            return (x[first * ow..].as_ptr(), self.out_plane() as isize);
        }
        let width = rows * ow;
        self.im2col(x, first, rows, &mut scratch[..self.taps() * width]);
        (scratch.as_ptr(), width as isize)
    }

    /// Kernel 1 × 1 × 1, stride 1, no padding: the input is its own `cols`.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1, 1] && self.stride == [1, 1, 1] && self.input == self.output
    }

    /// The tiles of one sample's output rows, as `(first row, rows)`.
    fn tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        let rows = self.output[0] * self.output[1];
        let per = self.rows_per_tile();
        (0..rows.div_ceil(per)).map(move |t| (t * per, per.min(rows - t * per)))
    }

    /// The input position that output `o` reads through tap `k` along axis `i`, if inside.
    #[inline(always)]
    fn source(&self, i: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[i] + k)
            .checked_sub(self.pad[i])
            .filter(|&p| p < self.input[i])
    }

    /// The output columns `lo..hi` whose input column through tap offset `kw` is inside the
    /// input; output column `o` reads input column `o·stride + kw − pad`.
    #[inline(always)]
    fn columns(&self, kw: usize) -> (usize, usize) {
        let (s, pad, iw, ow) = (self.stride[2], self.pad[2], self.input[2], self.output[2]);
        let lo = pad.saturating_sub(kw).div_ceil(s);
        let hi = (iw + pad).saturating_sub(kw).div_ceil(s).min(ow);
        (lo, hi.max(lo))
    }

    /// The tap `r`'s channel and offsets.
    #[inline(always)]
    fn tap(&self, r: usize) -> (usize, usize, usize, usize) {
        let [kd, kh, kw] = self.kernel;
        (r / (kd * kh * kw), r / (kh * kw) % kd, r / kw % kh, r % kw)
    }

    /// `cols` of the output rows `first..first + rows` of one sample `x` (`[c_in, d, h, w]`).
    fn im2col(&self, x: &[f32], first: usize, rows: usize, cols: &mut [f32]) {
        let [_, ih, iw] = self.input;
        let [_, oh, ow] = self.output;
        let width = rows * ow;
        let plane = self.in_plane();
        cols.par_chunks_mut(width).enumerate().for_each(|(r, col)| {
            let (c, kt, kh, kw) = self.tap(r);
            let channel = &x[c * plane..(c + 1) * plane];
            for (j, out) in col.chunks_mut(ow).enumerate() {
                let (to, ho) = ((first + j) / oh, (first + j) % oh);
                let Some((ti, hi)) = self.source(0, to, kt).zip(self.source(1, ho, kh)) else {
                    out.fill(0.0);
                    continue;
                };
                let line = &channel[(ti * ih + hi) * iw..(ti * ih + hi + 1) * iw];
                let (lo, hi) = self.columns(kw);
                out[..lo].fill(0.0);
                out[hi..].fill(0.0);
                let s = self.stride[2];
                let start = lo * s + kw - self.pad[2];
                if s == 1 {
                    out[lo..hi].copy_from_slice(&line[start..start + (hi - lo)]);
                } else {
                    for (v, wi) in out[lo..hi].iter_mut().zip((start..).step_by(s)) {
                        *v = line[wi];
                    }
                }
            }
        });
    }

    /// Adds `dcols` of the output rows `first..first + rows` back into one sample's `dx`.
    fn col2im(&self, dcols: &[f32], first: usize, rows: usize, dx: &mut [f32]) {
        let [_, ih, iw] = self.input;
        let [_, oh, ow] = self.output;
        let width = rows * ow;
        let taps_per_channel = self.kernel.iter().product::<usize>();
        dx.par_chunks_mut(self.in_plane())
            .enumerate()
            .for_each(|(c, channel)| {
                for r in c * taps_per_channel..(c + 1) * taps_per_channel {
                    let (_, kt, kh, kw) = self.tap(r);
                    let col = &dcols[r * width..(r + 1) * width];
                    for (j, grad) in col.chunks(ow).enumerate() {
                        let (to, ho) = ((first + j) / oh, (first + j) % oh);
                        let Some((ti, hi)) = self.source(0, to, kt).zip(self.source(1, ho, kh))
                        else {
                            continue;
                        };
                        let line = &mut channel[(ti * ih + hi) * iw..(ti * ih + hi + 1) * iw];
                        let (lo, hi) = self.columns(kw);
                        let s = self.stride[2];
                        let start = lo * s + kw - self.pad[2];
                        for (g, wi) in grad[lo..hi].iter().zip((start..).step_by(s)) {
                            line[wi] += g;
                        }
                    }
                }
            });
    }
}

/// `dst[m × n] = (accumulate ? dst : 0) + lhs[m × k]·rhs[k × n]`, each matrix given by its
/// pointer and (row, column) strides, on rayon's threads.
///
/// # Safety
/// Every element the strides address must lie inside its allocation, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    [m, k, n]: [usize; 3],
    dst: (*mut f32, isize, isize),
    accumulate: bool,
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) {
    let parallelism = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract; gemm reads `lhs`, `rhs` and writes `dst` only where the
    // strides address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

pub(in crate::kernels) fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    options: ConvOptions<3>,
) -> FlexTensor {
    let Some(g) = Geometry::of(&x, &weight, &bias, &options) else {
        return <Flex as burn::backend::ops::ModuleOps<Flex>>::conv3d(
            x,
            weight,
            Some(bias),
            options,
        );
    };
    let (xs, ws, bs) = (
        elems(&x).expect("checked"),
        elems(&weight).expect("checked"),
        elems(&bias).expect("checked"),
    );
    let (taps, n) = (g.taps(), g.out_plane());
    let ow = g.output[2];
    // The output starts as the bias, each product is added to it.
    let mut y = Vec::with_capacity(g.batch * g.c_out * n);
    for i in 0..g.batch * g.c_out {
        y.resize(y.len() + n, bs[i % g.c_out]);
    }
    let in_len = g.c_in * g.in_plane();
    with_scratch(g.scratch_len(), |scratch| {
        for (x_b, y_b) in xs.chunks(in_len).zip(y.chunks_mut(g.c_out * n)) {
            for (first, rows) in g.tiles() {
                let width = rows * ow;
                let (cols, stride) = g.tile_columns(x_b, first, rows, scratch);
                // SAFETY: `y_b[c, first·ow ..][.. width]` for each of `c_out` rows of stride
                // `n`, `W` as `[c_out, taps]`, the columns as `[taps, width]` with their row
                // stride: all inside their slices.
                unsafe {
                    product(
                        [g.c_out, taps, width],
                        (y_b.as_mut_ptr().add(first * ow), n as isize, 1),
                        true,
                        (ws.as_ptr(), taps as isize, 1),
                        (cols, stride, 1),
                    );
                }
            }
        }
    });
    let [od, oh, ow] = g.output;
    tensor(y, Shape::new([g.batch, g.c_out, od, oh, ow]))
}

pub(in crate::kernels) fn backward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    dy: FlexTensor,
    options: ConvOptions<3>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let geometry = Geometry::of(&x, &weight, &bias, &options).filter(|_| elems(&dy).is_some());
    let Some(g) = geometry else {
        return conv3d::backward_composed::<Flex>(x, weight, bias, dy, options);
    };
    let (xs, ws, dys) = (
        elems(&x).expect("checked"),
        elems(&weight).expect("checked"),
        elems(&dy).expect("checked"),
    );
    let (taps, n) = (g.taps(), g.out_plane());
    let ow = g.output[2];
    let in_len = g.c_in * g.in_plane();
    let mut dw = vec![0f32; g.c_out * taps];
    let mut first_product = true;
    let mut dx = vec![0f32; g.batch * in_len];
    // One buffer: the columns for the weight gradient, then `dcols` over them.
    with_scratch(g.scratch_len(), |scratch| {
        for ((x_b, dy_b), dx_b) in xs
            .chunks(in_len)
            .zip(dys.chunks(g.c_out * n))
            .zip(dx.chunks_mut(in_len))
        {
            for (first, rows) in g.tiles() {
                let width = rows * ow;
                let (cols, stride) = g.tile_columns(x_b, first, rows, scratch);
                let dy_tile = dy_b[first * ow..].as_ptr();
                // Pointwise, `Wᵀ·dY` is the input gradient itself; else `dcols`, scattered
                // back by col2im.
                let (dcols, dcols_stride) = if g.pointwise() {
                    (dx_b[first * ow..].as_mut_ptr(), n)
                } else {
                    (scratch.as_mut_ptr(), width)
                };
                // SAFETY: `dW` as `[c_out, taps]`; `dY[:, tile]` as `[c_out, width]` (row
                // stride `n`) and the columns' transpose as `[width, taps]` (read by column);
                // `dcols` as `[taps, width]` with its row stride, `Wᵀ` as `[taps, c_out]`:
                // all inside their slices. `dcols` overwrites the columns only after the
                // weight gradient has read them.
                unsafe {
                    product(
                        [g.c_out, width, taps],
                        (dw.as_mut_ptr(), taps as isize, 1),
                        !first_product,
                        (dy_tile, n as isize, 1),
                        (cols, 1, stride),
                    );
                    product(
                        [taps, g.c_out, width],
                        (dcols, dcols_stride as isize, 1),
                        false,
                        (ws.as_ptr(), 1, taps as isize),
                        (dy_tile, n as isize, 1),
                    );
                }
                first_product = false;
                if !g.pointwise() {
                    g.col2im(&scratch[..taps * width], first, rows, dx_b);
                }
            }
        }
    });
    let db: Vec<f32> = (0..g.c_out)
        .into_par_iter()
        .map(|c| {
            (0..g.batch)
                .map(|b| {
                    let start = (b * g.c_out + c) * n;
                    dys[start..start + n].iter().sum::<f32>()
                })
                .sum()
        })
        .collect();
    (
        tensor(dx, x.shape()),
        tensor(dw, weight.shape()),
        tensor(db, bias.shape()),
    )
}
