//! runner: declarative YAML/TOML experiment files in, reproducible training runs out.
//!
//! See ARCHITECTURE.md for the map of modules and the path a run takes through them.

// Diagnostics are rich (key, origin, source line, help) and only travel on the cold path of
// loading a config, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod compare;
pub mod config;
pub mod dist;
pub mod durable;
pub mod error;
pub mod host;
pub mod jobs;
pub mod kernels;
pub mod plan;
pub mod plot;
pub mod record;
pub mod run;
pub mod rundir;
pub mod runs;
pub mod sweep;
pub mod train;
