#!/usr/bin/env bash
# A folder of N run directories for `just bench-runs`: one real mnli-tiny run (20 steps),
# copied N times with its recorded seed and learning rate varied, so that `runner runs` reads
# N configurations, summaries and metrics files and finds the keys that differ. Weights and
# checkpoints are left out: the table never reads them.
set -euo pipefail
runner=$1 n=$2 out=$3
rm -rf "$out" && mkdir -p "$out"
"$runner" --quiet run experiments/mnli-tiny.yaml --output-dir "$out/.seed" \
    train.max_steps=20 eval.strategy=steps eval.every_steps=10 loader.num_workers=0 >/dev/null 2>&1
for i in $(seq 1 "$n"); do
    d="$out/run-$i"
    mkdir "$d"
    cp "$out/.seed/meta.json" "$out/.seed/summary.json" "$out/.seed/metrics.jsonl" "$d/"
    sed -e "s/^seed: .*/seed: $i/" -e "s/^  lr: .*/  lr: 0.00$((i % 7 + 1))/" \
        "$out/.seed/config.resolved.yaml" >"$d/config.resolved.yaml"
done
rm -rf "$out/.seed"
echo "$n run directories in $out"
