//! Size presets (`model.arch`) and the explicit size keys that override them.
//!
//! Only numbers live here: the models themselves are built by the jobs.

use serde::Serialize;

use super::types::{BertArch, CausalVaeArch, CausalVaeModel, MaeArch, MaeModel, TextModel};

/// Resolved MAE sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaeDims {
    pub patch_size: u32,
    pub embed_dim: u32,
    pub depth: u32,
    pub num_heads: u32,
    pub decoder_embed_dim: u32,
    pub decoder_depth: u32,
    pub decoder_num_heads: u32,
}

impl MaeArch {
    /// Sizes from the MAE paper (decoder 512-d, 8 blocks, 16 heads) and small CPU sizes.
    pub fn dims(self) -> MaeDims {
        let (
            patch_size,
            embed_dim,
            depth,
            num_heads,
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
        ) = match self {
            MaeArch::MaeVitHugePatch14 => (14, 1280, 32, 16, 512, 8, 16),
            MaeArch::MaeVitLargePatch16 => (16, 1024, 24, 16, 512, 8, 16),
            MaeArch::MaeVitBasePatch16 => (16, 768, 12, 12, 512, 8, 16),
            MaeArch::MaeVitTinyPatch16 => (16, 192, 12, 3, 128, 2, 4),
            MaeArch::MaeVitTinyPatch4 => (4, 128, 4, 4, 64, 2, 4),
        };
        MaeDims {
            patch_size,
            embed_dim,
            depth,
            num_heads,
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
        }
    }
}

impl MaeModel {
    pub fn dims(&self) -> MaeDims {
        let base = self.arch.dims();
        MaeDims {
            patch_size: self.patch_size.unwrap_or(base.patch_size),
            embed_dim: self.embed_dim.unwrap_or(base.embed_dim),
            depth: self.depth.unwrap_or(base.depth),
            num_heads: self.num_heads.unwrap_or(base.num_heads),
            decoder_embed_dim: self.decoder_embed_dim.unwrap_or(base.decoder_embed_dim),
            decoder_depth: self.decoder_depth.unwrap_or(base.decoder_depth),
            decoder_num_heads: self.decoder_num_heads.unwrap_or(base.decoder_num_heads),
        }
    }
}

/// Resolved BERT sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BertDims {
    pub hidden_size: u32,
    pub num_layers: u32,
    pub num_heads: u32,
    pub intermediate_size: u32,
    pub max_position_embeddings: u32,
    pub dropout: f64,
}

impl BertArch {
    /// Google's BERT sizes (miniatures from "Well-Read Students Learn Better").
    pub fn dims(self) -> BertDims {
        let (num_layers, hidden_size, num_heads) = match self {
            BertArch::Tiny => (2, 128, 2),
            BertArch::Mini => (4, 256, 4),
            BertArch::Small => (4, 512, 8),
            BertArch::Medium => (8, 512, 8),
            BertArch::Base => (12, 768, 12),
            BertArch::Large => (24, 1024, 16),
        };
        BertDims {
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size: 4 * hidden_size,
            max_position_embeddings: 512,
            dropout: 0.1,
        }
    }
}

impl TextModel {
    pub fn dims(&self) -> BertDims {
        let base = self.arch.dims();
        let hidden_size = self.hidden_size.unwrap_or(base.hidden_size);
        BertDims {
            hidden_size,
            num_layers: self.num_layers.unwrap_or(base.num_layers),
            num_heads: self.num_heads.unwrap_or(base.num_heads),
            // A wider model given without its feed-forward width keeps BERT's 4× ratio.
            intermediate_size: self.intermediate_size.unwrap_or(4 * hidden_size),
            max_position_embeddings: self
                .max_position_embeddings
                .unwrap_or(base.max_position_embeddings),
            dropout: self.dropout.unwrap_or(base.dropout),
        }
    }
}

/// Resolved CausalVAE sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CausalVaeDims {
    pub base_channels: u32,
    pub latent_channels: u32,
    pub temporal_compression: u32,
    pub spatial_compression: u32,
    pub num_res_blocks: u32,
}

impl CausalVaeArch {
    /// `causal_vae_488` follows Open-Sora-Plan's CausalVAEModel_4x8x8 (128 base channels,
    /// 4 latent channels, 2 ResNet blocks per stage).
    pub fn dims(self) -> CausalVaeDims {
        let (base_channels, num_res_blocks) = match self {
            CausalVaeArch::CausalVae488 => (128, 2),
            CausalVaeArch::CausalVae488Tiny => (16, 1),
        };
        CausalVaeDims {
            base_channels,
            latent_channels: 4,
            temporal_compression: 4,
            spatial_compression: 8,
            num_res_blocks,
        }
    }
}

impl CausalVaeModel {
    pub fn dims(&self) -> CausalVaeDims {
        let base = self.arch.dims();
        CausalVaeDims {
            base_channels: self.base_channels.unwrap_or(base.base_channels),
            latent_channels: self.latent_channels.unwrap_or(base.latent_channels),
            temporal_compression: self
                .temporal_compression
                .unwrap_or(base.temporal_compression),
            spatial_compression: self.spatial_compression.unwrap_or(base.spatial_compression),
            num_res_blocks: base.num_res_blocks,
        }
    }
}
