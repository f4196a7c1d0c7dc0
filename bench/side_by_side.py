"""Runs throughput commands in turn (A B C A B C …) and prints a Markdown table of their
medians, each as a ratio to the last command's (the reference).
Usage: side_by_side.py ROUNDS ::: CMD_A... ::: CMD_B... [::: CMD_C...]"""
import json, statistics, subprocess, sys

rounds = int(sys.argv[1])
rest = sys.argv[2:]
split = [i for i, x in enumerate(rest) if x == ":::"] + [len(rest)]
cmds = [rest[split[i] + 1:split[i + 1]] for i in range(len(split) - 1)]
results = [[] for _ in cmds]
names = [None] * len(cmds)
for r in range(rounds):
    for k, cmd in enumerate(cmds):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rec = json.loads(out.strip().splitlines()[-1])
        names[k] = rec["impl"]
        results[k].append(rec["samples_per_s"])
        print(f"round {r + 1}: {rec['impl']}: {rec['samples_per_s']} samples/s", file=sys.stderr)
medians = [statistics.median(x) for x in results]
print(f"| implementation | samples/s (median of {rounds}) | runs | / {names[-1]} |")
print("| --- | ---: | --- | ---: |")
for name, m, runs in zip(names, medians, results):
    print(f"| {name} | {m:.2f} | {', '.join(map(str, runs))} | {m / medians[-1]:.2f} |")
