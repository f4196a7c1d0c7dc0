//! runner: declarative YAML/TOML experiment files in, reproducible training runs out.
//!
//! See ARCHITECTURE.md for the map of modules and the path a run takes through them.

pub mod cli;
pub mod config;
pub mod rundir;
