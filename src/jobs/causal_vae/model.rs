//! The CausalVAE: a causal 3-D convolutional VAE laid out as Open-Sora-Plan's
//! `CausalVAEModel` (`causal_vae_488`: hidden 128, multipliers 1-2-4-4, two ResNet blocks per
//! level, spatial 2× down on levels 0-2, temporal 2× down on levels 1-2, a mid block with
//! per-frame attention, a diagonal-Gaussian latent), with the same module names
//! ([`super::weights`]). Every level uses causal 3-D convolutions, as v1.0 did; the released
//! v1.1 weights put 2-D convolutions (per frame) on the first two encoder levels, so they do
//! not load into this layout.
//!
//! Causality: every convolution pads time on the past side only, by repeating the first frame,
//! and GroupNorm statistics and attention stay within a frame, so encoder output frame `j`
//! sees input frames `≤ 4j` and the first frame is encoded on its own (an image is a 1-frame
//! video). Shapes for the 488 layout: `[B, 3, 1 + 4k, H, W]` → latent `[B, C, 1 + k, H/8, W/8]`.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig3d};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{DType, FloatDType};

use crate::config::types::ReconstructionLoss;
use crate::jobs::cost::{NORM, SampleCost, Tally, matmul};
use crate::kernels::{conv3d, frame_group_norm, softmax_last};
use crate::train::recompute::{Out, Stage, Stages};
use burn::tensor::ops::PadMode;

/// Channel multipliers of the four levels (Open-Sora-Plan's `hidden_size_mult`).
pub const LEVEL_MULT: [usize; 4] = [1, 2, 4, 4];

/// GroupNorm's ε (Open-Sora-Plan's `Normalize`).
const NORM_EPS: f64 = 1e-6;

/// Initial value of the learned mix between pooling/interpolation and convolution in the
/// temporal resamplers (sigmoid(2) ≈ 0.88 on the fixed path).
const MIX_FACTOR_INIT: f32 = 2.0;

/// The network's sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeShape {
    pub base_channels: usize,
    pub latent_channels: usize,
    pub num_res_blocks: usize,
    /// Levels (from the first) that halve height and width: log2(spatial_compression).
    pub spatial_levels: usize,
    /// Levels (from the second) that halve time: log2(temporal_compression).
    pub temporal_levels: usize,
}

impl VaeShape {
    /// The 488 layout with 8 base channels, for tests.
    #[cfg(test)]
    pub fn narrow_488() -> VaeShape {
        VaeShape {
            base_channels: 8,
            latent_channels: 4,
            num_res_blocks: 1,
            spatial_levels: 3,
            temporal_levels: 2,
        }
    }

    pub fn spatial_compression(&self) -> usize {
        1 << self.spatial_levels
    }

    pub fn temporal_compression(&self) -> usize {
        1 << self.temporal_levels
    }

    /// Latent `[C, T, H, W]` of a `[3, frames, size, size]` clip.
    pub fn latent_dims(&self, frames: usize, size: usize) -> [usize; 4] {
        [
            self.latent_channels,
            1 + (frames - 1) / self.temporal_compression(),
            size / self.spatial_compression(),
            size / self.spatial_compression(),
        ]
    }

    fn encoder_downsamples(&self, level: usize) -> (bool, bool) {
        (
            level < self.spatial_levels,
            (1..=self.temporal_levels).contains(&level),
        )
    }

    /// The decoder's level `i` undoes the encoder's level `i - 1`.
    fn decoder_upsamples(&self, level: usize) -> (bool, bool) {
        (
            (1..=self.spatial_levels).contains(&level),
            (2..=self.temporal_levels + 1).contains(&level),
        )
    }
}

impl VaeShape {
    /// One clip of `frames` × `size`² (`jobs::cost` says what is counted), and the model's
    /// parameters, walked through the same levels as [`CausalVae::new`] builds.
    pub fn cost(&self, frames: usize, size: usize) -> (SampleCost, u64) {
        let mut w = Walk::default();
        let base = self.base_channels;
        let top = base * LEVEL_MULT[LEVEL_MULT.len() - 1];
        let (mut c, mut t, mut hw) = (3, frames as f64, (size * size) as f64);
        w.conv(c, base, 27, (t + 2.0) * hw, t * hw);
        c = base;
        for (level, mult) in LEVEL_MULT.iter().enumerate() {
            let c_out = base * mult;
            for _ in 0..self.num_res_blocks {
                w.resnet(c, c_out, t, hw);
                c = c_out;
            }
            let (spatial, temporal) = self.encoder_downsamples(level);
            if spatial {
                let out = t * hw / 4.0;
                w.start_block();
                w.conv(c, c, 9, t * hw, out);
                w.end_block(c as f64 * t * hw);
                hw /= 4.0;
            }
            if temporal {
                let out = ((t as usize - 1) / 2 + 1) as f64;
                w.start_block();
                w.conv(c, c, 27, (t + 2.0) * hw, out * hw);
                // The pooled path and the mix.
                w.acts(2.0 * c as f64 * out * hw);
                w.params += 1;
                w.end_block(c as f64 * t * hw);
                t = out;
            }
        }
        w.mid(c, t, hw);
        // norm, conv_out (→ 2·latent), quant_conv, the sample and its KL; post_quant_conv,
        // the decoder's conv_in.
        let z = self.latent_channels;
        w.norm(c, t * hw);
        w.conv(c, 2 * z, 27, (t + 2.0) * hw, t * hw);
        w.conv(2 * z, 2 * z, 1, t * hw, t * hw);
        w.acts(6.0 * z as f64 * t * hw);
        w.conv(z, z, 1, t * hw, t * hw);
        w.conv(z, top, 27, (t + 2.0) * hw, t * hw);
        c = top;
        w.mid(c, t, hw);
        for level in (0..LEVEL_MULT.len()).rev() {
            let c_out = base * LEVEL_MULT[level];
            for _ in 0..=self.num_res_blocks {
                w.resnet(c, c_out, t, hw);
                c = c_out;
            }
            let (spatial, temporal) = self.decoder_upsamples(level);
            if spatial {
                w.start_block();
                hw *= 4.0;
                w.conv(c, c, 9, t * hw, t * hw);
                w.end_block(c as f64 * t * hw / 4.0);
            }
            if temporal {
                let out = 1.0 + 2.0 * (t - 1.0);
                w.start_block();
                w.conv(c, c, 27, (out + 2.0) * hw, out * hw);
                w.acts(2.0 * c as f64 * out * hw);
                w.params += 1;
                w.end_block(c as f64 * t * hw);
                t = out;
            }
        }
        // Head: norm, conv_out, the reconstruction error.
        w.norm(c, t * hw);
        w.conv(c, 3, 27, (t + 2.0) * hw, t * hw);
        w.acts(2.0 * 3.0 * t * hw);
        let params = w.params;
        // Every parameter to the last stage, so every gradient counts at every point of
        // backward (`Tally::params`), not stage by stage: measured (`bench/checkpointing.sh`,
        // 2 steps on flex), this model's peak at 9 × 32² held every activation and every
        // gradient at once (33.6 MiB against 22.7 + 11.2), where the stage-by-stage account
        // predicts the activations alone (an overcount at 17 × 64², where about a quarter of
        // them were held: 93.6 MiB against 90.8 + 11.2).
        w.tally.params(params);
        let pixels = (frames * size * size) as f64;
        let [zc, zt, zh, zw] = self.latent_dims(frames, size);
        // fp32 RGB frames and the posterior's noise.
        let input = 12.0 * pixels + 4.0 * (zc * zt * zh * zw) as f64;
        (w.tally.finish("pixels", pixels, input), params)
    }
}

/// Sums for [`VaeShape::cost`]: activations go to the open block, or to the kept stages.
#[derive(Default)]
struct Walk {
    tally: Tally,
    params: u64,
    /// The open block's FLOPs, activations and norms' inputs among them.
    block: Option<(f64, f64, f64)>,
}

impl Walk {
    fn start_block(&mut self) {
        self.block = Some((0.0, 0.0, 0.0));
    }

    fn end_block(&mut self, input: f64) {
        if let Some((flops, acts, norms)) = self.block.take() {
            self.tally.block(flops, acts, norms, input);
        }
    }

    fn add(&mut self, flops: f64, acts: f64) {
        match &mut self.block {
            Some((f, a, _)) => {
                *f += flops;
                *a += acts;
            }
            None => self.tally.kept(flops, acts),
        }
    }

    fn acts(&mut self, n: f64) {
        self.add(0.0, n);
    }

    /// A convolution `c_in → c_out` with `k` taps, reading `input` positions (padded in
    /// time) and writing `output`; it keeps its input.
    fn conv(&mut self, c_in: usize, c_out: usize, k: usize, input: f64, output: f64) {
        self.params += (c_in * c_out * k + c_out) as u64;
        self.tally
            .workspace(crate::kernels::conv3d_workspace(c_in, k, output as usize) as f64);
        self.add(
            matmul(output, (c_in * k) as f64, c_out as f64),
            c_in as f64 * input,
        );
    }

    /// GroupNorm (per frame, with or without the SiLU fused into it) over `c` channels at `n`
    /// positions: it keeps its input.
    fn norm(&mut self, c: usize, n: f64) {
        self.params += 2 * c as u64;
        let elements = NORM * c as f64 * n;
        match &mut self.block {
            Some((_, acts, norms)) => {
                *acts += elements;
                *norms += elements;
            }
            None => self.tally.kept_norm(elements),
        }
    }

    /// A ResNet block at `t` frames of `hw` pixels (two 3³ convolutions, each keeping its
    /// input padded by two frames in time: `pad_past` makes a new tensor, which is what the
    /// convolution reads and keeps).
    fn resnet(&mut self, c_in: usize, c_out: usize, t: f64, hw: f64) {
        let (n, padded) = (t * hw, (t + 2.0) * hw);
        self.start_block();
        self.norm(c_in, n);
        self.conv(c_in, c_out, 27, padded, n);
        self.norm(c_out, n);
        self.conv(c_out, c_out, 27, padded, n);
        if c_in != c_out {
            self.conv(c_in, c_out, 1, n, n);
        }
        self.end_block(c_in as f64 * n);
    }

    /// The mid block: ResNet, per-frame attention over `hw` pixels, ResNet.
    fn mid(&mut self, c: usize, t: f64, hw: f64) {
        self.resnet(c, c, t, hw);
        self.start_block();
        self.norm(c, t * hw);
        for _ in 0..4 {
            self.conv(c, c, 1, t * hw, t * hw);
        }
        let c = c as f64;
        // q, k, v as tokens; the scores' softmax; attention's output.
        self.add(
            2.0 * matmul(hw, c, hw) * t,
            3.0 * c * t * hw + t * hw * hw + c * t * hw,
        );
        self.end_block(c * t * hw);
        self.resnet(c as usize, c as usize, t, hw);
    }
}

/// GroupNorm parameters with Open-Sora-Plan's 32 groups, or as many as divide narrow layers (16 channels
/// of the tiny model give 16 groups).
fn group_norm(channels: usize, device: &Device) -> GroupNorm {
    let groups = gcd(32, channels);
    GroupNormConfig::new(groups, channels)
        .with_epsilon(NORM_EPS)
        .init(device)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A 3-D convolution padded causally in time (the first frame repeated `kernel_t - 1` times in
/// front) and symmetrically with zeros in space (`pad` pixels per side).
#[derive(Module, Debug)]
pub struct CausalConv3d {
    pub conv: Conv3d,
    time_pad: usize,
}

impl CausalConv3d {
    pub fn new(
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        pad: usize,
        device: &Device,
    ) -> CausalConv3d {
        let mut conv = Conv3dConfig::new(channels, kernel)
            .with_stride(stride)
            .with_padding(PaddingConfig3d::Explicit(0, pad, pad))
            .init(device);
        // The reference zeroes CausalConv3d biases (its `init_method="random"` keeps PyTorch's
        // weight init only).
        conv.bias = conv
            .bias
            .map(|_| Param::from_tensor(Tensor::zeros([channels[1]], device)));
        CausalConv3d {
            conv,
            time_pad: kernel[0] - 1,
        }
    }

    /// `k×k×k`, stride 1, padded to keep the size.
    fn cube(c_in: usize, c_out: usize, k: usize, device: &Device) -> CausalConv3d {
        CausalConv3d::new([c_in, c_out], [k, k, k], [1, 1, 1], k / 2, device)
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        conv3d(&self.conv, pad_past(x, self.time_pad))
    }
}

/// `n` copies of the first frame in front of `x` `[B, C, T, H, W]`.
fn pad_past(x: Tensor<5>, n: usize) -> Tensor<5> {
    if n == 0 {
        return x;
    }
    let first = x.clone().narrow(2, 0, 1);
    let mut parts = vec![first; n];
    parts.push(x);
    Tensor::cat(parts, 2)
}

/// Pre-activation ResNet block: GroupNorm, SiLU, conv, GroupNorm, SiLU, conv, plus the input
/// (through a 1×1×1 conv when the width changes). Dropout 0 as in the 488 config, so none.
#[derive(Module, Debug)]
pub struct ResnetBlock3d {
    pub norm1: GroupNorm,
    pub conv1: CausalConv3d,
    pub norm2: GroupNorm,
    pub conv2: CausalConv3d,
    pub nin_shortcut: Option<CausalConv3d>,
}

impl ResnetBlock3d {
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> ResnetBlock3d {
        ResnetBlock3d {
            norm1: group_norm(c_in, device),
            conv1: CausalConv3d::cube(c_in, c_out, 3, device),
            norm2: group_norm(c_out, device),
            conv2: CausalConv3d::cube(c_out, c_out, 3, device),
            nin_shortcut: (c_in != c_out).then(|| CausalConv3d::cube(c_in, c_out, 1, device)),
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let h = self
            .conv1
            .forward(frame_group_norm(&self.norm1, x.clone(), true));
        let h = self.conv2.forward(frame_group_norm(&self.norm2, h, true));
        let x = match &self.nin_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        x + h
    }
}

/// Self-attention among the pixels of each frame (Open-Sora-Plan's `AttnBlock3DFix`), so
/// frames never see each other here.
#[derive(Module, Debug)]
pub struct AttnBlock3d {
    pub norm: GroupNorm,
    pub q: CausalConv3d,
    pub k: CausalConv3d,
    pub v: CausalConv3d,
    pub proj_out: CausalConv3d,
}

impl AttnBlock3d {
    pub fn new(c: usize, device: &Device) -> AttnBlock3d {
        AttnBlock3d {
            norm: group_norm(c, device),
            q: CausalConv3d::cube(c, c, 1, device),
            k: CausalConv3d::cube(c, c, 1, device),
            v: CausalConv3d::cube(c, c, 1, device),
            proj_out: CausalConv3d::cube(c, c, 1, device),
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, t, h, w] = x.dims();
        let n = frame_group_norm(&self.norm, x.clone(), false);
        // [B, C, T, H, W] → [B·T, H·W, C]
        let tokens = |y: Tensor<5>| y.permute([0, 2, 3, 4, 1]).reshape([b * t, h * w, c]);
        let q = tokens(self.q.forward(n.clone()));
        let k = tokens(self.k.forward(n.clone()));
        let v = tokens(self.v.forward(n));
        let scores = q.matmul(k.swap_dims(1, 2)) * (c as f64).powf(-0.5);
        let out = softmax_last(scores).matmul(v);
        let out = out.reshape([b, t, h, w, c]).permute([0, 4, 1, 2, 3]);
        x + self.proj_out.forward(out)
    }
}

/// Halves height and width: zero-pad right and bottom by one, then a `1×3×3` stride-2 conv.
#[derive(Module, Debug)]
pub struct SpatialDownsample2x {
    pub conv: CausalConv3d,
}

impl SpatialDownsample2x {
    fn new(c: usize, device: &Device) -> Self {
        SpatialDownsample2x {
            conv: CausalConv3d::new([c, c], [1, 3, 3], [1, 2, 2], 0, device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.conv
            .forward(x.pad([(0, 1), (0, 1)], PadMode::Constant(0.0)))
    }
}

/// Doubles height and width: nearest-neighbour, then a `1×3×3` conv.
#[derive(Module, Debug)]
pub struct SpatialUpsample2x {
    pub conv: CausalConv3d,
}

impl SpatialUpsample2x {
    fn new(c: usize, device: &Device) -> Self {
        SpatialUpsample2x {
            conv: CausalConv3d::new([c, c], [1, 3, 3], [1, 1, 1], 1, device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, t, h, w] = x.dims();
        let up = x
            .reshape([b * c * t, h, 1, w, 1])
            .expand([b * c * t, h, 2, w, 2])
            .reshape([b, c, t, 2 * h, 2 * w]);
        self.conv.forward(up)
    }
}

/// Halves time: `sigmoid(m)·avgpool + (1 − sigmoid(m))·conv`, both 3 frames wide with stride
/// 2 over the input padded in front by two copies of the first frame (`1 + 2k` → `1 + k`).
#[derive(Module, Debug)]
pub struct TimeDownsampleRes2x {
    pub conv: Conv3d,
    pub mix_factor: Param<Tensor<1>>,
}

impl TimeDownsampleRes2x {
    fn new(c: usize, device: &Device) -> Self {
        TimeDownsampleRes2x {
            conv: Conv3dConfig::new([c, c], [3, 3, 3])
                .with_stride([2, 1, 1])
                .with_padding(PaddingConfig3d::Explicit(0, 1, 1))
                .init(device),
            mix_factor: Param::from_tensor(Tensor::from_floats([MIX_FACTOR_INIT], device)),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = pad_past(x, 2);
        let [b, c, t, h, w] = x.dims();
        // AvgPool3d((3, 1, 1), stride (2, 1, 1)) as a 2-D pool over [time, pixels].
        let pooled = avg_pool2d(
            x.clone().reshape([b, c, t, h * w]),
            AvgPoolOptions::new([3, 1]).with_stride([2, 1]),
        );
        let out = pooled.dims()[2];
        let pooled = pooled.reshape([b, c, out, h, w]);
        let alpha = sigmoid(self.mix_factor.val()).reshape([1, 1, 1, 1, 1]);
        pooled * alpha.clone() + self.conv.forward(x) * (alpha.neg() + 1.0)
    }
}

/// Doubles time after the first frame (`1 + k` → `1 + 2k`): linear interpolation (PyTorch's
/// trilinear with scale (2, 1, 1), `align_corners=False`), mixed with a causal conv of it as
/// `sigmoid(m)·x + (1 − sigmoid(m))·conv(x)`.
#[derive(Module, Debug)]
pub struct TimeUpsampleRes2x {
    pub conv: CausalConv3d,
    pub mix_factor: Param<Tensor<1>>,
}

impl TimeUpsampleRes2x {
    fn new(c: usize, device: &Device) -> Self {
        TimeUpsampleRes2x {
            conv: CausalConv3d::cube(c, c, 3, device),
            mix_factor: Param::from_tensor(Tensor::from_floats([MIX_FACTOR_INIT], device)),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let t = x.dims()[2];
        let x = if t > 1 {
            let first = x.clone().narrow(2, 0, 1);
            let rest = x.narrow(2, 1, t - 1);
            Tensor::cat(vec![first, upsample_time_linear(rest)], 2)
        } else {
            x
        };
        let alpha = sigmoid(self.mix_factor.val()).reshape([1, 1, 1, 1, 1]);
        x.clone() * alpha.clone() + self.conv.forward(x) * (alpha.neg() + 1.0)
    }
}

/// `n` frames → `2n` by linear interpolation at half-frame offsets, edges clamped: output
/// `2k` is `¾·x[k] + ¼·x[k−1]`, output `2k+1` is `¾·x[k] + ¼·x[k+1]`.
pub fn upsample_time_linear(x: Tensor<5>) -> Tensor<5> {
    let [b, c, n, h, w] = x.dims();
    let prev = if n > 1 {
        Tensor::cat(
            vec![x.clone().narrow(2, 0, 1), x.clone().narrow(2, 0, n - 1)],
            2,
        )
    } else {
        x.clone()
    };
    let next = if n > 1 {
        Tensor::cat(
            vec![x.clone().narrow(2, 1, n - 1), x.clone().narrow(2, n - 1, 1)],
            2,
        )
    } else {
        x.clone()
    };
    let even = x.clone() * 0.75 + prev * 0.25;
    let odd = x * 0.75 + next * 0.25;
    // Interleave along time: [B, C, n, 2, H, W] → [B, C, 2n, H, W].
    Tensor::stack::<6>(vec![even, odd], 3).reshape([b, c, 2 * n, h, w])
}

#[derive(Module, Debug)]
pub struct DownLevel {
    pub block: Vec<ResnetBlock3d>,
    pub downsample: Option<SpatialDownsample2x>,
    pub time_downsample: Option<TimeDownsampleRes2x>,
}

#[derive(Module, Debug)]
pub struct UpLevel {
    pub block: Vec<ResnetBlock3d>,
    pub upsample: Option<SpatialUpsample2x>,
    pub time_upsample: Option<TimeUpsampleRes2x>,
}

#[derive(Module, Debug)]
pub struct Mid {
    pub block_1: ResnetBlock3d,
    pub attn_1: AttnBlock3d,
    pub block_2: ResnetBlock3d,
}

impl Mid {
    fn new(c: usize, device: &Device) -> Mid {
        Mid {
            block_1: ResnetBlock3d::new(c, c, device),
            attn_1: AttnBlock3d::new(c, device),
            block_2: ResnetBlock3d::new(c, c, device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.block_2
            .forward(self.attn_1.forward(self.block_1.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: CausalConv3d,
    pub down: Vec<DownLevel>,
    pub mid: Mid,
    pub norm_out: GroupNorm,
    pub conv_out: CausalConv3d,
}

impl Encoder {
    fn new(s: &VaeShape, device: &Device) -> Encoder {
        let base = s.base_channels;
        let mut c_in = base;
        let down = (0..LEVEL_MULT.len())
            .map(|level| {
                let c_out = base * LEVEL_MULT[level];
                let block = (0..s.num_res_blocks)
                    .map(|j| ResnetBlock3d::new(if j == 0 { c_in } else { c_out }, c_out, device))
                    .collect();
                c_in = c_out;
                let (spatial, temporal) = s.encoder_downsamples(level);
                DownLevel {
                    block,
                    downsample: spatial.then(|| SpatialDownsample2x::new(c_out, device)),
                    time_downsample: temporal.then(|| TimeDownsampleRes2x::new(c_out, device)),
                }
            })
            .collect();
        Encoder {
            conv_in: CausalConv3d::cube(3, base, 3, device),
            down,
            mid: Mid::new(c_in, device),
            norm_out: group_norm(c_in, device),
            conv_out: CausalConv3d::cube(c_in, 2 * s.latent_channels, 3, device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut h = self.conv_in.forward(x);
        for level in &self.down {
            for block in &level.block {
                h = block.forward(h);
            }
            if let Some(d) = &level.downsample {
                h = d.forward(h);
            }
            if let Some(d) = &level.time_downsample {
                h = d.forward(h);
            }
        }
        let h = self.mid.forward(h);
        self.conv_out
            .forward(frame_group_norm(&self.norm_out, h, true))
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: CausalConv3d,
    pub mid: Mid,
    /// Indexed by level as the encoder's (`up.0` is the full-resolution level), run from the
    /// last to the first.
    pub up: Vec<UpLevel>,
    pub norm_out: GroupNorm,
    pub conv_out: CausalConv3d,
}

impl Decoder {
    fn new(s: &VaeShape, device: &Device) -> Decoder {
        let base = s.base_channels;
        let top = base * LEVEL_MULT[LEVEL_MULT.len() - 1];
        let mut c_in = top;
        let mut up: Vec<UpLevel> = (0..LEVEL_MULT.len())
            .rev()
            .map(|level| {
                let c_out = base * LEVEL_MULT[level];
                let block = (0..=s.num_res_blocks)
                    .map(|j| ResnetBlock3d::new(if j == 0 { c_in } else { c_out }, c_out, device))
                    .collect();
                c_in = c_out;
                let (spatial, temporal) = s.decoder_upsamples(level);
                UpLevel {
                    block,
                    upsample: spatial.then(|| SpatialUpsample2x::new(c_out, device)),
                    time_upsample: temporal.then(|| TimeUpsampleRes2x::new(c_out, device)),
                }
            })
            .collect();
        up.reverse();
        Decoder {
            conv_in: CausalConv3d::cube(s.latent_channels, top, 3, device),
            mid: Mid::new(top, device),
            up,
            norm_out: group_norm(c_in, device),
            conv_out: CausalConv3d::cube(c_in, 3, 3, device),
        }
    }

    fn forward(&self, z: Tensor<5>) -> Tensor<5> {
        let mut h = self.mid.forward(self.conv_in.forward(z));
        for level in self.up.iter().rev() {
            for block in &level.block {
                h = block.forward(h);
            }
            if let Some(u) = &level.upsample {
                h = u.forward(h);
            }
            if let Some(u) = &level.time_upsample {
                h = u.forward(h);
            }
        }
        self.conv_out
            .forward(frame_group_norm(&self.norm_out, h, true))
    }
}

/// The diagonal Gaussian the encoder predicts: mean and log-variance (clamped to [−30, 20]
/// as in the reference), `[B, C, T, H, W]` each.
pub struct Posterior {
    pub mean: Tensor<5>,
    pub logvar: Tensor<5>,
}

impl Posterior {
    fn from_moments(moments: Tensor<5>) -> Posterior {
        let c = moments.dims()[1] / 2;
        let mean = moments.clone().narrow(1, 0, c);
        let logvar = moments.narrow(1, c, c).clamp(-30.0, 20.0);
        Posterior { mean, logvar }
    }

    /// `mean + std · ε` for a standard-normal `eps` of the latent's shape (any float dtype:
    /// it is cast to the posterior's).
    pub fn sample(&self, eps: Tensor<5>) -> Tensor<5> {
        let eps = eps.cast(self.mean.dtype());
        self.mean.clone() + (self.logvar.clone() * 0.5).exp() * eps
    }

    /// KL(q ‖ N(0, I)) per sample, summed over the latent: `½ Σ (μ² + σ² − 1 − log σ²)`, `[B]`.
    pub fn kl(&self) -> Tensor<1> {
        let b = self.mean.dims()[0];
        let terms = self.mean.clone().powi_scalar(2) + self.logvar.clone().exp()
            - 1.0
            - self.logvar.clone();
        terms.reshape([b as i32, -1]).sum_dim(1).reshape([b]) * 0.5
    }
}

#[derive(Module, Debug)]
pub struct CausalVae {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: CausalConv3d,
    pub post_quant_conv: CausalConv3d,
}

impl CausalVae {
    pub fn new(s: &VaeShape, device: &Device) -> CausalVae {
        let z = s.latent_channels;
        CausalVae {
            encoder: Encoder::new(s, device),
            decoder: Decoder::new(s, device),
            quant_conv: CausalConv3d::cube(2 * z, 2 * z, 1, device),
            post_quant_conv: CausalConv3d::cube(z, z, 1, device),
        }
    }

    /// The latent distribution of clips `[B, 3, T, H, W]` in [−1, 1].
    /// The posterior of clips `x` (any float dtype: cast to the model's at entry).
    pub fn encode(&self, x: Tensor<5>) -> Posterior {
        let x = x.cast(self.float_dtype());
        Posterior::from_moments(self.quant_conv.forward(self.encoder.forward(x)))
    }

    /// Clips from latents `z` (any float dtype), in the model's dtype.
    pub fn decode(&self, z: Tensor<5>) -> Tensor<5> {
        let z = z.cast(self.float_dtype());
        self.decoder.forward(self.post_quant_conv.forward(z))
    }

    /// The training loss of clips `x`, `[1]`: the reconstruction error of a sampled latent,
    /// per pixel, plus `kl_weight` × the KL per pixel.
    ///
    /// Open-Sora-Plan's `LPIPSWithDiscriminator3D` (without LPIPS and discriminator) divides
    /// the summed reconstruction error by the number of frames (B·T) and the summed KL by the
    /// number of clips (B). Dividing both of its terms by the pixels per frame (3·H·W) gives
    /// this loss: the same balance, so `kl_weight` means what it means there, and a per-pixel
    /// reconstruction error in the log. Its `logvar` is not trained, as in the reference, whose
    /// optimizers never update it (at 0 it leaves the loss unchanged).
    ///
    /// `eps` is the posterior sample's standard-normal noise, `[B, latent, T', H', W']`: drawn
    /// by the caller (the job draws it on the host from the clip's seed, so a step is the same
    /// on every backend). The network computes in its parameters' dtype (bf16/fp16 under mixed
    /// precision); the loss, against the fp32 input, in fp32.
    pub fn loss(
        &self,
        x: Tensor<5>,
        eps: Tensor<5>,
        kl_weight: f64,
        kind: ReconstructionLoss,
    ) -> Tensor<1> {
        let [_, c, _, h, w] = x.dims();
        let per_frame = (c * h * w) as f64;
        let posterior = self.encode(x.clone());
        let recon = self.decode(posterior.sample(eps)).cast(FloatDType::F32);
        let rec = reconstruction_error(x, recon, kind).mean();
        let posterior = Posterior {
            mean: posterior.mean.cast(FloatDType::F32),
            logvar: posterior.logvar.cast(FloatDType::F32),
        };
        rec + posterior.kl().mean() * (kl_weight / per_frame)
    }

    /// [`CausalVae::loss`] as stages for gradient checkpointing: every ResNet block, resampler
    /// and mid-block part is recomputed; the posterior (its sample and the KL term) and the
    /// layers around it are kept; the head is the decoder's last norm and convolution and the
    /// reconstruction error. `shape` must be the model's.
    pub fn loss_stages<'a>(
        shape: &VaeShape,
        x: Tensor<5>,
        eps: Tensor<5>,
        kl_weight: f64,
        kind: ReconstructionLoss,
    ) -> Stages<'a, CausalVae, Tensor<5>> {
        fn block<'a>(
            f: impl Fn(&CausalVae, Tensor<5>) -> Tensor<5> + 'a,
        ) -> Stage<'a, CausalVae, Tensor<5>> {
            Stage::Block(Box::new(move |m: &CausalVae, h| Out::next(f(m, h))))
        }
        fn mid<'a>(stages: &mut Vec<Stage<'a, CausalVae, Tensor<5>>>, of: fn(&CausalVae) -> &Mid) {
            stages.push(block(move |m, h| of(m).block_1.forward(h)));
            stages.push(block(move |m, h| of(m).attn_1.forward(h)));
            stages.push(block(move |m, h| of(m).block_2.forward(h)));
        }
        let [_, c, _, h, w] = x.dims();
        let per_frame = (c * h * w) as f64;
        let mut stages = Vec::new();
        for level in 0..LEVEL_MULT.len() {
            for j in 0..shape.num_res_blocks {
                stages.push(block(move |m, h| m.encoder.down[level].block[j].forward(h)));
            }
            let (spatial, temporal) = shape.encoder_downsamples(level);
            if spatial {
                stages.push(block(move |m, h| {
                    m.encoder.down[level]
                        .downsample
                        .as_ref()
                        .expect("the shape's")
                        .forward(h)
                }));
            }
            if temporal {
                stages.push(block(move |m, h| {
                    let d = m.encoder.down[level].time_downsample.as_ref();
                    d.expect("the shape's").forward(h)
                }));
            }
        }
        mid(&mut stages, |m| &m.encoder.mid);
        // The posterior, its sample and the KL term; then the decoder's first layers.
        stages.push(Stage::Kept(Box::new(move |m: &CausalVae, h| {
            let e = &m.encoder;
            let moments =
                m.quant_conv
                    .forward(e.conv_out.forward(frame_group_norm(&e.norm_out, h, true)));
            let posterior = Posterior::from_moments(moments);
            let z = posterior.sample(eps.clone());
            let posterior = Posterior {
                mean: posterior.mean.cast(FloatDType::F32),
                logvar: posterior.logvar.cast(FloatDType::F32),
            };
            let next = m.decoder.conv_in.forward(m.post_quant_conv.forward(z));
            Out {
                next,
                loss: Some(posterior.kl().mean() * (kl_weight / per_frame)),
            }
        })));
        mid(&mut stages, |m| &m.decoder.mid);
        for level in (0..LEVEL_MULT.len()).rev() {
            for j in 0..=shape.num_res_blocks {
                stages.push(block(move |m, h| m.decoder.up[level].block[j].forward(h)));
            }
            let (spatial, temporal) = shape.decoder_upsamples(level);
            if spatial {
                stages.push(block(move |m, h| {
                    m.decoder.up[level]
                        .upsample
                        .as_ref()
                        .expect("the shape's")
                        .forward(h)
                }));
            }
            if temporal {
                stages.push(block(move |m, h| {
                    let u = m.decoder.up[level].time_upsample.as_ref();
                    u.expect("the shape's").forward(h)
                }));
            }
        }
        let input = x.clone();
        Stages {
            stem: Box::new(move |m: &CausalVae| {
                m.encoder.conv_in.forward(input.cast(m.float_dtype()))
            }),
            stages,
            head: Box::new(move |m: &CausalVae, h| {
                let d = &m.decoder;
                let recon = d
                    .conv_out
                    .forward(frame_group_norm(&d.norm_out, h, true))
                    .cast(FloatDType::F32);
                reconstruction_error(x, recon, kind).mean()
            }),
        }
    }

    /// The dtype the model computes in (its parameters'): inputs are built in it.
    pub fn float_dtype(&self) -> DType {
        self.quant_conv.conv.weight.val().dtype()
    }
}

/// Per-element reconstruction error, `|x̂ − x|` or `(x̂ − x)²`.
pub fn reconstruction_error(x: Tensor<5>, recon: Tensor<5>, kind: ReconstructionLoss) -> Tensor<5> {
    let d = recon - x;
    match kind {
        ReconstructionLoss::L1 => d.abs(),
        ReconstructionLoss::Mse => d.powi_scalar(2),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::train::backend::seeded_test_device;

    #[test]
    fn the_488_layout_maps_17x256x256_to_5x32x32() {
        let s = VaeShape {
            base_channels: 128,
            latent_channels: 4,
            num_res_blocks: 2,
            spatial_levels: 3,
            temporal_levels: 2,
        };
        assert_eq!(s.latent_dims(17, 256), [4, 5, 32, 32]);
        assert_eq!(
            (0..4).map(|l| s.encoder_downsamples(l)).collect::<Vec<_>>(),
            [(true, false), (true, true), (true, true), (false, false)]
        );
        assert_eq!(
            (0..4).map(|l| s.decoder_upsamples(l)).collect::<Vec<_>>(),
            [(false, false), (true, false), (true, true), (true, true)]
        );
    }

    #[test]
    fn shapes_through_the_488_layout() {
        // The 488 layout with narrow layers runs the same shapes as the full model.
        let (_rng, device) = seeded_test_device(1);
        let model = CausalVae::new(&VaeShape::narrow_488(), &device);
        let x = Tensor::<5>::random(
            [1, 3, 17, 64, 64],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let post = model.encode(x);
        assert_eq!(post.mean.dims(), [1, 4, 5, 8, 8]);
        assert_eq!(post.logvar.dims(), [1, 4, 5, 8, 8]);
        assert_eq!(model.decode(post.mean).dims(), [1, 3, 17, 64, 64]);
        // An image is a one-frame video.
        let img = Tensor::<5>::zeros([2, 3, 1, 16, 16], &device);
        let post = model.encode(img);
        assert_eq!(post.mean.dims(), [2, 4, 1, 2, 2]);
        assert_eq!(model.decode(post.mean).dims(), [2, 3, 1, 16, 16]);
    }

    #[test]
    fn bf16_training_follows_fp32() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(5);
        for device in devices {
            let model = CausalVae::new(&VaeShape::narrow_488(), &device);
            let x =
                Tensor::<5>::random([1, 3, 5, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
            let eps = Tensor::<5>::random([1, 4, 2, 2, 2], Distribution::Normal(0.0, 1.0), &device);
            crate::train::precision::assert_bf16_follows_fp32(
                &model,
                |m| m.loss(x.clone(), eps.clone(), 1e-3, ReconstructionLoss::L1),
                0.05,
            );
        }
    }

    #[test]
    fn the_counted_parameters_are_the_built_ones() {
        let (_rng, device) = seeded_test_device(0);
        let wide = VaeShape {
            num_res_blocks: 2,
            ..VaeShape::narrow_488()
        };
        for shape in [VaeShape::narrow_488(), wide] {
            let built = CausalVae::new(&shape, &device).num_params() as u64;
            assert_eq!(shape.cost(9, 32).1, built);
        }
    }

    #[test]
    fn checkpointed_gradients_equal_the_plain_ones() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(6);
        for device in devices {
            let shape = VaeShape::narrow_488();
            let model = CausalVae::new(&shape, &device);
            let x =
                Tensor::<5>::random([1, 3, 5, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
            let eps = Tensor::<5>::random([1, 4, 2, 2, 2], Distribution::Normal(0.0, 1.0), &device);
            let kind = ReconstructionLoss::L1;
            let own = model.loss(x.clone(), eps.clone(), 0.5, kind);
            let own = f64::from(own.into_scalar::<f32>());
            let stages = || CausalVae::loss_stages(&shape, x.clone(), eps.clone(), 0.5, kind);
            let plain = stages().plain(&model, 1.0, 0, &device).loss;
            assert!((own - plain).abs() < 1e-6, "{own} vs {plain}");
            crate::train::recompute::assert_checkpointing_matches(&model, stages, &device, 1e-4);
        }
    }

    #[test]
    fn the_encoder_is_causal() {
        let (_rng, device) = seeded_test_device(2);
        let model = CausalVae::new(&VaeShape::narrow_488(), &device);
        let x = Tensor::<5>::random([1, 3, 9, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
        let base = model.encode(x.clone()).mean;
        // Latent frame j covers input frames ≤ 4j: changing frame t+1 must leave every latent
        // frame j with 4j ≤ t alone, and change the next one.
        for t in 0..8usize {
            let changed = x.clone().slice_assign(
                [0..1, 0..3, t + 1..t + 2, 0..16, 0..16],
                Tensor::ones([1, 3, 1, 16, 16], &device),
            );
            let out = model.encode(changed).mean;
            let unchanged = t / 4 + 1;
            let diff = |j: usize| -> f32 {
                (out.clone().narrow(2, j, 1) - base.clone().narrow(2, j, 1))
                    .abs()
                    .max()
                    .into_scalar()
            };
            for j in 0..unchanged {
                assert_eq!(diff(j), 0.0, "frame {} changed latent frame {j}", t + 1);
            }
            assert!(
                diff(unchanged) > 0.0,
                "frame {} reached no latent frame",
                t + 1
            );
        }
    }

    #[test]
    fn kl_of_a_standard_normal_is_zero() {
        let (_rng, device) = seeded_test_device(3);
        let zeros = Tensor::<5>::zeros([2, 4, 3, 2, 2], &device);
        let post = Posterior {
            mean: zeros.clone(),
            logvar: zeros.clone(),
        };
        assert_eq!(
            post.kl().into_data().try_to_vec::<f32>().unwrap(),
            [0.0, 0.0]
        );
        // μ = 1, σ = 1: ½ Σ 1 over 48 elements.
        let shifted = Posterior {
            mean: zeros.clone() + 1.0,
            logvar: zeros,
        };
        let kl: Vec<f32> = shifted.kl().into_data().try_to_vec().unwrap();
        assert_eq!(kl, [24.0, 24.0]);
    }

    #[test]
    fn time_upsampling_matches_pytorch_trilinear() {
        // torch.nn.functional.interpolate(x, scale_factor=(2, 1, 1), mode="trilinear") of
        // frames [0, 4, 8] gives [0, 1, 3, 5, 7, 8].
        let (_rng, device) = seeded_test_device(4);
        let x = Tensor::<5>::from_floats([[[[[0.0]], [[4.0]], [[8.0]]]]], &device);
        let up: Vec<f32> = upsample_time_linear(x).into_data().try_to_vec().unwrap();
        assert_eq!(up, [0.0, 1.0, 3.0, 5.0, 7.0, 8.0]);
    }

    #[test]
    fn time_downsampling_pools_three_frames_with_stride_two() {
        let (_rng, device) = seeded_test_device(5);
        let mut down = TimeDownsampleRes2x::new(1, &device);
        // All weight on the pooling path (sigmoid(50) = 1).
        down.mix_factor = Param::from_tensor(Tensor::from_floats([50.0], &device));
        let x =
            Tensor::<5>::from_floats([[[[[1.0]], [[2.0]], [[3.0]], [[4.0]], [[5.0]]]]], &device);
        let out: Vec<f32> = down.forward(x).into_data().try_to_vec().unwrap();
        // Padded: 1 1 1 2 3 4 5 → means of (1,1,1), (1,2,3), (3,4,5).
        assert_eq!(out, [1.0, 2.0, 4.0]);
    }
}
