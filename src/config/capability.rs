//! What runner can train: the one table of backend × device × dtype × world size × settings
//! the engine lacks → supported, or the reason and the fix. Every refusal's message is written
//! here once; `validate`, `show`, `run` and the engine's device constructor all read it.
//!
//! Two kinds of rows:
//! - **engine** rows: what runner's trainer cannot do on any machine (flex on a GPU, tensor
//!   parallelism, `auto_find_batch_size`, …). They are judged from the configuration alone:
//!   `validate`, `validate --strict`, `run --dry-run` and `run` exit 2 with the row's message
//!   and write nothing; `show` prints the configuration with the message as a warning.
//! - **machine** rows: what this binary or this machine lacks (libtorch compiled in, the CUDA
//!   device, the process group). They need [`Facts`] about the machine, so only
//!   `validate --strict`, `run --dry-run` and `run` check them: a laptop still validates an
//!   `8xA100` file. A machine row that no machine satisfies (TPUs) is also shown as a warning
//!   by `validate`.
//!
//! The facts come from the engine (`train::backend::facts`) and the data-parallel layer
//! (`dist::process_groups`), which the caller passes in: config stays free of burn.

use super::types::{Backend, Device, DistBackend, Dtype, Experiment, HardwareConfig, JobKind};

/// Why something cannot run, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The key to point at.
    pub key: &'static str,
    /// Diagnostic code (`unsupported`, `backend`, `precision`).
    pub code: &'static str,
    pub message: String,
    pub help: String,
}

/// The configuration as the table sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub backend: Backend,
    pub device: Device,
    pub dtype: Dtype,
    pub nnodes: u32,
    pub nproc_per_node: u32,
    pub tensor_parallel: u32,
    pub pipeline_parallel: u32,
    /// The process group, when more than one process trains.
    pub dist_backend: Option<DistBackend>,
    pub job: JobKind,
    pub auto_find_batch_size: bool,
}

impl Query {
    pub fn of(exp: &Experiment) -> Query {
        let hw = &exp.hardware;
        Query {
            dtype: exp.precision.dtype,
            job: exp.job,
            auto_find_batch_size: exp.train.auto_find_batch_size,
            ..Query::hardware(hw)
        }
    }

    /// The hardware part alone (what the engine's device constructor asks about).
    pub fn hardware(hw: &HardwareConfig) -> Query {
        Query {
            backend: hw.backend,
            device: hw.device,
            dtype: Dtype::Fp32,
            nnodes: hw.nnodes,
            nproc_per_node: hw.nproc_per_node,
            tensor_parallel: hw.tensor_parallel,
            pipeline_parallel: hw.pipeline_parallel,
            dist_backend: (world_size(hw) > 1).then(|| default_dist_backend(hw)),
            job: JobKind::Mae,
            auto_find_batch_size: false,
        }
    }

    pub fn world_size(&self) -> u32 {
        self.nnodes.saturating_mul(self.nproc_per_node)
    }
}

/// nnodes × nproc_per_node.
pub fn world_size(hw: &HardwareConfig) -> u32 {
    hw.nnodes.saturating_mul(hw.nproc_per_node)
}

/// `hardware.dist_backend`, or NCCL on CUDA and Gloo elsewhere.
pub fn default_dist_backend(hw: &HardwareConfig) -> DistBackend {
    hw.dist_backend.unwrap_or(if hw.device.is_cuda() {
        DistBackend::Nccl
    } else {
        DistBackend::Gloo
    })
}

/// What this binary and this machine offer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub devices: DeviceFacts,
    /// c10d process groups compiled in (empty: no data-parallel engine).
    pub process_groups: Vec<DistBackend>,
}

/// What the engine can make devices on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFacts {
    /// libtorch (`burn-tch`) is compiled in.
    pub tch: bool,
    /// CUDA devices libtorch finds (0 without libtorch).
    pub cuda_devices: usize,
    /// libtorch finds a Metal device.
    pub mps: bool,
}

struct EngineRow {
    key: &'static str,
    code: &'static str,
    when: fn(&Query) -> bool,
    why: fn(&Query) -> String,
    fix: fn(&Query) -> String,
}

/// What the trainer cannot do, whatever the machine.
const ENGINE: &[EngineRow] = &[
    EngineRow {
        key: "hardware.tensor_parallel",
        code: "unsupported",
        when: |q| q.tensor_parallel > 1,
        why: |_| "tensor parallelism is not supported by runner's engine".into(),
        fix: |_| "set hardware.tensor_parallel: 1 (runner trains data-parallel only)".into(),
    },
    EngineRow {
        key: "hardware.pipeline_parallel",
        code: "unsupported",
        when: |q| q.pipeline_parallel > 1,
        why: |_| "pipeline parallelism is not supported by runner's engine".into(),
        fix: |_| "set hardware.pipeline_parallel: 1 (runner trains data-parallel only)".into(),
    },
    EngineRow {
        key: "hardware.device",
        code: "backend",
        when: |q| q.backend == Backend::Flex && !matches!(q.device, Device::Cpu | Device::Tpu),
        why: |q| {
            format!(
                "the flex backend runs on the CPU only, not on `{}`",
                q.device
            )
        },
        fix: |_| {
            "use hardware.backend: tch for GPUs (e.g. --profile 1xA100), or device: cpu".into()
        },
    },
    EngineRow {
        key: "hardware.nproc_per_node",
        code: "backend",
        when: |q| q.backend == Backend::Flex && q.device != Device::Tpu && q.world_size() > 1,
        why: |q| {
            format!(
                "the embedded flex backend is single-process, but nnodes × nproc_per_node = {}",
                q.world_size()
            )
        },
        fix: |_| {
            "use hardware.backend: tch for data-parallel training, or nnodes: 1 and \
             nproc_per_node: 1"
                .into()
        },
    },
    EngineRow {
        key: "hardware.device",
        code: "backend",
        when: |q| {
            q.backend == Backend::Tch
                && matches!(q.device, Device::Cuda(Some(_)))
                && q.nproc_per_node > 1
        },
        why: |q| {
            format!(
                "`{}` would put all {} ranks of this machine on one GPU",
                q.device, q.nproc_per_node
            )
        },
        fix: |_| {
            "use device: cuda; each rank then takes the GPU of its LOCAL_RANK (restrict them \
             with CUDA_VISIBLE_DEVICES)"
                .into()
        },
    },
    EngineRow {
        key: "hardware.dist_backend",
        code: "unsupported",
        when: |q| q.dist_backend == Some(DistBackend::Mpi),
        why: |_| {
            "the mpi process group is not available: the torch wheel runner links against \
             ships Gloo and NCCL only"
                .into()
        },
        fix: |_| "use gloo (CPU) or nccl (CUDA)".into(),
    },
    EngineRow {
        key: "hardware.dist_backend",
        code: "unsupported",
        when: |q| q.dist_backend == Some(DistBackend::Hccl),
        why: |_| "hccl is for Huawei Ascend NPUs, which no runner backend drives".into(),
        fix: |_| "use nccl on CUDA GPUs or gloo on CPUs".into(),
    },
    EngineRow {
        key: "hardware.dist_backend",
        code: "backend",
        when: |q| {
            q.dist_backend == Some(DistBackend::Nccl)
                && !q.device.is_cuda()
                && q.device != Device::Tpu
        },
        why: |q| {
            format!(
                "nccl needs CUDA devices, but hardware.device is `{}`",
                q.device
            )
        },
        fix: |_| "use dist_backend: gloo on CPUs".into(),
    },
    EngineRow {
        key: "precision.dtype",
        code: "precision",
        when: |q| q.dtype != Dtype::Fp32 && q.device != Device::Tpu && q.backend == Backend::Flex,
        why: |q| {
            format!(
                "precision.dtype `{}` cannot run here: the embedded flex backend computes in \
                 fp32 only",
                q.dtype.as_str()
            )
        },
        fix: |_| "use precision.dtype: fp32, or a CUDA profile (e.g. --profile 1xA100)".into(),
    },
    EngineRow {
        key: "precision.dtype",
        code: "precision",
        when: |q| {
            q.dtype != Dtype::Fp32
                && q.backend == Backend::Tch
                && !q.device.is_cuda()
                && q.device != Device::Tpu
        },
        why: |q| {
            format!(
                "precision.dtype `{}` cannot run here: mixed precision needs a CUDA device; on \
                 `{}` libtorch runs {} at a fraction of fp32 speed",
                q.dtype.as_str(),
                q.device,
                q.dtype.as_str()
            )
        },
        fix: |_| "use precision.dtype: fp32, or a CUDA profile (e.g. --profile 1xA100)".into(),
    },
    EngineRow {
        key: "train.auto_find_batch_size",
        code: "unsupported",
        when: |q| q.auto_find_batch_size,
        why: |_| {
            "train.auto_find_batch_size is not implemented by runner's engine yet (the CPU \
             backend gives no out-of-memory signal to react to)"
                .into()
        },
        fix: |_| "set it to false and choose train.per_device_batch_size".into(),
    },
];

struct MachineRow {
    key: &'static str,
    code: &'static str,
    /// No machine has what this row asks for (shown by `validate` as a warning).
    on_any_machine: bool,
    when: fn(&Query, &Facts) -> bool,
    why: fn(&Query, &Facts) -> String,
    fix: fn(&Query, &Facts) -> String,
}

/// What this binary or this machine lacks.
const MACHINE: &[MachineRow] = &[
    MachineRow {
        key: "hardware.device",
        code: "unsupported",
        on_any_machine: true,
        when: |q, _| q.device == Device::Tpu,
        why: |_, _| {
            "no runner backend drives TPUs (burn has no XLA backend; libtorch needs torch_xla)"
                .into()
        },
        fix: |_, _| "train with a CUDA or CPU profile".into(),
    },
    MachineRow {
        key: "hardware.backend",
        code: "backend",
        on_any_machine: false,
        when: |q, f| q.backend == Backend::Tch && !f.devices.tch,
        why: |_, _| "this runner binary was built without the libtorch (`tch`) backend".into(),
        fix: |_, _| {
            "build one with `just setup-tch && just build-tch` (cargo build --release \
             --features tch, libtorch from the torch 2.11.0 wheel; see the README's GPU \
             section), or use hardware.backend: flex (e.g. --profile cpu)"
                .into()
        },
    },
    MachineRow {
        key: "hardware.device",
        code: "backend",
        on_any_machine: false,
        when: |q, f| {
            q.backend == Backend::Tch
                && f.devices.tch
                && q.device.is_cuda()
                && f.devices.cuda_devices == 0
        },
        why: |q, _| {
            format!(
                "`{}` asked for, but libtorch finds no CUDA device (no NVIDIA GPU or driver \
                 here, CUDA_VISIBLE_DEVICES hides them, or the torch wheel runner was built \
                 against has no CUDA)",
                q.device
            )
        },
        fix: |_, _| "use hardware.device: cpu (e.g. --profile cpu), or run on a GPU machine".into(),
    },
    MachineRow {
        key: "hardware.device",
        code: "backend",
        on_any_machine: false,
        when: |q, f| {
            let n = f.devices.cuda_devices;
            q.backend == Backend::Tch
                && f.devices.tch
                && n > 0
                && matches!(q.device, Device::Cuda(Some(i)) if i as usize >= n)
        },
        why: |q, f| {
            let n = f.devices.cuda_devices;
            let valid = if n == 1 {
                "cuda:0".to_string()
            } else {
                format!("cuda:0 to cuda:{}", n - 1)
            };
            format!(
                "`{}` does not exist: libtorch finds {n} CUDA device{} ({valid})",
                q.device,
                if n == 1 { "" } else { "s" }
            )
        },
        fix: |_, _| "pick one of those, or check CUDA_VISIBLE_DEVICES".into(),
    },
    MachineRow {
        key: "hardware.device",
        code: "backend",
        on_any_machine: false,
        when: |q, f| {
            q.backend == Backend::Tch && f.devices.tch && q.device == Device::Mps && !f.devices.mps
        },
        why: |_, _| {
            "`mps` asked for, but libtorch finds no Metal device (MPS needs macOS on Apple \
             silicon)"
                .into()
        },
        fix: |_, _| "use hardware.device: cpu".into(),
    },
    MachineRow {
        key: "hardware.dist_backend",
        code: "backend",
        on_any_machine: false,
        when: |q, f| {
            q.backend == Backend::Tch
                && f.devices.tch
                && q.dist_backend
                    .is_some_and(|b| is_c10d(b) && !f.process_groups.contains(&b))
        },
        why: |q, f| {
            let name = q.dist_backend.map_or("?", DistBackend::as_str);
            if f.process_groups.is_empty() {
                "this runner binary was built without libtorch's c10d (data-parallel training)"
                    .into()
            } else {
                format!("this runner binary was built without c10d's {name} process group")
            }
        },
        fix: |q, f| {
            if f.process_groups.is_empty() {
                "rebuild with `just build-tch`".into()
            } else if q.dist_backend == Some(DistBackend::Gloo) {
                "install gloo's headers (apt-get install libgloo-dev) and rebuild (`just \
                 build-tch`)"
                    .into()
            } else {
                "rebuild after `just setup-tch`, which installs the CUDA and NCCL headers the \
                 build needs"
                    .into()
            }
        },
    },
];

/// The process groups c10d can have (MPI and HCCL are engine refusals).
fn is_c10d(b: DistBackend) -> bool {
    matches!(b, DistBackend::Gloo | DistBackend::Nccl)
}

/// Every engine row that refuses `q`.
pub fn engine(q: &Query) -> Vec<Refusal> {
    ENGINE
        .iter()
        .filter(|row| (row.when)(q))
        .map(|row| Refusal {
            key: row.key,
            code: row.code,
            message: (row.why)(q),
            help: (row.fix)(q),
        })
        .collect()
}

/// Every machine row that refuses `q` on a machine with `facts`.
pub fn machine(q: &Query, facts: &Facts) -> Vec<Refusal> {
    MACHINE
        .iter()
        .filter(|row| (row.when)(q, facts))
        .map(|row| Refusal {
            key: row.key,
            code: row.code,
            message: (row.why)(q, facts),
            help: (row.fix)(q, facts),
        })
        .collect()
}

/// Machine rows that refuse `q` on every machine: `validate` warns about them.
pub fn nowhere(q: &Query) -> Vec<Refusal> {
    let facts = Facts::default();
    MACHINE
        .iter()
        .filter(|row| row.on_any_machine && (row.when)(q, &facts))
        .map(|row| Refusal {
            key: row.key,
            code: row.code,
            message: (row.why)(q, &facts),
            help: (row.fix)(q, &facts),
        })
        .collect()
}

/// Whether the engine can make the device of `hw` on a machine with `devices`: the first
/// refusal, if any (every row about the backend and device, engine and machine).
pub fn device(hw: &HardwareConfig, devices: &DeviceFacts) -> Result<(), Refusal> {
    let q = Query::hardware(hw);
    let facts = Facts {
        devices: devices.clone(),
        // The process group is not the device's business: count every one as present.
        process_groups: vec![DistBackend::Gloo, DistBackend::Nccl],
    };
    let device_keys = ["hardware.device", "hardware.backend"];
    match engine(&q)
        .into_iter()
        .chain(machine(&q, &facts))
        .find(|r| device_keys.contains(&r.key))
    {
        Some(r) => Err(r),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::HardwareConfig;

    fn hw(backend: Backend, device: Device, nproc: u32) -> HardwareConfig {
        HardwareConfig {
            backend,
            device,
            nproc_per_node: nproc,
            ..HardwareConfig::default()
        }
    }

    fn facts(tch: bool, cuda: usize, groups: &[DistBackend]) -> Facts {
        Facts {
            devices: DeviceFacts {
                tch,
                cuda_devices: cuda,
                mps: false,
            },
            process_groups: groups.to_vec(),
        }
    }

    #[test]
    fn the_default_configuration_runs_on_any_machine() {
        let q = Query::hardware(&HardwareConfig::default());
        assert_eq!(engine(&q), []);
        assert_eq!(machine(&q, &Facts::default()), []);
    }

    #[test]
    fn engine_rows_need_no_facts() {
        let mut q = Query::hardware(&hw(Backend::Flex, Device::Cuda(None), 1));
        q.dtype = Dtype::Bf16;
        let keys: Vec<&str> = engine(&q).iter().map(|r| r.key).collect();
        assert_eq!(keys, ["hardware.device", "precision.dtype"]);
        // bf16 on libtorch is refused on a CPU, not on CUDA.
        let mut cuda = Query::hardware(&hw(Backend::Tch, Device::Cuda(None), 1));
        cuda.dtype = Dtype::Bf16;
        assert_eq!(engine(&cuda), []);
        let mut cpu = Query::hardware(&hw(Backend::Tch, Device::Cpu, 1));
        cpu.dtype = Dtype::Bf16;
        assert!(engine(&cpu)[0].message.contains("needs a CUDA device"));
    }

    #[test]
    fn machine_rows_follow_the_facts() {
        let q = Query::hardware(&hw(Backend::Tch, Device::Cuda(None), 2));
        assert_eq!(q.dist_backend, Some(DistBackend::Nccl));
        let without_tch = machine(&q, &facts(false, 0, &[]));
        assert_eq!(without_tch.len(), 1, "{without_tch:?}");
        assert!(without_tch[0].message.contains("without the libtorch"));
        let no_gpu = machine(&q, &facts(true, 0, &[DistBackend::Gloo]));
        assert!(
            no_gpu[0].message.contains("finds no CUDA device"),
            "{no_gpu:?}"
        );
        assert!(
            no_gpu[1].message.contains("without c10d's nccl"),
            "{no_gpu:?}"
        );
        let fine = machine(&q, &facts(true, 8, &[DistBackend::Gloo, DistBackend::Nccl]));
        assert_eq!(fine, []);
        let missing = Query::hardware(&hw(Backend::Tch, Device::Cuda(Some(99)), 1));
        let r = machine(&missing, &facts(true, 1, &[]));
        assert!(
            r[0].message.contains("cuda:99") && r[0].message.contains("(cuda:0)"),
            "{r:?}"
        );
    }

    #[test]
    fn tpus_are_refused_everywhere_and_warned_about() {
        let q = Query::hardware(&hw(Backend::Flex, Device::Tpu, 1));
        assert_eq!(engine(&q), [], "no engine row judges a TPU profile");
        assert_eq!(nowhere(&q).len(), 1);
        assert_eq!(machine(&q, &facts(true, 8, &[])), nowhere(&q));
        assert_eq!(nowhere(&Query::hardware(&HardwareConfig::default())), []);
    }

    #[test]
    fn the_device_answer_is_the_tables() {
        let d = DeviceFacts::default();
        assert!(device(&HardwareConfig::default(), &d).is_ok());
        let r = device(&hw(Backend::Tch, Device::Cpu, 1), &d).unwrap_err();
        assert_eq!(r.key, "hardware.backend");
        let r = device(&hw(Backend::Flex, Device::Mps, 1), &d).unwrap_err();
        assert!(r.message.contains("CPU only"), "{r:?}");
    }

    #[test]
    fn every_row_points_at_a_real_key() {
        let schema = crate::config::schema::experiment_schema();
        let text = serde_json::to_string(&schema).unwrap();
        for key in ENGINE
            .iter()
            .map(|r| r.key)
            .chain(MACHINE.iter().map(|r| r.key))
        {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("\"{leaf}\"")),
                "{key} is not in the schema"
            );
        }
    }
}
