#!/usr/bin/env bash
# Where one training step of bert-mini (4 layers, 256 wide, batch 32, sequence 128, BERT's
# 30,522-token vocabulary) spends its time: runner's trainer on the embedded flex backend,
# sampled by `perf record -e cpu-clock` (software sampling: this VM exposes no hardware
# counters) and grouped by op kind from the symbols (bench/profile_group.py), next to
# PyTorch's own profiler on the same model and step (bench/bert_torch.py's), 2 threads each.
# With a second binary built with the `tch` feature, runner on libtorch's CPU (2 OpenMP
# threads) gets a column too.
#   usage: bench/profile.sh [runner binary] [runner binary with tch]   (needs Debian's
#   linux-perf; torch and transformers in .venv-bench, `just setup-bench`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/runner}
py=${PYTHON:-.venv-bench/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Pairs of 128 word pieces (premises of 60 training premises, cut to 128) and a vocabulary of
# BERT's size (the tiny one padded with unused entries), so the embedding and its gradient
# and AdamW update are bert-mini's.
python3 - "$tmp" <<'PY'
import csv, sys
tmp = sys.argv[1]
rows = list(csv.reader(open("data/mnli-tiny/train.tsv"), delimiter="\t"))
head, body = rows[0], rows[1:]
with open(f"{tmp}/long.tsv", "w", newline="") as f:
    w = csv.writer(f, delimiter="\t")
    w.writerow(head)
    for i in range(1024):
        premise = " ".join(r[2] for r in body[i % 900 : i % 900 + 60])
        w.writerow([i, "long", premise, body[i][3], body[i][4]])
vocab = open("data/mnli-tiny/vocab.txt").read().split("\n")
vocab = [v for v in vocab if v]
vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
open(f"{tmp}/vocab.txt", "w").write("\n".join(vocab) + "\n")
PY

steps=12
args=(experiments/mnli-tiny.yaml model.arch=bert-mini "data.train_file=$tmp/long.tsv"
      "data.tokenizer=$tmp/vocab.txt" data.max_seq_length=128 train.per_device_batch_size=32
      "train.max_steps=$steps" eval.strategy=no eval.on_start=false
      checkpoint.strategy=no loader.num_workers=0 logging.tensorboard=false)
# perf samples of one run, grouped: the label, the report and the mean step in seconds.
profile() {
    local label=$1 bin=$2 out=$tmp/$3
    shift 3
    OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2 perf record -q -e cpu-clock -F 499 -o "$out.data" -- \
        "$bin" run --quiet --output-dir "$out" "${args[@]}" "$@" >/dev/null 2>&1
    perf report -i "$out.data" --stdio --no-children --sort dso,symbol 2>/dev/null >"$out.txt"
    # The step time from the run's own summary ($steps steps, the first included).
    columns+=("$label" "$out.txt" "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))
print(s["train_seconds"]/s["steps"])' "$out/summary.json")")
}
columns=()
profile "runner flex" "$bin" flex
if [ -n "${2:-}" ]; then profile "runner libtorch" "$2" tch hardware.backend=tch; fi
"$py" bench/bert_torch.py --profile "$tmp/torch.json" --steps 10 --threads 2 2>/dev/null
echo "bert-mini, batch 32, sequence 128, 2 threads; runner: perf samples of $steps steps (start-up"
echo "included) scaled to its mean step; PyTorch: torch.profiler self CPU time of 10 steps after"
echo "2 warm-up steps"
echo
python3 bench/profile_group.py "${columns[@]}" "$tmp/torch.json"
