"""Runs two throughput commands alternately (A B A B …) and prints a Markdown table of their
medians and the ratio. Usage: side_by_side.py ROUNDS ::: CMD_A... ::: CMD_B..."""
import json, statistics, subprocess, sys

rounds = int(sys.argv[1])
rest = sys.argv[2:]
split = [i for i, x in enumerate(rest) if x == ":::"]
a, b = rest[split[0] + 1:split[1]], rest[split[1] + 1:]
results = {0: [], 1: []}
names = {}
for r in range(rounds):
    for k, cmd in enumerate([a, b]):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rec = json.loads(out.strip().splitlines()[-1])
        names[k] = rec["impl"]
        results[k].append(rec["samples_per_s"])
        print(f"round {r + 1}: {rec['impl']}: {rec['samples_per_s']} samples/s", file=sys.stderr)
ma, mb = statistics.median(results[0]), statistics.median(results[1])
print(f"| implementation | samples/s (median of {rounds}) | runs |")
print("| --- | ---: | --- |")
print(f"| {names[0]} | {ma:.2f} | {', '.join(map(str, results[0]))} |")
print(f"| {names[1]} | {mb:.2f} | {', '.join(map(str, results[1]))} |")
print(f"\nratio {names[0]} / {names[1]}: {ma / mb:.2f}")
