"""Groups a profile by op kind, for bench/profile.sh: `perf report --stdio --sort dso,symbol`
lines of runner on the embedded backend (each symbol's share of the samples), or PyTorch
profiler rows (each op's self CPU time). The kinds are the ones a training step is made of;
the patterns are matched against the symbol (or aten op) name in order, first match wins."""
import json
import re
import sys

# (kind, regex over a perf symbol or an aten op name). Order matters: first match wins.
KINDS = [
    ("matmul (gemm and its packing)", r"gemm|matmul|aten::(addmm|mm|bmm|baddbmm|linear)\b|sgemm|dot_"),
    ("softmax", r"softmax"),
    ("layer norm", r"layer_norm"),
    ("GELU (erf)", r"gelu|erf"),
    ("exp, log, sqrt, tanh", r"\bexp|_exp|expf|log|sqrt|tanh"),
    ("embedding gather / scatter-add", r"embedding|gather|scatter|index_add|index_select"),
    ("dropout masks (random numbers)", r"dropout|bernoulli|random|sampler|distribution|chacha|rng"),
    ("AdamW", r"adam|lerp|_foreach|addcdiv|addcmul"),
    ("allocation, zero-filling, page faults", r"malloc|free\b|_free|cfree|alloc|memset|bzero|filled|zeros|empty|chunk|consolidate|\[k\]"),
    ("reductions (sum, mean, max, norm)", r"reduce|sum|mean|max\b|amax|min\b|norm|argmax"),
    ("element-wise (SIMD kernels, binary, scalar)", r"macerator|vectorized|binary|unary|zip|add|sub|mul|div|neg|pow|scalar|clamp|mask|where|cmp|fill|threshold"),
    ("copies, layout, cat, slice", r"copy|memcpy|memmove|contiguous|permute|transpose|cat\b|slice|narrow|reshape|view|strided|to_vec|clone|expand|select"),
    ("tokenizing, start-up", r"unicode|token|wordpiece|regex|serde|yaml"),
    ("other (iterators, threads, autograd)", r"."),
]

def kind_of(name):
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return KINDS[-1][0]


def side_by_side(runner_ms, torch_ms):
    """One Markdown table: milliseconds per step by kind, runner against PyTorch."""
    print("| op kind | runner flex, ms/step | share | PyTorch eager, ms/step | share | runner / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    rt, tt = sum(runner_ms.values()) or 1.0, sum(torch_ms.values()) or 1.0
    for kind, _ in KINDS:
        r, t = runner_ms.get(kind, 0.0), torch_ms.get(kind, 0.0)
        if r < 0.05 and t < 0.05:
            continue
        ratio = f"{r / t:.1f}×" if t >= 0.05 else "–"
        print(f"| {kind} | {r:.0f} | {100 * r / rt:.0f}% | {t:.0f} | {100 * t / tt:.0f}% | {ratio} |")
    print(f"| **step** | **{rt:.0f}** | | **{tt:.0f}** | | **{rt / tt:.1f}×** |")


def perf_report(path):
    """Shares by kind from `perf report --stdio --no-children --sort dso,symbol`."""
    shares = {}
    line_re = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$")
    for line in open(path, errors="replace"):
        m = line_re.match(line)
        if not m:
            continue
        pct, symbol = float(m.group(1)), m.group(3).strip()
        k = kind_of(("[k] " if m.group(2) == "[kernel.kallsyms]" else "") + symbol)
        shares[k] = shares.get(k, 0.0) + pct
    return shares


def torch_profile(prof):
    """Microseconds by kind from a torch.profiler.profile's key averages (self CPU time)."""
    shares = {}
    for e in prof.key_averages():
        if e.self_cpu_time_total <= 0:
            continue
        k = kind_of(e.key)
        shares[k] = shares.get(k, 0.0) + e.self_cpu_time_total
    return shares


if __name__ == "__main__":
    # profile_group.py PERF_REPORT RUNNER_STEP_SECONDS TORCH_JSON
    report, step_s, torch_json = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    shares = perf_report(report)
    total = sum(shares.values()) or 1.0
    runner_ms = {k: v / total * step_s * 1000 for k, v in shares.items()}
    side_by_side(runner_ms, json.load(open(torch_json)))
