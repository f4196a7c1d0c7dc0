//! `causal_vae`: a causal 3-D convolutional VAE for video, trained as Open-Sora-Plan's
//! `train_causalvae.py` trains its CausalVAE (without the discriminator and LPIPS terms).
//!
//! `clips` finds the clips, `ffmpeg` decodes containers, `video` cuts training windows (and
//! reads GIFs and frame folders natively), `model` is the network and its latent, `job` plugs
//! them into the trainer with the loss and PSNR, `preview` draws input over reconstruction,
//! `weights` loads `init_from` under the reference's names.

pub mod clips;
pub mod ffmpeg;
pub mod job;
pub mod model;
pub mod preview;
pub mod video;
pub mod weights;

pub use job::CausalVaeJob;
