"""Shared by the PyTorch reference benchmarks: times training steps and prints the one JSON line
bench/side_by_side.py reads (the Rust side prints the same from benches/common)."""
import json, time

import torch


def time_steps(step, warmup, steps, batch, **fields):
    """Runs `step()` warmup + steps times; prints the median of the timed ones."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"impl": f"PyTorch {torch.__version__} eager", "batch": batch, **fields,
                      "steps": steps, "step_s_median": round(median, 4),
                      "samples_per_s": round(batch / median, 2)}))
