//! `mae`: masked-autoencoder pretraining of a ViT on images (He et al., "Masked Autoencoders
//! Are Scalable Vision Learners", and its reference `main_pretrain.py`).
//!
//! `source` finds and decodes images, `augment` makes the training and held-out views,
//! `masking` draws per-sample masks, `model` is the network and its loss, `job` plugs them into
//! the trainer, `grid` draws reconstructions, `export` writes weights under the reference names.

pub mod augment;
pub mod export;
pub mod grid;
pub mod job;
pub mod masking;
pub mod model;
pub mod source;

pub use job::MaeJob;
