//! The device table: each accelerator's memory and peak dense throughput per dtype, from its
//! vendor's data sheet. `runner plan` checks memory against it and turns FLOPs into time at a
//! stated utilisation of its peak; a CPU (`hardware.device: cpu`) is this machine's RAM, read
//! when asked, with no peak figure.

use super::types::{DeviceModel, Dtype};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceSpec {
    pub model: DeviceModel,
    /// What people call it.
    pub name: &'static str,
    /// Memory per device, bytes.
    pub memory: u64,
    /// Peak dense throughput, TFLOP/s: fp32 (without TF32), and bf16 / fp16 on tensor cores
    /// with fp32 accumulation (`None`: the device has no fast path for it).
    pub fp32_tflops: f64,
    pub bf16_tflops: Option<f64>,
    pub fp16_tflops: Option<f64>,
    /// Where the figures come from.
    pub source: &'static str,
}

impl DeviceSpec {
    /// Peak TFLOP/s for training in `dtype`.
    pub fn peak_tflops(&self, dtype: Dtype) -> Option<f64> {
        match dtype {
            Dtype::Fp32 => Some(self.fp32_tflops),
            Dtype::Bf16 => self.bf16_tflops,
            Dtype::Fp16 => self.fp16_tflops,
        }
    }
}

const GB: u64 = 1_000_000_000;
const GIB: u64 = 1 << 30;

/// The table's row for `model`.
pub fn spec(model: DeviceModel) -> DeviceSpec {
    use DeviceModel::*;
    let (name, memory, fp32, bf16, fp16, source) = match model {
        A100_40gb => (
            "A100 40 GB",
            40 * GB,
            19.5,
            Some(312.0),
            Some(312.0),
            "NVIDIA A100 Tensor Core GPU data sheet (SXM)",
        ),
        A100_80gb => (
            "A100 80 GB",
            80 * GB,
            19.5,
            Some(312.0),
            Some(312.0),
            "NVIDIA A100 Tensor Core GPU data sheet (SXM)",
        ),
        H100_80gb => (
            "H100 80 GB",
            80 * GB,
            67.0,
            Some(989.4),
            Some(989.4),
            "NVIDIA H100 Tensor Core GPU data sheet (SXM, dense)",
        ),
        H200 => (
            "H200 141 GB",
            141 * GB,
            67.0,
            Some(989.4),
            Some(989.4),
            "NVIDIA H200 Tensor Core GPU data sheet (SXM, dense)",
        ),
        Rtx_3090 => (
            "RTX 3090 24 GB",
            24 * GIB,
            35.6,
            Some(71.0),
            Some(71.0),
            "NVIDIA Ampere GA102 GPU architecture whitepaper (dense tensor TFLOPS)",
        ),
        Tpu_v4 => (
            "TPU v4",
            32 * GIB,
            // TPUs compute fp32 matrix products in bf16 passes; no separate fp32 figure.
            275.0 / 6.0,
            Some(275.0),
            None,
            "Google Cloud TPU v4 documentation (per chip)",
        ),
    };
    DeviceSpec {
        model,
        name,
        memory,
        fp32_tflops: fp32,
        bf16_tflops: bf16,
        fp16_tflops: fp16,
        source,
    }
}

/// This machine's memory, bytes (`/proc/meminfo`'s MemTotal; `None` off Linux).
pub fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_model_has_a_row_with_figures() {
        for model in DeviceModel::iter() {
            let s = spec(model);
            assert_eq!(s.model, model);
            assert!(s.memory >= 24 * GB, "{}", s.name);
            assert!(s.peak_tflops(Dtype::Bf16).unwrap() > s.fp32_tflops);
        }
        assert_eq!(
            spec(DeviceModel::A100_80gb).peak_tflops(Dtype::Bf16),
            Some(312.0)
        );
        assert!(host_memory().unwrap() > 1 << 28);
    }
}
