//! The integration tests: the real `runner` binary end to end, one module per area, in one
//! test binary (as ripgrep and ruff lay theirs out), so the burn stack is linked once.
//! Filter by module: `cargo test --test cli train::`, `cargo test --test cli fuzz_config`.

mod common;
mod lsp_client;

mod best;
mod causal_vae;
mod commands;
mod diff;
mod editors;
mod errors;
mod extends;
mod fuzz_config;
mod init_from_command;
mod interpolation;
mod layers;
mod lifecycle;
mod mae;
mod plan;
mod pretrained_minilm;
mod rerun;
mod seeds;
mod sweep;
mod tensorboard;
mod tiny_nli;
mod train;

// The libtorch backend: parity with flex, data-parallel training over Gloo, Slurm.
#[cfg(feature = "tch")]
mod dist;
#[cfg(feature = "tch")]
mod slurm;
#[cfg(feature = "tch")]
mod tch;
