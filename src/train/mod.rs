//! The training engine. Backend-independent parts (schedules, TensorBoard files) and the
//! pieces of the loop built on burn (device selection, optimizer, clipping). The loop
//! itself and the jobs' models arrive with the engine issue.

pub mod backend;
pub mod clip;
pub mod optim;
pub mod schedule;
pub mod tensorboard;
