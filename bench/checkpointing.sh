#!/usr/bin/env bash
# Peak memory with and without gradient checkpointing, next to `runner plan`'s estimate, for
# two sizes of each job (the shipped tiny experiments; bert-small at sequence 512, MAE
# ViT-Tiny/16 at 224 px, the CausalVAE (488 layout, tiny widths) at 17 × 64²). Each run trains
# 2 steps on the embedded CPU backend and leaves in summary.json its process high-water mark
# and the most bytes its allocator had handed out at once (`peak_allocated`: without what
# glibc keeps freed for reuse, which the resident set includes). Backward's peak (the
# activations and gradients held together, which plan weighs stage by stage: backward frees
# the one as it makes the other) is that allocator peak minus what was allocated when the
# first step began minus what the steps hold besides (AdamW's two moments, gemm's and conv3d's
# workspaces, the batch: plan's figures); the total adds the weights back, to compare with
# plan's whole figure. (The embedded backend trains in fp32 only, so bf16 is not measured.)
#   usage: [only="bert_small vae_small"] bench/checkpointing.sh [runner binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/runner}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Long pairs: every premise is 60 training premises joined (> 512 word pieces), cut to 512.
python3 - "$tmp/long.tsv" <<'PY'
import csv, sys
rows = list(csv.reader(open("data/mnli-tiny/train.tsv"), delimiter="\t"))
head, body = rows[0], rows[1:]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f, delimiter="\t")
    w.writerow(head)
    for i in range(64):
        premise = " ".join(r[2] for r in body[i : i + 60])
        w.writerow([i, "long", premise, body[i][3], body[i][4]])
PY

# Two sizes of each job: the shipped tiny experiment and a small one.
bert_tiny=(experiments/mnli-tiny.yaml train.per_device_batch_size=16)
bert_small=(experiments/mnli-tiny.yaml model.arch=bert-small "data.train_file=$tmp/long.tsv"
            data.max_seq_length=512 train.per_device_batch_size=4)
mae_tiny=(experiments/mae-tiny.yaml train.per_device_batch_size=64 scheduler.warmup_steps=0)
mae_small=(experiments/mae-tiny.yaml model.arch=mae_vit_tiny_patch16 data.input_size=224
           train.per_device_batch_size=8 scheduler.warmup_steps=0)
vae_tiny=(experiments/causalvae-tiny.yaml scheduler.warmup_steps=0)
vae_small=(experiments/causalvae-tiny.yaml model.arch=causal_vae_488_tiny data.num_frames=17
           data.resolution=64 train.per_device_batch_size=1 scheduler.warmup_steps=0)
common=(train.max_steps=2 eval.strategy=no eval.on_start=false checkpoint.strategy=no
        loader.num_workers=0 logging.tensorboard=false)

printf '| model | checkpointing | peak RSS | peak allocated | backward peak measured | plan | plan / measured | total measured | plan | plan / measured |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for name in ${only:-bert_tiny bert_small mae_tiny mae_small vae_tiny vae_small}; do
    declare -n args=$name
    for ckpt in false true; do
        out="$tmp/$name-$ckpt"
        set=("${args[@]}" "${common[@]}" "train.gradient_checkpointing=$ckpt")
        "$bin" run --quiet --output-dir "$out" "${set[@]}" >/dev/null
        "$bin" plan --format json "${set[@]}" >"$out.plan.json"
        python3 - "$name" "$ckpt" "$out/summary.json" "$out.plan.json" <<'PY'
import json, sys
name, ckpt, summary, plan = sys.argv[1:]
m = json.load(open(summary))["memory"]
p = json.load(open(plan))["memory_per_rank"]
# What the steps add to what was allocated: activations, gradients, AdamW's moments, the
# workspaces and the batch.
grown = m["peak_allocated"] - m["allocated_at_first_step"]
besides = ["optimizer_state", "conv_workspace", "matmul_workspace", "loader_prefetch"]
measured = grown - sum(p[k] for k in besides)
# The total plan counts (model states, activations, the loader's batches), measured as what
# the steps allocated plus the weights, allocated before the first step.
total = grown + p["parameters"]
mib = lambda b: f"{b / 2**20:.0f} MiB"
print(f"| {name} | {ckpt} | {mib(m['peak_rss'])} | {mib(m['peak_allocated'])} | {mib(measured)} | {mib(p['backward_peak'])} | "
      f"{p['backward_peak'] / measured:.2f} | {mib(total)} | {mib(p['total'])} | "
      f"{p['total'] / total:.2f} |")
PY
    done
done
