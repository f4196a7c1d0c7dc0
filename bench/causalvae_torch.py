"""The same CausalVAE training step as benches/causal_vae_throughput.rs in PyTorch eager: the
CausalVAE of bench/reference_models.py, written after Open-Sora-Plan's CausalVAEModel (causal 3-D
convs padded by repeating the first frame, pre-activation ResNet blocks, 2x spatial down/up on
three levels, TimeDownsampleRes2x / TimeUpsampleRes2x on two, per-frame attention in the mid
blocks, diagonal Gaussian latent) with runner's per-frame GroupNorm, L1 + kl_weight * KL / (3HW),
and AdamW. Prints one JSON line. Needs torch (`just setup-bench`)."""
import argparse

import torch

from reference_models import CausalVAE
from torch_steps import time_steps

p = argparse.ArgumentParser()
for name, default in [("batch", 1), ("frames", 9), ("resolution", 32), ("base", 16),
                      ("res-blocks", 1), ("steps", 5), ("warmup", 2), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

model = CausalVAE(a.base, a.res_blocks).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
clips = torch.rand(a.batch, 3, a.frames, a.resolution, a.resolution) * 2 - 1


def step():
    loss = model(clips)
    loss.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


time_steps(step, a.warmup, a.steps, a.batch, frames=a.frames, resolution=a.resolution,
           params=sum(p.numel() for p in model.parameters()))
