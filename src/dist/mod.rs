//! Training beyond one process: data parallelism over libtorch's own c10d process groups
//! (Gloo on CPUs, NCCL on CUDA), launched by runner itself, by torchrun, or by Slurm.
//!
//! - `contract` — who this process is: torchrun's or Slurm's variables, else the config.
//! - `ranks` — the facade the run path uses: one process, or one rank of a group (handshakes
//!   as serde types, rank logs, the watchdog's last act).
//! - `rank_log` — where log lines go on each rank.
//! - `spawn` — runner's launcher: this machine's workers, watched, stopped together.
//! - `slurm` — `runner launch --slurm`: the sbatch script that runs `runner run` through srun.
//! - `c10d` (the `tch` feature) — the C shim over libtorch's TCPStore and process groups.
//! - `group` (`tch`) — a rank's membership: store, process group, watchdog; implements the
//!   trainer's `train::collective::Collective`.
//! - `watchdog` (`tch`) — heartbeats through the store; a rank that dies or fails is named and
//!   every other rank exits.
//!
//! The embedded flex backend stays single-process (the capability table refuses more), so
//! everything that talks to other ranks exists only with the `tch` feature.

pub mod contract;
pub mod rank_log;
pub mod ranks;
pub mod slurm;
pub mod spawn;

#[cfg(runner_c10d)]
pub mod c10d;
#[cfg(runner_c10d)]
pub mod group;
#[cfg(runner_c10d)]
pub mod watchdog;

use crate::config::types::DistBackend;

/// The c10d process groups this binary was built with (none without the `tch` feature), for
/// the capability table's machine rows.
pub fn process_groups() -> Vec<DistBackend> {
    #[cfg(runner_c10d)]
    {
        [DistBackend::Gloo, DistBackend::Nccl]
            .into_iter()
            .filter(|b| c10d::has(b.as_str()))
            .collect()
    }
    #[cfg(not(runner_c10d))]
    {
        Vec::new()
    }
}

#[cfg(all(test, runner_c10d))]
mod tests {
    #[test]
    fn data_parallel_cpu_training_has_gloo() {
        assert!(super::process_groups().contains(&super::DistBackend::Gloo));
    }
}
