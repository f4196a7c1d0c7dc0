//! The masked autoencoder of He et al., laid out as the reference `MaskedAutoencoderViT` so that
//! `runner export` maps it by name: a pre-LN ViT encoder (timm `Block`: fused qkv, exact GELU,
//! LayerNorm eps 1e-6) over the visible patches plus a class token, fixed 2-D sin-cos position
//! embeddings, and a narrower decoder that fills in mask tokens and predicts each patch's pixels.
//!
//! One deliberate difference: the patch embedding is a `Linear` over patchified pixels instead of
//! a stride-`p` convolution. The two compute the same map (export reshapes the weight to the
//! convolution's `[D, 3, p, p]`), and a matrix product is what burn's CPU backend does fastest.

use std::rc::Rc;

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorData};

use crate::jobs::cost::{NORM, SampleCost, Tally, matmul};
use crate::kernels::{LayerNorm, gelu, linear, linear_part, softmax_last};
use crate::train::recompute::{Out, Stage, Stages};

/// Sizes of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct MaeShape {
    pub image_size: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub decoder_embed_dim: usize,
    pub decoder_depth: usize,
    pub decoder_num_heads: usize,
    pub norm_pix_loss: bool,
}

impl MaeShape {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Values per patch (`p · p · 3`).
    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * 3
    }
}

impl MaeShape {
    /// One image with `keep` visible patches (`jobs::cost` says what is counted).
    pub fn cost(&self, keep: usize) -> SampleCost {
        let (l, pd) = (self.patches() as f64, self.patch_dim() as f64);
        let (d, dd) = (self.embed_dim as f64, self.decoder_embed_dim as f64);
        let (ne, nd) = (1.0 + keep as f64, 1.0 + l);
        let p = self.params_by_stage();
        let mut t = Tally::default();
        // Patchify (the embedding's input), embed every patch, keep the visible ones (the
        // first block's input: counted there).
        t.params(p.stem);
        t.kept(matmul(l, pd, d), l * pd);
        let block = |n: f64, d: f64, heads: usize| {
            let flops = matmul(n, d, 12.0 * d) + 2.0 * matmul(n, d, n);
            // Two LayerNorms' inputs and outputs (qkv's and fc1's inputs); q, k, v; attention
            // output (proj's input); fc1's output (GELU's input) and GELU's (fc2's input);
            // softmax's output over the scores.
            let acts = (2.0 * (NORM + 1.0) + 3.0 + 1.0 + 8.0) * n * d + heads as f64 * n * n;
            // In backward: the output's and input's gradients, and the MLP's hidden gradient
            // or the scores' (GELU's and softmax's backward write theirs in place).
            let in_flight = (4.0 * d * n).max(heads as f64 * n * n) + 2.0 * n * d;
            (flops, acts, 2.0 * NORM * n * d, in_flight)
        };
        for _ in 0..self.depth {
            let (f, a, norms, in_flight) = block(ne, d, self.num_heads);
            t.params(p.block);
            t.block(f, a, norms, ne * d);
            t.block_in_flight(in_flight);
        }
        // Norm (its input and output, the decoder embedding's input); the embedded tokens are
        // sliced, put back in order among mask tokens and given positions (none of which
        // keeps anything) into the first decoder block's input.
        t.params(p.hand_over);
        t.kept_norm(NORM * ne * d);
        t.kept(matmul(ne, d, dd), ne * d);
        for _ in 0..self.decoder_depth {
            let (f, a, norms, in_flight) = block(nd, dd, self.decoder_num_heads);
            t.params(p.decoder_block);
            t.block(f, a, norms, nd * dd);
            t.block_in_flight(in_flight);
        }
        // Norm (input and output, the prediction's input), the error against the target
        // patches (its square keeps it).
        t.params(p.head);
        t.kept_norm(NORM * nd * dd);
        t.kept(matmul(nd, dd, pd), nd * dd + l * pd);
        let pixels = (self.image_size * self.image_size) as f64;
        // fp32 RGB and the mask's order.
        t.finish("pixels", pixels, 12.0 * pixels + 16.0 * l)
    }

    /// Parameters of the model with these sizes (the position embeddings are fixed, not
    /// parameters).
    pub fn num_params(&self) -> u64 {
        let p = self.params_by_stage();
        p.stem
            + self.depth as u64 * p.block
            + p.hand_over
            + self.decoder_depth as u64 * p.decoder_block
            + p.head
    }

    fn params_by_stage(&self) -> MaeParams {
        let (d, dd, pd) = (
            self.embed_dim as u64,
            self.decoder_embed_dim as u64,
            self.patch_dim() as u64,
        );
        let block = |d: u64| 12 * d * d + 13 * d;
        MaeParams {
            // The patch embedding and the class token.
            stem: pd * d + d + d,
            block: block(d),
            // The encoder's norm, the decoder embedding and the mask token.
            hand_over: 2 * d + d * dd + dd + dd,
            decoder_block: block(dd),
            // The decoder's norm and the prediction.
            head: 2 * dd + dd * pd + pd,
        }
    }
}

/// Parameters of each stage of [`MaeShape::cost`].
struct MaeParams {
    stem: u64,
    block: u64,
    hand_over: u64,
    decoder_block: u64,
    head: u64,
}

const LN_EPS: f64 = 1e-6;
/// Added to the patch variance in `norm_pix_loss`, as in the reference.
const NORM_PIX_EPS: f64 = 1e-6;

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub num_heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct MaeVit {
    /// `[p·p·3, D]` over patchified pixels (see the module note).
    pub patch_embed: Linear,
    pub cls_token: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    pub decoder_embed: Linear,
    pub mask_token: Param<Tensor<3>>,
    pub decoder_blocks: Vec<Block>,
    pub decoder_norm: LayerNorm,
    pub decoder_pred: Linear,
    pub patch_size: usize,
    pub norm_pix_loss: bool,
    /// The fixed position embeddings (class token first), host copies: not parameters.
    #[module(skip)]
    pub pos_embed: Vec<f32>,
    #[module(skip)]
    pub decoder_pos_embed: Vec<f32>,
}

/// A batch on the device.
pub struct MaeInput {
    /// Normalised images `[B, 3, H, W]`.
    pub images: Tensor<4>,
    /// Visible patches, flat indices into `[B·L]` (`b·L + shuffle[b][j]`, `j < keep`).
    pub keep_index: Tensor<1, Int>,
    /// Image-order gather into the decoder's `[visible…, mask tokens…]`, flat into `[B·L]`.
    pub restore_index: Tensor<1, Int>,
    /// `[B, L]`: 1 where the patch is hidden.
    pub hidden: Tensor<2>,
    pub keep: usize,
}

fn linear_layer(d_in: usize, d_out: usize, device: &Device) -> Linear {
    // The reference: xavier_uniform weights, zero biases.
    let mut l = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    l
}

fn layer_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNorm::new(d, LN_EPS, device)
}

fn token(d: usize, device: &Device) -> Param<Tensor<3>> {
    // `torch.nn.init.normal_(std=.02)`.
    Param::from_tensor(Tensor::random(
        [1, 1, d],
        burn::tensor::Distribution::Normal(0.0, 0.02),
        device,
    ))
}

fn blocks(n: usize, d: usize, heads: usize, device: &Device) -> Vec<Block> {
    (0..n)
        .map(|_| Block {
            norm1: layer_norm(d, device),
            attn: Attention {
                qkv: linear_layer(d, 3 * d, device),
                proj: linear_layer(d, d, device),
                num_heads: heads,
            },
            norm2: layer_norm(d, device),
            mlp: Mlp {
                fc1: linear_layer(d, 4 * d, device),
                fc2: linear_layer(4 * d, d, device),
            },
        })
        .collect()
}

impl MaeVit {
    pub fn new(s: &MaeShape, device: &Device) -> MaeVit {
        MaeVit {
            patch_embed: linear_layer(s.patch_dim(), s.embed_dim, device),
            cls_token: token(s.embed_dim, device),
            blocks: blocks(s.depth, s.embed_dim, s.num_heads, device),
            norm: layer_norm(s.embed_dim, device),
            decoder_embed: linear_layer(s.embed_dim, s.decoder_embed_dim, device),
            mask_token: token(s.decoder_embed_dim, device),
            decoder_blocks: blocks(
                s.decoder_depth,
                s.decoder_embed_dim,
                s.decoder_num_heads,
                device,
            ),
            decoder_norm: layer_norm(s.decoder_embed_dim, device),
            decoder_pred: linear_layer(s.decoder_embed_dim, s.patch_dim(), device),
            patch_size: s.patch_size,
            norm_pix_loss: s.norm_pix_loss,
            pos_embed: sincos_pos_embed(s.embed_dim, s.grid()),
            decoder_pos_embed: sincos_pos_embed(s.decoder_embed_dim, s.grid()),
        }
    }

    /// Predicted pixels of every patch, `[B, L, p·p·3]` (in the normalised-target space when
    /// `norm_pix_loss` is on).
    pub fn forward(&self, input: &MaeInput) -> Tensor<3> {
        let mut x = self.embed_visible(input);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let mut y = self.to_decoder(x, input);
        for block in &self.decoder_blocks {
            y = block.forward(y);
        }
        self.predict(y)
    }

    /// The encoder on whole images, no patch hidden: `[CLS]` and every patch after the final
    /// norm, `[B, 1 + L, D]`, what a ViT built from the exported encoder computes (timm's
    /// `VisionTransformer.forward_features`).
    pub fn encode(&self, images: Tensor<4>) -> Tensor<3> {
        let device = images.device();
        let [batch, _, height, width] = images.dims();
        let patches = (height / self.patch_size) * (width / self.patch_size);
        let every: Vec<i64> = (0..(batch * patches) as i64).collect();
        let index =
            || Tensor::from_data(TensorData::new(every.clone(), [batch * patches]), &device);
        let input = MaeInput {
            keep_index: index(),
            restore_index: index(),
            hidden: Tensor::zeros([batch, patches], &device),
            keep: patches,
            images,
        };
        let mut x = self.embed_visible(&input);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.norm.forward(x)
    }

    /// The encoder's input: `[CLS]` and the visible patches, embedded with their positions,
    /// `[B, 1 + keep, D]`.
    pub fn embed_visible(&self, input: &MaeInput) -> Tensor<3> {
        let device = input.images.device();
        // The network computes in its parameters' dtype (bf16/fp16 under mixed precision).
        let dtype = self.float_dtype();
        let x = patchify(input.images.clone(), self.patch_size).cast(dtype);
        let [batch, patches, _] = x.dims();
        let d = self.cls_token.dims()[2];
        let pos = Tensor::<2>::from_data(
            TensorData::new(self.pos_embed.clone(), [patches + 1, d]),
            (&device, dtype),
        );
        let x = linear(&self.patch_embed, x) + pos.clone().slice(1..).unsqueeze::<3>();
        // Keep the visible patches of each sample.
        let keep = input.keep;
        let x = x
            .reshape([batch * patches, d])
            .select(0, input.keep_index.clone())
            .reshape([batch, keep, d]);
        let cls = (self.cls_token.val() + pos.slice(0..1).unsqueeze::<3>()).expand([batch, 1, d]);
        Tensor::cat(vec![cls, x], 1)
    }

    /// The decoder's input from the encoder's last block: normed, embedded, the visible tokens
    /// and mask tokens back in image order, with positions, `[B, 1 + L, D_dec]`.
    pub fn to_decoder(&self, x: Tensor<3>, input: &MaeInput) -> Tensor<3> {
        let device = x.device();
        let dtype = x.dtype();
        let [batch, patches] = input.hidden.dims();
        let keep = input.keep;
        let y = linear(&self.decoder_embed, self.norm.forward(x));
        let dd = self.mask_token.dims()[2];
        let visible = y.clone().slice([0..batch, 1..keep + 1]);
        let masked = self.mask_token.val().expand([batch, patches - keep, dd]);
        let tokens = Tensor::cat(vec![visible, masked], 1)
            .reshape([batch * patches, dd])
            .select(0, input.restore_index.clone())
            .reshape([batch, patches, dd]);
        let dec_pos = Tensor::<2>::from_data(
            TensorData::new(self.decoder_pos_embed.clone(), [patches + 1, dd]),
            (&device, dtype),
        );
        Tensor::cat(vec![y.slice([0..batch, 0..1]), tokens], 1) + dec_pos.unsqueeze::<3>()
    }

    /// Predicted pixels from the decoder's last block, without `[CLS]`, `[B, L, p·p·3]`.
    pub fn predict(&self, y: Tensor<3>) -> Tensor<3> {
        let [batch, n, _] = y.dims();
        let y = linear(&self.decoder_pred, self.decoder_norm.forward(y));
        y.slice([0..batch, 1..n])
    }

    /// [`MaeVit::forward`] and [`MaeVit::loss`] as stages for gradient checkpointing: patch
    /// embedding and masking, one recomputed stage per encoder block, the hand-over to the
    /// decoder (kept), one per decoder block, then prediction and loss.
    pub fn loss_stages<'a>(shape: &MaeShape, input: MaeInput) -> Stages<'a, MaeVit, Tensor<3>> {
        let input = Rc::new(input);
        let (stem_input, decoder_input) = (input.clone(), input.clone());
        let mut stages = Stages::blocks(0..shape.depth, |&i, m: &MaeVit, x| m.blocks[i].forward(x));
        stages.push(Stage::Kept(Box::new(move |m: &MaeVit, x| {
            Out::next(m.to_decoder(x, &decoder_input))
        })));
        stages.extend(Stages::blocks(
            0..shape.decoder_depth,
            |&i, m: &MaeVit, x| m.decoder_blocks[i].forward(x),
        ));
        Stages {
            stem: Box::new(move |m: &MaeVit| m.embed_visible(&stem_input)),
            stages,
            head: Box::new(move |m: &MaeVit, y| {
                m.loss(input.images.clone(), m.predict(y), input.hidden.clone())
            }),
        }
    }

    /// The dtype the network computes in (its parameters').
    pub fn float_dtype(&self) -> DType {
        self.patch_embed.weight.val().dtype()
    }

    /// The regression target: patchified pixels, each patch normalised by its own mean and
    /// (unbiased) variance when `norm_pix_loss` is on.
    pub fn target(&self, images: Tensor<4>) -> Tensor<3> {
        let t = patchify(images, self.patch_size);
        if !self.norm_pix_loss {
            return t;
        }
        let (mean, var) = patch_stats(t.clone());
        (t - mean).div((var + NORM_PIX_EPS).sqrt())
    }

    /// Mean squared error over the hidden patches only, `[1]`, in fp32 whatever the model's
    /// dtype (`images` are the fp32 inputs).
    pub fn loss(&self, images: Tensor<4>, pred: Tensor<3>, hidden: Tensor<2>) -> Tensor<1> {
        let pred = pred.cast(FloatDType::F32);
        let per_patch = (pred - self.target(images)).powi_scalar(2).mean_dim(2);
        let [b, l, _] = per_patch.dims();
        let per_patch = per_patch.reshape([b, l]);
        (per_patch * hidden.clone()).sum().div(hidden.sum())
    }
}

/// Per-patch mean and unbiased variance over the last axis, each `[B, L, 1]`.
pub fn patch_stats(t: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let n = t.dims()[2];
    let mean = t.clone().mean_dim(2);
    let var = (t - mean.clone())
        .powi_scalar(2)
        .sum_dim(2)
        .div_scalar((n.max(2) - 1) as f64);
    (mean, var)
}

impl Block {
    /// One pre-LN ViT block.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x));
        let h = linear(
            &self.mlp.fc2,
            gelu(linear(&self.mlp.fc1, self.norm2.forward(x.clone()))),
        );
        x + h
    }
}

impl Attention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, dim] = x.dims();
        let heads = self.num_heads;
        let head_dim = dim / heads;
        // timm's qkv: features [0, D) are q, [D, 2·D) k, [2·D, 3·D) v, each `heads` heads of
        // `head_dim`. Each part is its own product (`linear_part`), the heads a view of it.
        let part = |i: usize| {
            linear_part(&self.qkv, x.clone(), i * dim..(i + 1) * dim)
                .reshape([batch, seq, heads, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = q
            .mul_scalar((head_dim as f64).powf(-0.5))
            .matmul(k.swap_dims(2, 3));
        let out = softmax_last(scores)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, dim]);
        linear(&self.proj, out)
    }
}

/// `[B, 3, h·p, w·p]` → `[B, h·w, p·p·3]`, each patch's pixels in (row, column, channel) order,
/// as the reference's `patchify`.
pub fn patchify(images: Tensor<4>, p: usize) -> Tensor<3> {
    let [b, c, height, width] = images.dims();
    let (h, w) = (height / p, width / p);
    images
        .reshape([b, c, h, p, w, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, h * w, p * p * c])
}

/// Inverse of [`patchify`] for square images of three channels.
pub fn unpatchify(patches: Tensor<3>, p: usize) -> Tensor<4> {
    let [b, l, _] = patches.dims();
    let h = (l as f64).sqrt().round() as usize;
    patches
        .reshape([b, h, h, p, p, 3])
        .permute([0, 5, 1, 3, 2, 4])
        .reshape([b, 3, h * p, h * p])
}

/// The reference's `get_2d_sincos_pos_embed(dim, grid, cls_token=True)`, `[(grid² + 1) · dim]`:
/// a zero row for the class token, then per patch (row i, column j) the 1-D embedding of j
/// followed by that of i, each half sin and half cos over frequencies 1/10000^(k/(dim/4)).
pub fn sincos_pos_embed(dim: usize, grid: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut out = vec![0.0f32; dim];
    for i in 0..grid {
        for j in 0..grid {
            for pos in [j, i] {
                out.extend(omega.iter().map(|w| (pos as f64 * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos as f64 * w).cos() as f32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::mae::masking::Mask;

    fn device() -> Device {
        Device::flex()
    }

    fn tiny() -> MaeShape {
        MaeShape {
            image_size: 8,
            patch_size: 2,
            embed_dim: 16,
            depth: 1,
            num_heads: 2,
            decoder_embed_dim: 8,
            decoder_depth: 1,
            decoder_num_heads: 2,
            norm_pix_loss: false,
        }
    }

    fn ramp(shape: [usize; 4]) -> Tensor<4> {
        ramp_on(shape, &device())
    }

    fn ramp_on(shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn input(s: &MaeShape, batch: usize, seed: u64) -> MaeInput {
        input_on(s, batch, seed, &device())
    }

    fn input_on(s: &MaeShape, batch: usize, seed: u64, device: &Device) -> MaeInput {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let l = s.patches();
        let keep = crate::jobs::mae::masking::visible_count(l, 0.75);
        let masks: Vec<Mask> = (0..batch).map(|_| Mask::draw(l, keep, &mut rng)).collect();
        super::super::job::device_input(
            ramp_on([batch, 3, s.image_size, s.image_size], device),
            &masks,
            device,
        )
    }

    #[test]
    fn patchify_round_trips_and_orders_pixels_like_the_reference() {
        let images = ramp([2, 3, 8, 8]);
        let patches = patchify(images.clone(), 4);
        assert_eq!(patches.dims(), [2, 4, 48]);
        let back = unpatchify(patches.clone(), 4);
        back.into_data()
            .assert_eq(&images.clone().into_data(), true);
        // Patch 1 (row 0, column 1), value index (pixel row 2, column 3, channel 1):
        // image[b=0, c=1, y=2, x=4+3].
        let p: Vec<f32> = patches.into_data().try_to_vec().unwrap();
        let img: Vec<f32> = images.into_data().try_to_vec().unwrap();
        assert_eq!(p[48 + (2 * 4 + 3) * 3 + 1], img[64 + 2 * 8 + 7]);
    }

    #[test]
    fn sincos_embedding_matches_the_reference_formula() {
        let e = sincos_pos_embed(8, 3);
        assert_eq!(e.len(), 10 * 8);
        assert!(e[..8].iter().all(|&v| v == 0.0), "class token row is zero");
        // Patch (row 1, column 2) is row 1 + 1·3 + 2 = 6: [sin(2), sin(2/100), cos(2),
        // cos(2/100), sin(1), sin(1/100), cos(1), cos(1/100)].
        let row = &e[6 * 8..7 * 8];
        let want = [
            2f64.sin(),
            0.02f64.sin(),
            2f64.cos(),
            0.02f64.cos(),
            1f64.sin(),
            0.01f64.sin(),
            1f64.cos(),
            0.01f64.cos(),
        ];
        for (a, b) in row.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{row:?}");
        }
    }

    #[test]
    fn the_counted_parameters_are_the_built_ones() {
        // Building draws the class and mask tokens from the shared RNG.
        let _rng = crate::train::backend::seeded_test_device(0).0;
        let s = MaeShape {
            depth: 2,
            decoder_depth: 3,
            ..tiny()
        };
        for shape in [tiny(), s] {
            let built = MaeVit::new(&shape, &device()).num_params() as u64;
            assert_eq!(shape.num_params(), built);
            // Backward's last point (the patch embedding) has made every parameter's gradient.
            let cost = shape.cost(4);
            let points = [&cost.backward, &cost.backward_checkpointed];
            for p in points.map(|p| p.last().expect("stages")) {
                assert_eq!(p.params_with_gradients, built as f64);
            }
        }
    }

    #[test]
    fn checkpointed_gradients_equal_the_plain_ones() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(4);
        for device in devices {
            let s = MaeShape {
                depth: 2,
                decoder_depth: 2,
                ..tiny()
            };
            let model = MaeVit::new(&s, &device);
            let own = {
                let x = input_on(&s, 2, 9, &device);
                let pred = model.forward(&x);
                f64::from(model.loss(x.images, pred, x.hidden).into_scalar::<f32>())
            };
            let stages = || MaeVit::loss_stages(&s, input_on(&s, 2, 9, &device));
            let plain = stages().plain(&model, 1.0, 0, &device).loss;
            assert!((own - plain).abs() < 1e-6, "{own} vs {plain}");
            crate::train::recompute::assert_checkpointing_matches(&model, stages, &device, 1e-4);
        }
    }

    #[test]
    fn bf16_training_follows_fp32() {
        use rand::SeedableRng;
        let (_rng, devices) = crate::train::backend::seeded_test_devices(6);
        for device in devices {
            let s = MaeShape {
                norm_pix_loss: true,
                ..tiny()
            };
            let model = MaeVit::new(&s, &device);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
            let l = s.patches();
            let keep = crate::jobs::mae::masking::visible_count(l, 0.75);
            let masks: Vec<Mask> = (0..2).map(|_| Mask::draw(l, keep, &mut rng)).collect();
            let n = 2 * 3 * 8 * 8;
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let images = Tensor::<4>::from_data(TensorData::new(v, [2, 3, 8, 8]), &device);
            let input = super::super::job::device_input(images, &masks, &device);
            crate::train::precision::assert_bf16_follows_fp32(
                &model,
                |m| {
                    m.loss(
                        input.images.clone(),
                        m.forward(&input),
                        input.hidden.clone(),
                    )
                },
                0.05,
            );
        }
    }

    #[test]
    fn loss_is_taken_on_hidden_patches_only() {
        let s = tiny();
        let model = MaeVit::new(&s, &device());
        let input = input(&s, 2, 1);
        let pred = model.forward(&input);
        assert_eq!(pred.dims(), [2, 16, 12]);
        let base: f32 = model
            .loss(input.images.clone(), pred.clone(), input.hidden.clone())
            .into_scalar();
        // Moving the prediction of visible patches changes nothing; of a hidden one, it does.
        let visible = (input.hidden.clone().neg() + 1.0).unsqueeze_dim::<3>(2);
        let moved = pred.clone() + visible.clone().mul_scalar(5.0);
        let same: f32 = model
            .loss(input.images.clone(), moved, input.hidden.clone())
            .into_scalar();
        assert_eq!(base, same);
        let hidden3 = input.hidden.clone().unsqueeze_dim::<3>(2);
        let moved = pred + hidden3.mul_scalar(5.0);
        let other: f32 = model
            .loss(input.images.clone(), moved, input.hidden.clone())
            .into_scalar();
        assert!(other > base + 1.0);
    }

    #[test]
    fn norm_pix_target_is_each_patch_standardised() {
        let mut s = tiny();
        s.norm_pix_loss = true;
        let model = MaeVit::new(&s, &device());
        let images = ramp([1, 3, 8, 8]);
        let target: Vec<f32> = model
            .target(images.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let raw: Vec<f32> = patchify(images, 2).into_data().try_to_vec().unwrap();
        for (t, r) in target.chunks(12).zip(raw.chunks(12)) {
            let mean = r.iter().map(|&v| f64::from(v)).sum::<f64>() / 12.0;
            let var = r
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / 11.0;
            for (a, b) in t.iter().zip(r) {
                let want = (f64::from(*b) - mean) / (var + 1e-6).sqrt();
                assert!((f64::from(*a) - want).abs() < 1e-4, "{a} vs {want}");
            }
        }
    }

    #[test]
    fn visible_tokens_reach_the_decoder_in_image_order() {
        // The decoder sees, at each image position, the token of that patch: with an encoder
        // and decoder reduced to identities this shows as the restore gather being right.
        // 16 patches, 4 visible.
        let masks = vec![Mask::from_noise(
            &(0..16).map(|i| ((i * 7) % 16) as f32).collect::<Vec<_>>(),
            4,
        )];
        let inp = super::super::job::device_input(ramp([1, 3, 8, 8]), &masks, &device());
        let keep: Vec<i64> = inp
            .keep_index
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        let restore: Vec<i64> = inp
            .restore_index
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        // The visible patches are those with the smallest noise.
        let mut by_noise: Vec<usize> = (0..16).collect();
        by_noise.sort_by_key(|&i| (i * 7) % 16);
        assert_eq!(
            keep,
            by_noise[..4].iter().map(|&i| i as i64).collect::<Vec<_>>()
        );
        // Position p of the decoder reads slot restore[p] of [visible…, mask…]; a visible
        // patch p must read its own slot j with shuffle[j] == p.
        for (p, &slot) in restore.iter().enumerate() {
            if slot < 4 {
                assert_eq!(keep[slot as usize] as usize, p);
            }
        }
    }
}
