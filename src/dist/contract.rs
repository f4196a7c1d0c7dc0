//! Who this process is: the launcher contract, read from the environment.
//!
//! A process started by a launcher finds its place in the variables torchrun sets (`RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `MASTER_ADDR`, `MASTER_PORT`;
//! runner's own launcher sets the same) or, inside an `srun` job step, Slurm's
//! (`SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_NODEID`, `SLURM_STEP_NUM_TASKS`). Without either,
//! the resolved `hardware` section says what to start: one process, or `nproc_per_node`
//! workers on this machine as node `node_rank` of `nnodes`.

use crate::config::types::HardwareConfig;

/// One rank's place in a data-parallel run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub local_world: usize,
    pub node_rank: usize,
    /// Where rank 0 serves the rendezvous store.
    pub master_addr: String,
    pub master_port: u16,
}

/// What `runner run` does in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Train alone.
    Single,
    /// Start `local_world` worker processes here, ranks `first_rank ..`, and watch them.
    Launch {
        first_rank: usize,
        local_world: usize,
        world: usize,
        node_rank: usize,
        master_addr: String,
        master_port: u16,
    },
    /// Be one rank of a run a launcher started (runner's own, torchrun, srun).
    Worker(Layout),
}

/// The role `hw` and the launcher variables give this process; an error says which variable
/// disagrees with which key.
pub fn role(hw: &HardwareConfig, var: &dyn Fn(&str) -> Option<String>) -> Result<Role, String> {
    let configured = (hw.nnodes * hw.nproc_per_node) as usize;
    let number = |name: &str| -> Result<Option<usize>, String> {
        match var(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a number")),
        }
    };
    let addr = |name: &str| var(name).filter(|v| !v.is_empty());
    let port = |default: u16| -> Result<u16, String> {
        match var("MASTER_PORT") {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("MASTER_PORT={v:?} is not a TCP port")),
        }
    };

    if let Some(rank) = number("RANK")? {
        let world = number("WORLD_SIZE")?
            .ok_or("RANK is set but WORLD_SIZE is not (the torchrun contract sets both)")?;
        let local_world = number("LOCAL_WORLD_SIZE")?.unwrap_or(hw.nproc_per_node as usize);
        let local_rank = number("LOCAL_RANK")?.unwrap_or(rank % local_world.max(1));
        let node_rank = number("GROUP_RANK")?.unwrap_or(rank / local_world.max(1));
        check_world("WORLD_SIZE", world, configured, hw)?;
        if rank >= world || local_rank >= local_world.max(1) {
            return Err(format!(
                "RANK={rank} / LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world} / \
                 LOCAL_WORLD_SIZE={local_world}"
            ));
        }
        return Ok(Role::Worker(Layout {
            rank,
            world,
            local_rank,
            local_world,
            node_rank,
            master_addr: addr("MASTER_ADDR").unwrap_or_else(|| hw.master_addr.clone()),
            master_port: port(hw.master_port)?,
        }));
    }

    // Inside an srun job step (a batch script itself has SLURM_PROCID but no step tasks).
    if let (Some(tasks), Some(procid)) = (number("SLURM_STEP_NUM_TASKS")?, number("SLURM_PROCID")?)
    {
        let node = number("SLURM_NODEID")?.unwrap_or(0);
        let master_addr = addr("MASTER_ADDR").unwrap_or_else(|| hw.master_addr.clone());
        let master_port = port(hw.master_port)?;
        if tasks == 1 && configured == 1 {
            return Ok(Role::Single);
        }
        if tasks == hw.nnodes as usize && hw.nproc_per_node > 1 {
            // One task per node (as for torchrun under srun): it starts the node's workers.
            let local_world = hw.nproc_per_node as usize;
            return Ok(Role::Launch {
                first_rank: node * local_world,
                local_world,
                world: configured,
                node_rank: node,
                master_addr,
                master_port,
            });
        }
        check_world("SLURM_STEP_NUM_TASKS", tasks, configured, hw)?;
        let local_rank = number("SLURM_LOCALID")?.unwrap_or(0);
        return Ok(Role::Worker(Layout {
            rank: procid,
            world: tasks,
            local_rank,
            local_world: hw.nproc_per_node as usize,
            node_rank: node,
            master_addr,
            master_port,
        }));
    }

    if configured == 1 {
        return Ok(Role::Single);
    }
    let local_world = hw.nproc_per_node as usize;
    Ok(Role::Launch {
        first_rank: hw.node_rank as usize * local_world,
        local_world,
        world: configured,
        node_rank: hw.node_rank as usize,
        master_addr: hw.master_addr.clone(),
        master_port: hw.master_port,
    })
}

/// The launcher's world size must be the one the configuration was resolved for: the global
/// batch, learning rate and run directory were derived from it.
fn check_world(
    var: &str,
    world: usize,
    configured: usize,
    hw: &HardwareConfig,
) -> Result<(), String> {
    if world == configured {
        return Ok(());
    }
    Err(format!(
        "the launcher says {var}={world}, but the configuration trains on hardware.nnodes × \
         hardware.nproc_per_node = {} × {} = {configured} processes; set those keys to match \
         the launcher (e.g. --set hardware.nproc_per_node={world}), so the global batch and \
         learning rate are derived for the processes that really run",
        hw.nnodes, hw.nproc_per_node
    ))
}

/// This process's rank when a launcher's variables give one (for tagging log lines before the
/// configuration is read): `RANK`, or `SLURM_PROCID` inside an srun step.
pub fn rank_from_env() -> Option<usize> {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    var("RANK").or_else(|| var("SLURM_STEP_NUM_TASKS").and(var("SLURM_PROCID")))
}

/// The variables runner's launcher sets for the worker of `rank` (the torchrun contract).
pub fn worker_env(
    rank: usize,
    local_rank: usize,
    local_world: usize,
    world: usize,
    node_rank: usize,
    master_addr: &str,
    master_port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("RANK", rank.to_string()),
        ("LOCAL_RANK", local_rank.to_string()),
        ("WORLD_SIZE", world.to_string()),
        ("LOCAL_WORLD_SIZE", local_world.to_string()),
        ("GROUP_RANK", node_rank.to_string()),
        ("MASTER_ADDR", master_addr.to_string()),
        ("MASTER_PORT", master_port.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hw(nnodes: u32, nproc: u32) -> HardwareConfig {
        HardwareConfig {
            nnodes,
            nproc_per_node: nproc,
            ..HardwareConfig::default()
        }
    }

    fn role_with(hw: &HardwareConfig, vars: &[(&str, &str)]) -> Result<Role, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        role(hw, &|k| env.get(k).cloned())
    }

    #[test]
    fn without_a_launcher_the_config_decides() {
        assert_eq!(role_with(&hw(1, 1), &[]).unwrap(), Role::Single);
        let mut two_nodes = hw(2, 4);
        two_nodes.node_rank = 1;
        two_nodes.master_addr = "node0".into();
        assert_eq!(
            role_with(&two_nodes, &[]).unwrap(),
            Role::Launch {
                first_rank: 4,
                local_world: 4,
                world: 8,
                node_rank: 1,
                master_addr: "node0".into(),
                master_port: 29500
            }
        );
    }

    #[test]
    fn torchrun_variables_make_a_worker() {
        let env = worker_env(3, 1, 2, 4, 1, "10.0.0.1", 29600);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            role_with(&hw(2, 2), &env).unwrap(),
            Role::Worker(Layout {
                rank: 3,
                world: 4,
                local_rank: 1,
                local_world: 2,
                node_rank: 1,
                master_addr: "10.0.0.1".into(),
                master_port: 29600
            })
        );
        let err = role_with(&hw(1, 1), &env).unwrap_err();
        assert!(
            err.contains("WORLD_SIZE=4") && err.contains("= 1 × 1 = 1"),
            "{err}"
        );
        let err = role_with(&hw(1, 2), &[("RANK", "0")]).unwrap_err();
        assert!(err.contains("WORLD_SIZE is not"), "{err}");
        let err = role_with(&hw(1, 2), &[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(err.contains("RANK=\"x\""), "{err}");
    }

    #[test]
    fn srun_steps_make_workers_and_batch_scripts_do_not() {
        let step = [
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_PROCID", "1"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "0"),
            ("MASTER_ADDR", "vm"),
        ];
        let Role::Worker(l) = role_with(&hw(1, 2), &step).unwrap() else {
            panic!("a worker")
        };
        assert_eq!(
            (l.rank, l.world, l.local_rank, l.master_addr.as_str()),
            (1, 2, 1, "vm")
        );
        // The batch script: SLURM_PROCID=0 and SLURM_NTASKS, but no job step.
        let batch = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")];
        assert!(matches!(
            role_with(&hw(1, 2), &batch).unwrap(),
            Role::Launch { .. }
        ));
        // One task per node: it launches that node's workers.
        let per_node = [
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_PROCID", "1"),
            ("SLURM_NODEID", "1"),
        ];
        let Role::Launch {
            first_rank, world, ..
        } = role_with(&hw(2, 4), &per_node).unwrap()
        else {
            panic!("a launcher")
        };
        assert_eq!((first_rank, world), (4, 8));
        let single = [("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_PROCID", "0")];
        assert_eq!(role_with(&hw(1, 1), &single).unwrap(), Role::Single);
        let err = role_with(&hw(1, 4), &step).unwrap_err();
        assert!(err.contains("SLURM_STEP_NUM_TASKS=2"), "{err}");
    }
}
