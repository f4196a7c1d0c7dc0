//! `init_from` for the CausalVAE (Open-Sora-Plan's `--load_from_checkpoint`): a safetensors file
//! written by runner, or one with the reference's PyTorch names for this layout (see
//! [`super::model`] for where it departs from the released v1.1 weights). The model's
//! module names are the reference's (`encoder.down.1.block.0.conv1.conv.weight`…); GroupNorm
//! `weight`/`bias` become burn's `gamma`/`beta`, and the reference's loss-module tensors
//! (`loss.discriminator.*`, `loss.logvar`, `loss.perceptual_loss.*`: the discriminator and LPIPS
//! this job does not train) are left out. Anything else that does not fit is listed.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::model::CausalVae;
use crate::train::checkpoint::{Naming, load_weights_named};

/// Prefix of the reference's loss-module tensors.
const LOSS_PREFIX: &str = "loss.";

pub fn load(model: CausalVae, path: &Path) -> Result<CausalVae> {
    let names = tensor_names(path)?;
    // runner writes GroupNorm scales as `gamma`; PyTorch as `weight`.
    let naming = if names
        .iter()
        .any(|n| n.ends_with(".gamma") || n.ends_with(".beta"))
    {
        Naming::Runner
    } else {
        Naming::PyTorch
    };
    let ignored = names.iter().filter(|n| n.starts_with(LOSS_PREFIX)).count();
    if ignored > 0 {
        tracing::info!(
            "init_from: leaving out {ignored} loss-module tensors (`{LOSS_PREFIX}*`: \
             discriminator/LPIPS, which this job does not train)"
        );
    }
    load_weights_named(model, path, naming, |k| k.starts_with(LOSS_PREFIX))
}

/// The tensor names in a safetensors file, or an error that says how to convert a PyTorch
/// checkpoint.
fn tensor_names(path: &Path) -> Result<Vec<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    // Only the header is read: 8 bytes of length, then JSON.
    let mut reader = std::io::BufReader::new(file);
    let mut len = [0u8; 8];
    let header = std::io::Read::read_exact(&mut reader, &mut len)
        .ok()
        .map(|()| u64::from_le_bytes(len))
        .filter(|&n| n > 1 && n < 100 << 20)
        .and_then(|n| {
            let mut buf = vec![0u8; n as usize];
            std::io::Read::read_exact(&mut reader, &mut buf).ok()?;
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf).ok()
        });
    let Some(header) = header else {
        bail!(
            "`{}` is not a safetensors file; runner reads weights from safetensors only (no \
             pickle). Convert a PyTorch/Lightning checkpoint with: python -c \"import torch, \
             safetensors.torch as st; sd = torch.load('IN.ckpt', map_location='cpu'); sd = \
             sd.get('state_dict', sd); st.save_file({{k: v.contiguous() for k, v in sd.items()}}, \
             'OUT.safetensors')\"",
            path.display()
        );
    };
    Ok(header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::causal_vae::model::VaeShape;
    use crate::train::backend::seeded_test_device;
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;

    fn values(t: burn::tensor::Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// Rewrites a safetensors file without `drop` and with `add` (scalar f32 tensors).
    fn edit(from: &Path, to: &Path, drop: &str, add: &[&str]) {
        let bytes = std::fs::read(from).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let one = 1.0f32.to_le_bytes();
        let mut tensors: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != drop)
            .collect();
        for name in add {
            let view = TensorView::new(safetensors::Dtype::F32, vec![1], &one).unwrap();
            tensors.push((name.to_string(), view));
        }
        safetensors::serialize_to_file(tensors, None, to).unwrap();
    }

    #[test]
    fn reference_names_load_and_mismatches_are_listed() {
        let (_rng, device) = seeded_test_device(7);
        let dir = tempfile::tempdir().unwrap();
        let trained = CausalVae::new(&VaeShape::narrow_488(), &device);
        // As a converted Open-Sora-Plan checkpoint: PyTorch's GroupNorm names, plus the loss
        // module's tensors.
        let torch = dir.path().join("torch.safetensors");
        let mut store = SafetensorsStore::from_file(&torch).with_to_adapter(BurnToPyTorchAdapter);
        trained.save_into(&mut store).unwrap();
        let names = tensor_names(&torch).unwrap();
        assert!(
            names.contains(&"encoder.norm_out.weight".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"decoder.up.3.time_upsample.mix_factor".to_string()));
        let with_loss = dir.path().join("with_loss.safetensors");
        edit(
            &torch,
            &with_loss,
            "",
            &["loss.logvar", "loss.discriminator.main.0.weight"],
        );

        let fresh = CausalVae::new(&VaeShape::narrow_488(), &device);
        let loaded = load(fresh, &with_loss).unwrap();
        let gamma = |m: &CausalVae| values(m.encoder.norm_out.gamma.as_ref().unwrap().val());
        assert_eq!(gamma(&loaded), gamma(&trained));
        let conv = |m: &CausalVae| values(m.decoder.conv_out.conv.weight.val().flatten(0, 4));
        assert_eq!(conv(&loaded), conv(&trained));

        // runner's own names load too.
        let own = dir.path().join("own.safetensors");
        crate::train::checkpoint::save_model_weights(&trained, &own).unwrap();
        load(CausalVae::new(&VaeShape::narrow_488(), &device), &own).unwrap();

        let broken = dir.path().join("broken.safetensors");
        edit(
            &torch,
            &broken,
            "encoder.conv_in.conv.bias",
            &["decoder.extra.weight", "loss.logvar"],
        );
        let e = format!(
            "{:#}",
            load(CausalVae::new(&VaeShape::narrow_488(), &device), &broken).unwrap_err()
        );
        assert!(e.contains("missing encoder.conv_in.conv.bias"), "{e}");
        assert!(e.contains("unexpected decoder.extra.weight"), "{e}");
        assert!(!e.contains("loss.logvar"), "{e}");

        let pickle = dir.path().join("vae.ckpt");
        std::fs::write(&pickle, b"\x80\x02}q\x00.").unwrap();
        let e = format!(
            "{:#}",
            load(CausalVae::new(&VaeShape::narrow_488(), &device), &pickle).unwrap_err()
        );
        assert!(
            e.contains("not a safetensors file") && e.contains("st.save_file"),
            "{e}"
        );
    }
}
