"""The same training step as benches/train_throughput.rs in PyTorch eager: Hugging Face's
BertForSequenceClassification (eager attention; build_bert in bench/reference_models.py),
cross-entropy, backward, clip_grad_norm_(1.0), AdamW. Prints one JSON line.
Needs torch and transformers (`just setup-bench`)."""
import argparse

import torch

from reference_models import build_bert
from torch_steps import time_steps

p = argparse.ArgumentParser()
for name, default in [("batch", 32), ("seq", 128), ("steps", 10), ("warmup", 2),
                      ("layers", 4), ("hidden", 256), ("heads", 4), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
p.add_argument("--device", default="cpu")
p.add_argument("--bf16", action="store_true", help="autocast to bf16 (CUDA)")
p.add_argument("--profile", metavar="JSON",
               help="profile the timed steps instead and write the milliseconds per step by op "
                    "kind to JSON (bench/profile.sh)")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = build_bert(30522, a.layers, a.hidden, a.heads).train().to(a.device)
opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
ids = torch.randint(1000, 30000, (a.batch, a.seq)).to(a.device)
labels = torch.randint(0, 3, (a.batch,)).to(a.device)
mask = torch.ones(a.batch, a.seq, dtype=torch.long).to(a.device)


def step():
    with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.bf16):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.item()
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


if a.profile:
    import json
    from torch.profiler import ProfilerActivity, profile
    from profile_group import torch_profile
    for _ in range(a.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    per_step = {k: us / 1000 / a.steps for k, us in torch_profile(prof).items()}
    json.dump(per_step, open(a.profile, "w"))
else:
    time_steps(step, a.warmup, a.steps, a.batch, seq=a.seq)
