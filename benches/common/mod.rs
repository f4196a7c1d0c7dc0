//! Shared by the throughput benchmarks: flags and the one JSON line bench/side_by_side.py reads.

use std::time::Instant;

/// `--name N` from the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// Times `warmup + steps` calls of `step` and prints the median as one JSON line with `fields`
/// (already JSON, e.g. `"seq": 128`).
pub fn time_steps(warmup: usize, steps: usize, batch: usize, fields: &str, mut step: impl FnMut()) {
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let start = Instant::now();
        step();
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"impl\": \"runner (burn flex)\", \"batch\": {batch}, {fields}, \"steps\": {steps}, \
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
