//! The training engine: one loop (`trainer`) that every job plugs into through `job::Job`,
//! and the pieces it is made of.

pub mod backend;
pub mod best;
pub mod checkpoint;
pub mod clip;
pub mod collective;
pub mod evaluate;
pub mod job;
pub mod loader;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod precision;
pub mod progress;
pub mod recompute;
pub mod schedule;
pub mod seed;
pub mod tensorboard;
pub mod trainer;
