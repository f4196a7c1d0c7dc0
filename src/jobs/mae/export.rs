//! `runner export`: MAE weights under the reference implementation's names and PyTorch layouts
//! (`models_mae.MaskedAutoencoderViT.state_dict()`), so that the encoder loads into timm's
//! `VisionTransformer` as MAE's `main_finetune.py` does (`patch_embed.proj.weight`, `cls_token`,
//! `pos_embed`, `blocks.N.attn.qkv.weight`, …), read with `safetensors.torch.load_file`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use safetensors::{Dtype, tensor::TensorView};

use super::model::{Block, MaeVit};
use crate::kernels::LayerNorm;

/// One named tensor, row-major f32.
pub struct Named {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data")
}

/// burn keeps a Linear's weight as `[in, out]`; PyTorch as `[out, in]`.
fn push_linear(out: &mut Vec<Named>, name: &str, l: &Linear) {
    let w = l.weight.val();
    let [d_in, d_out] = w.dims();
    out.push(Named {
        name: format!("{name}.weight"),
        shape: vec![d_out, d_in],
        values: values(w.transpose()),
    });
    if let Some(b) = &l.bias {
        out.push(Named {
            name: format!("{name}.bias"),
            shape: vec![d_out],
            values: values(b.val()),
        });
    }
}

fn push_norm(out: &mut Vec<Named>, name: &str, n: &LayerNorm) {
    let d = n.gamma.dims()[0];
    out.push(Named {
        name: format!("{name}.weight"),
        shape: vec![d],
        values: values(n.gamma.val()),
    });
    if let Some(b) = &n.beta {
        out.push(Named {
            name: format!("{name}.bias"),
            shape: vec![d],
            values: values(b.val()),
        });
    }
}

fn push_param(out: &mut Vec<Named>, name: &str, p: &Param<Tensor<3>>) {
    out.push(Named {
        name: name.into(),
        shape: p.dims().to_vec(),
        values: values(p.val()),
    });
}

fn push_blocks(out: &mut Vec<Named>, prefix: &str, blocks: &[Block]) {
    for (i, b) in blocks.iter().enumerate() {
        let p = format!("{prefix}.{i}");
        push_norm(out, &format!("{p}.norm1"), &b.norm1);
        push_linear(out, &format!("{p}.attn.qkv"), &b.attn.qkv);
        push_linear(out, &format!("{p}.attn.proj"), &b.attn.proj);
        push_norm(out, &format!("{p}.norm2"), &b.norm2);
        push_linear(out, &format!("{p}.mlp.fc1"), &b.mlp.fc1);
        push_linear(out, &format!("{p}.mlp.fc2"), &b.mlp.fc2);
    }
}

/// The model's tensors under the reference names; the encoder alone when `encoder_only`.
pub fn reference_tensors(model: &MaeVit, encoder_only: bool) -> Vec<Named> {
    let mut out = Vec::new();
    let d = model.cls_token.dims()[2];
    let p = model.patch_size;
    let tokens = model.pos_embed.len() / d;
    push_param(&mut out, "cls_token", &model.cls_token);
    out.push(Named {
        name: "pos_embed".into(),
        shape: vec![1, tokens, d],
        values: model.pos_embed.clone(),
    });
    // Our patch embedding reads pixels in (row, column, channel) order; the reference's
    // convolution weight is [D, channel, row, column].
    let w = values(model.patch_embed.weight.val());
    let mut conv = vec![0.0f32; w.len()];
    for dd in 0..d {
        for c in 0..3 {
            for y in 0..p {
                for x in 0..p {
                    conv[((dd * 3 + c) * p + y) * p + x] = w[((y * p + x) * 3 + c) * d + dd];
                }
            }
        }
    }
    out.push(Named {
        name: "patch_embed.proj.weight".into(),
        shape: vec![d, 3, p, p],
        values: conv,
    });
    if let Some(b) = &model.patch_embed.bias {
        out.push(Named {
            name: "patch_embed.proj.bias".into(),
            shape: vec![d],
            values: values(b.val()),
        });
    }
    push_blocks(&mut out, "blocks", &model.blocks);
    push_norm(&mut out, "norm", &model.norm);
    if encoder_only {
        return out;
    }
    let dd = model.mask_token.dims()[2];
    push_linear(&mut out, "decoder_embed", &model.decoder_embed);
    push_param(&mut out, "mask_token", &model.mask_token);
    out.push(Named {
        name: "decoder_pos_embed".into(),
        shape: vec![1, tokens, dd],
        values: model.decoder_pos_embed.clone(),
    });
    push_blocks(&mut out, "decoder_blocks", &model.decoder_blocks);
    push_norm(&mut out, "decoder_norm", &model.decoder_norm);
    push_linear(&mut out, "decoder_pred", &model.decoder_pred);
    out
}

/// Writes `tensors` as a safetensors file with `metadata` (temporary file, then rename).
pub fn write(path: &Path, tensors: &[Named], metadata: HashMap<String, String>) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view = TensorView::new(Dtype::F32, t.shape.clone(), b).expect("sized tensor");
            (t.name.clone(), view)
        })
        .collect();
    let data = safetensors::serialize(views, Some(metadata))
        .context("cannot serialise the exported tensors")?;
    crate::durable::write(path, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::mae::model::{MaeShape, patchify};
    use burn::tensor::TensorData;

    #[test]
    fn exported_patch_embedding_is_the_reference_convolution() {
        let shape = MaeShape {
            image_size: 4,
            patch_size: 2,
            embed_dim: 8,
            depth: 1,
            num_heads: 2,
            decoder_embed_dim: 4,
            decoder_depth: 1,
            decoder_num_heads: 1,
            norm_pix_loss: false,
        };
        let device = Device::flex();
        let model = MaeVit::new(&shape, &device);
        let img: Vec<f32> = (0..3 * 16).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let images = Tensor::<4>::from_data(TensorData::new(img.clone(), [1, 3, 4, 4]), &device);
        let ours: Vec<f32> = model
            .patch_embed
            .forward(patchify(images, 2))
            .into_data()
            .try_to_vec()
            .unwrap();
        let tensors = reference_tensors(&model, true);
        let get = |n: &str| tensors.iter().find(|t| t.name == n).unwrap();
        let (w, b) = (get("patch_embed.proj.weight"), get("patch_embed.proj.bias"));
        assert_eq!(w.shape, [8, 3, 2, 2]);
        // Conv2d(3, 8, kernel 2, stride 2) by hand, output (patch row, patch column, channel).
        for (pi, (py, px)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
            for d in 0..8 {
                let mut acc = b.values[d];
                for c in 0..3 {
                    for y in 0..2 {
                        for x in 0..2 {
                            acc += w.values[((d * 3 + c) * 2 + y) * 2 + x]
                                * img[c * 16 + (py * 2 + y) * 4 + px * 2 + x];
                        }
                    }
                }
                assert!(
                    (acc - ours[pi * 8 + d]).abs() < 1e-5,
                    "patch {pi} channel {d}"
                );
            }
        }
        // Linear weights come out [out, in].
        assert_eq!(get("blocks.0.attn.qkv.weight").shape, [24, 8]);
        assert!(tensors.iter().all(|t| !t.name.starts_with("decoder")));
        assert!(
            reference_tensors(&model, false)
                .iter()
                .any(|t| t.name == "decoder_pred.weight")
        );
    }
}
