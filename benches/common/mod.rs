//! Shared by the throughput benchmarks: flags, the device, and the one JSON line
//! bench/side_by_side.py reads.

use std::time::Instant;

use burn::tensor::Device;
use runner::config::types::{Backend, HardwareConfig};

/// `--name N` from the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// `--name VALUE` from the command line, or `default`.
pub fn arg_str(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The training device (with autodiff) of `--backend flex|tch` (default flex) and
/// `--device cpu|cuda|cuda:N` (default cpu), as the trainer makes it, seeded with 0; the
/// name the JSON line gives it.
pub fn device() -> (Device, String) {
    let (backend, name) = match arg_str("--backend", "flex").as_str() {
        "flex" => (Backend::Flex, "runner (burn flex)".to_string()),
        "tch" => {
            // The libtorch this binary was built against, as run records give it.
            let libtorch = runner::record::build::now("tch", false).libtorch_version;
            let version = libtorch.unwrap_or_else(|| "?".into());
            (
                Backend::Tch,
                format!("runner (burn tch, libtorch {version})"),
            )
        }
        other => panic!("--backend {other}: expected flex or tch"),
    };
    let kind = arg_str("--device", "cpu");
    let hw = HardwareConfig {
        backend,
        device: runner::config::types::Device::parse(&kind)
            .unwrap_or_else(|| panic!("--device {kind}: expected cpu, cuda or cuda:N")),
        ..HardwareConfig::default()
    };
    let name = if kind == "cpu" {
        name
    } else {
        format!("{name} {kind}")
    };
    let device = runner::train::backend::training_device(&hw, 0).unwrap_or_else(|e| panic!("{e}"));
    runner::train::backend::seed(&device, 0);
    (device, name)
}

/// Times `warmup + steps` calls of `step` (waiting for `device` to finish each) and prints the
/// median as one JSON line naming `name`, with `fields` (already JSON, e.g. `"seq": 128`).
pub fn time_steps(
    (device, name): &(Device, String),
    warmup: usize,
    steps: usize,
    batch: usize,
    fields: &str,
    mut step: impl FnMut(),
) {
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let start = Instant::now();
        step();
        device.sync().expect("the device finishes the step");
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"impl\": \"{name}\", \"batch\": {batch}, {fields}, \"steps\": {steps}, \
         \"step_s_median\": {median:.4}, \"samples_per_s\": {:.2}}}",
        batch as f64 / median
    );
}

/// `n` fixed pseudo-random values uniform in `[lo, hi)` (a 64-bit LCG: the same inputs on
/// every run and machine, without a dependency).
#[allow(dead_code)] // train_throughput draws token ids, not pixels
pub fn pseudo_random(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + ((state >> 40) as f32 / (1u64 << 24) as f32) * (hi - lo)
        })
        .collect()
}
