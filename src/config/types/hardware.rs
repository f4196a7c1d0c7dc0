//! Backend, device and process layout.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Tensor engine.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Backend {
    Flex,
    Tch,
}

impl Backend {
    /// The name used in files (serde's and strum's `snake_case`, checked equal by a test).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where tensors live: `cpu`, `cuda`, `cuda:N`, `mps` or `tpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(Option<u32>),
    Mps,
    Tpu,
}

impl Device {
    pub fn parse(s: &str) -> Option<Device> {
        match s {
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(None)),
            "mps" => Some(Device::Mps),
            "tpu" => Some(Device::Tpu),
            _ => s
                .strip_prefix("cuda:")?
                .parse()
                .ok()
                .map(|n| Device::Cuda(Some(n))),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(None) => f.write_str("cuda"),
            Device::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            Device::Mps => f.write_str("mps"),
            Device::Tpu => f.write_str("tpu"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown device `{s}`: expected cpu, cuda, cuda:N, mps or tpu"
            ))
        })
    }
}

impl JsonSchema for Device {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Device".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(cpu|cuda|cuda:[0-9]+|mps|tpu)$",
            "examples": ["cpu", "cuda", "cuda:0", "mps", "tpu"]
        })
    }
}

/// Collective-communication library for data-parallel training.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DistBackend {
    Nccl,
    Gloo,
    Mpi,
    Hccl,
}

impl DistBackend {
    /// The name used in files and by c10d (`nccl`, `gloo`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The accelerator model a profile trains on: what `runner plan` takes its memory and peak
/// throughput from (`config::devices`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
// Named as files spell them (`a100_80gb`): the digits would run together in CamelCase.
#[allow(non_camel_case_types)]
pub enum DeviceModel {
    /// NVIDIA A100 SXM, 40 GB.
    A100_40gb,
    /// NVIDIA A100 SXM, 80 GB.
    A100_80gb,
    /// NVIDIA H100 SXM, 80 GB.
    H100_80gb,
    /// NVIDIA H200 SXM, 141 GB.
    H200,
    /// NVIDIA GeForce RTX 3090, 24 GB.
    Rtx_3090,
    /// Google TPU v4, 32 GiB per chip.
    Tpu_v4,
}

impl DeviceModel {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Backend, device and process layout (torchrun / Megatron distributed arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareConfig {
    /// `flex`: burn's embedded pure-Rust CPU backend (the default, single process);
    /// `tch`: libtorch, for CUDA GPUs and fast CPUs (a binary built with the `tch` feature).
    pub backend: Backend,
    /// `cpu`, `cuda`, `cuda:N`, `mps` or `tpu` (MAE `--device`).
    pub device: Device,
    /// Which accelerator `device` is, for `runner plan`'s memory and time estimates
    /// (`a100_80gb`, `h100_80gb`, …); unset on a CPU, where plan reads this machine's RAM.
    pub device_model: Option<DeviceModel>,
    /// Machines taking part (`--nnodes`).
    #[schemars(range(min = 1))]
    pub nnodes: u32,
    /// Worker processes per machine, usually one per GPU (`--nproc_per_node`).
    #[schemars(range(min = 1))]
    pub nproc_per_node: u32,
    /// Index of this machine, 0 to nnodes − 1; 0 hosts the rendezvous (`--node_rank`).
    pub node_rank: u32,
    /// Address of node 0 (`--master_addr`).
    #[schemars(length(min = 1))]
    pub master_addr: String,
    /// TCP port of the rendezvous on node 0 (`--master_port`).
    #[schemars(range(min = 1))]
    pub master_port: u16,
    /// `nccl` (CUDA) or `gloo` (CPU); default: `nccl` on CUDA, `gloo` otherwise
    /// (Megatron `--distributed-backend`, HF `ddp_backend`).
    pub dist_backend: Option<DistBackend>,
    /// Tensor-model-parallel size (Megatron `--tensor-model-parallel-size`).
    #[schemars(range(min = 1))]
    pub tensor_parallel: u32,
    /// Pipeline-model-parallel size (Megatron `--pipeline-model-parallel-size`).
    #[schemars(range(min = 1))]
    pub pipeline_parallel: u32,
    /// Gradients are all-reduced in buckets of about this many MiB (HF `ddp_bucket_cap_mb`).
    #[schemars(range(min = 1))]
    pub ddp_bucket_cap_mb: u32,
    /// Seconds a rank waits for the others before the run fails (HF `ddp_timeout`).
    #[schemars(range(min = 1))]
    pub ddp_timeout: u32,
}

impl Default for HardwareConfig {
    fn default() -> Self {
        HardwareConfig {
            backend: Backend::Flex,
            device: Device::Cpu,
            device_model: None,
            nnodes: 1,
            nproc_per_node: 1,
            node_rank: 0,
            master_addr: "localhost".into(),
            master_port: 29500,
            dist_backend: None,
            tensor_parallel: 1,
            pipeline_parallel: 1,
            ddp_bucket_cap_mb: 25,
            ddp_timeout: 1800,
        }
    }
}
