"""The same MAE training step as benches/mae_throughput.rs in PyTorch eager: the MAE of
bench/reference_models.py, written after the reference models_mae.py (timm Block: fused qkv,
explicit softmax attention as in the timm 0.3.2 MAE pins; Conv2d patch embedding; argsort
masking; norm_pix_loss MSE on hidden patches), with AdamW betas (0.9, 0.95). Prints one JSON
line. Needs torch (`just setup-bench`)."""
import argparse

import torch

from reference_models import MAE
from torch_steps import time_steps

p = argparse.ArgumentParser()
for name, default in [("batch", 32), ("image", 224), ("patch", 16), ("dim", 192), ("depth", 12),
                      ("heads", 3), ("dec-dim", 128), ("dec-depth", 2), ("dec-heads", 4),
                      ("steps", 5), ("warmup", 2), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
p.add_argument("--device", default="cpu")
p.add_argument("--bf16", action="store_true", help="autocast to bf16 (CUDA)")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = MAE(a.image, a.patch, a.dim, a.depth, a.heads, a.dec_dim, a.dec_depth, a.dec_heads,
            norm_pix_loss=True).train().to(a.device)
opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
imgs = (torch.rand(a.batch, 3, a.image, a.image) * 4 - 2).to(a.device)


def step():
    with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.bf16):
        loss = model(imgs)
    loss.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


time_steps(step, a.warmup, a.steps, a.batch, image=a.image)
