//! Training beyond one process: data parallelism over libtorch's own c10d process groups
//! (Gloo on CPUs, NCCL on CUDA), launched by runner itself, by torchrun, or by Slurm.
//!
//! - `contract` — who this process is: torchrun's or Slurm's variables, else the config.
//! - `spawn` — runner's launcher: this machine's workers, watched, stopped together.
//! - `slurm` — `runner launch --slurm`: the sbatch script that runs `runner run` through srun.
//! - `c10d` (the `tch` feature) — the C shim over libtorch's TCPStore and process groups.
//! - `group` (`tch`) — a rank's membership: store, process group, watchdog; the trainer's
//!   `train::collective::Collective`.
//! - `watchdog` (`tch`) — heartbeats through the store; a rank that dies or fails is named and
//!   every other rank exits.
//!
//! The embedded flex backend stays single-process (validation refuses more), so everything
//! that talks to other ranks exists only with the `tch` feature.

pub mod contract;
pub mod slurm;
pub mod spawn;

#[cfg(runner_c10d)]
pub mod c10d;
#[cfg(runner_c10d)]
pub mod group;
#[cfg(runner_c10d)]
pub mod watchdog;
