//! The training engine's backend-independent parts.

pub mod schedule;
pub mod tensorboard;
