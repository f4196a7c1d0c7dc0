"""The same CausalVAE training step as benches/causal_vae_throughput.rs in PyTorch eager, written
after Open-Sora-Plan's CausalVAEModel (causal 3-D convs padded by repeating the first frame,
pre-activation ResNet blocks, 2x spatial down/up on three levels, TimeDownsampleRes2x /
TimeUpsampleRes2x on two, per-frame attention in the mid blocks, diagonal Gaussian latent) with
runner's per-frame GroupNorm, L1 + kl_weight * KL / (3HW), and AdamW. Prints one JSON line.
Needs torch (`just setup-bench`)."""
import argparse, math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_steps import time_steps

p = argparse.ArgumentParser()
for name, default in [("batch", 1), ("frames", 9), ("resolution", 32), ("base", 16),
                      ("res-blocks", 1), ("steps", 5), ("warmup", 2), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
MULT = [1, 2, 4, 4]


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, as runner's (keeps the encoder causal)."""
    def forward(self, x):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def norm(c):
    return FrameGroupNorm(math.gcd(32, c), c, eps=1e-6)


class CausalConv3d(nn.Module):
    def __init__(self, cin, cout, k, stride=(1, 1, 1), pad=None):
        super().__init__()
        k = (k, k, k) if isinstance(k, int) else k
        pad = k[1] // 2 if pad is None else pad
        self.time_pad = k[0] - 1
        self.conv = nn.Conv3d(cin, cout, k, stride=stride, padding=(0, pad, pad))
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        if self.time_pad:
            x = torch.cat([x[:, :, :1].repeat(1, 1, self.time_pad, 1, 1), x], 2)
        return self.conv(x)


class ResnetBlock3D(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), CausalConv3d(cin, cout, 3)
        self.norm2, self.conv2 = norm(cout), CausalConv3d(cout, cout, 3)
        self.nin_shortcut = CausalConv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock3D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (CausalConv3d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, t, h, w = x.shape
        n = self.norm(x)
        tok = lambda y: y.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        q, k, v = tok(self.q(n)), tok(self.k(n)), tok(self.v(n))
        out = torch.softmax(q @ k.transpose(1, 2) * c ** -0.5, dim=2) @ v
        return x + self.proj_out(out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3))


class SpatialDownsample2x(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = CausalConv3d(c, c, (1, 3, 3), stride=(1, 2, 2), pad=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 0)))


class SpatialUpsample2x(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = CausalConv3d(c, c, (1, 3, 3), pad=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class TimeDownsampleRes2x(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.avg_pool = nn.AvgPool3d((3, 1, 1), stride=(2, 1, 1))
        self.conv = nn.Conv3d(c, c, 3, stride=(2, 1, 1), padding=(0, 1, 1))
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x):
        alpha = torch.sigmoid(self.mix_factor)
        x = torch.cat([x[:, :, :1].repeat(1, 1, 2, 1, 1), x], 2)
        return alpha * self.avg_pool(x) + (1 - alpha) * self.conv(x)


class TimeUpsampleRes2x(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = CausalConv3d(c, c, 3)
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x):
        alpha = torch.sigmoid(self.mix_factor)
        if x.size(2) > 1:
            x = torch.cat([x[:, :, :1], F.interpolate(x[:, :, 1:], scale_factor=(2, 1, 1),
                                                       mode="trilinear")], 2)
        return alpha * x + (1 - alpha) * self.conv(x)


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock3D(c, c), AttnBlock3D(c), ResnetBlock3D(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, base, blocks, z):
        super().__init__()
        self.conv_in = CausalConv3d(3, base, 3)
        self.down, cin = nn.ModuleList(), base
        for level, m in enumerate(MULT):
            lvl, cout = nn.Module(), base * m
            lvl.block = nn.ModuleList(ResnetBlock3D(cin if j == 0 else cout, cout) for j in range(blocks))
            lvl.downsample = SpatialDownsample2x(cout) if level < 3 else None
            lvl.time_downsample = TimeDownsampleRes2x(cout) if level in (1, 2) else None
            self.down.append(lvl)
            cin = cout
        self.mid, self.norm_out, self.conv_out = Mid(cin), norm(cin), CausalConv3d(cin, 2 * z, 3)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for b in lvl.block:
                h = b(h)
            if lvl.downsample is not None:
                h = lvl.downsample(h)
            if lvl.time_downsample is not None:
                h = lvl.time_downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, base, blocks, z):
        super().__init__()
        cin = base * MULT[-1]
        self.conv_in, self.mid = CausalConv3d(z, cin, 3), Mid(cin)
        up = []
        for level in reversed(range(len(MULT))):
            lvl, cout = nn.Module(), base * MULT[level]
            lvl.block = nn.ModuleList(ResnetBlock3D(cin if j == 0 else cout, cout) for j in range(blocks + 1))
            lvl.upsample = SpatialUpsample2x(cout) if level >= 1 else None
            lvl.time_upsample = TimeUpsampleRes2x(cout) if level >= 2 else None
            up.insert(0, lvl)
            cin = cout
        self.up = nn.ModuleList(up)
        self.norm_out, self.conv_out = norm(cin), CausalConv3d(cin, 3, 3)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in reversed(self.up):
            for b in lvl.block:
                h = b(h)
            if lvl.upsample is not None:
                h = lvl.upsample(h)
            if lvl.time_upsample is not None:
                h = lvl.time_upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class CausalVAE(nn.Module):
    def __init__(self, base, blocks, z=4):
        super().__init__()
        self.encoder, self.decoder = Encoder(base, blocks, z), Decoder(base, blocks, z)
        self.quant_conv, self.post_quant_conv = CausalConv3d(2 * z, 2 * z, 1), CausalConv3d(z, z, 1)

    def loss(self, x, kl_weight=1e-6):
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        recon = self.decoder(self.post_quant_conv(z))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        per_frame = x.shape[1] * x.shape[3] * x.shape[4]
        return (recon - x).abs().mean() + kl_weight * kl.mean() / per_frame


model = CausalVAE(a.base, a.res_blocks).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
clips = torch.rand(a.batch, 3, a.frames, a.resolution, a.resolution) * 2 - 1


def step():
    loss = model.loss(clips)
    loss.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


time_steps(step, a.warmup, a.steps, a.batch, frames=a.frames, resolution=a.resolution,
           params=sum(p.numel() for p in model.parameters()))
