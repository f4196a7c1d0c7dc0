"""The same MAE training step as benches/mae_throughput.rs in PyTorch eager, written after the
reference models_mae.py (timm Block: fused qkv, explicit softmax attention as in the timm 0.3.2
MAE pins; Conv2d patch embedding; argsort masking; norm_pix_loss MSE on hidden patches) with
AdamW betas (0.9, 0.95). Prints one JSON line. Needs torch (`just setup-bench`)."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

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


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos(dim, grid):
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ii, jj = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for pos in (jj.flatten(), ii.flatten()):
        out = pos[:, None].double() * omega[None]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(1, dim), emb])[None]


class MAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.p, grid = a.patch, a.image // a.patch
        self.L = grid * grid
        self.patch_embed = nn.Conv2d(3, a.dim, a.patch, a.patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, a.dim) * 0.02)
        self.register_buffer("pos_embed", sincos(a.dim, grid))
        self.blocks = nn.ModuleList(Block(a.dim, a.heads) for _ in range(a.depth))
        self.norm = nn.LayerNorm(a.dim, eps=1e-6)
        self.decoder_embed = nn.Linear(a.dim, a.dec_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, a.dec_dim) * 0.02)
        self.register_buffer("decoder_pos_embed", sincos(a.dec_dim, grid))
        self.decoder_blocks = nn.ModuleList(Block(a.dec_dim, a.dec_heads) for _ in range(a.dec_depth))
        self.decoder_norm = nn.LayerNorm(a.dec_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(a.dec_dim, a.patch * a.patch * 3)

    def patchify(self, imgs):
        n, p, h = imgs.shape[0], self.p, imgs.shape[2] // self.p
        x = imgs.reshape(n, 3, h, p, h, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, h * h, p * p * 3)

    def forward(self, imgs, mask_ratio=0.75):
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        n, L, d = x.shape
        keep = int(L * (1 - mask_ratio))
        ids_shuffle = torch.argsort(torch.rand(n, L, device=x.device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(n, L, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        tokens = self.mask_token.repeat(n, L + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:], tokens], 1)
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], 1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        target = self.patchify(imgs)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


model = MAE().train().to(a.device)
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
