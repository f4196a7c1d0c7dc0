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
    ("tokenizing, start-up", r"unicode|token|wordpiece|regex|serde|yaml|_dl_|relocate"),
    ("OpenMP / thread waits", r"libgomp|gomp|omp_|futex|sched"),
    ("other (iterators, autograd)", r"."),
]

def kind_of(name):
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return KINDS[-1][0]


def side_by_side(columns):
    """One Markdown table: milliseconds per step by kind for each (label, {kind: ms}) column,
    each column's share, and each against the last column (the reference)."""
    ref_label, ref = columns[-1]
    totals = [sum(c.values()) or 1.0 for _, c in columns]
    head = " | ".join(f"{label}, ms/step | share" for label, _ in columns)
    ratios = " | ".join(f"{label} / {ref_label}" for label, _ in columns[:-1])
    print(f"| op kind | {head} | {ratios} |")
    print("|---|" + "---:|---:|" * len(columns) + "---:|" * (len(columns) - 1))
    for kind, _ in KINDS:
        values = [c.get(kind, 0.0) for _, c in columns]
        if all(v < 0.05 for v in values):
            continue
        cells = " | ".join(f"{v:.0f} | {100 * v / t:.0f}%" for v, t in zip(values, totals))
        r = values[-1]
        rs = " | ".join(f"{v / r:.1f}×" if r >= 0.05 else "–" for v in values[:-1])
        print(f"| {kind} | {cells} | {rs} |")
    cells = " | ".join(f"**{t:.0f}** | " for t in totals)
    rs = " | ".join(f"**{t / totals[-1]:.1f}×**" for t in totals[:-1])
    print(f"| **step** | {cells} | {rs} |")


def perf_report(path):
    """Shares by kind from `perf report --stdio --no-children --sort dso,symbol`."""
    shares = {}
    line_re = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$")
    for line in open(path, errors="replace"):
        m = line_re.match(line)
        if not m:
            continue
        pct, symbol = float(m.group(1)), m.group(3).strip()
        dso = "[k]" if m.group(2) == "[kernel.kallsyms]" else m.group(2)
        k = kind_of(f"{dso} {symbol}")
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
    # profile_group.py LABEL PERF_REPORT STEP_SECONDS [LABEL PERF_REPORT STEP_SECONDS …] TORCH_JSON
    *runs, torch_json = sys.argv[1:]
    columns = []
    for label, report, step_s in zip(runs[0::3], runs[1::3], runs[2::3]):
        shares = perf_report(report)
        total = sum(shares.values()) or 1.0
        columns.append((label, {k: v / total * float(step_s) * 1000 for k, v in shares.items()}))
    columns.append(("PyTorch eager", json.load(open(torch_json))))
    side_by_side(columns)
