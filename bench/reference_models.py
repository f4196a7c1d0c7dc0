"""The PyTorch reference models of the benches, in one place, parametrised by size: nothing here
parses arguments or reads a global at import, so the timing scripts (bench/bert_torch.py,
bench/mae_torch.py, bench/causalvae_torch.py) and bench/plan_accuracy.py (which builds them on
the meta device to count parameters, FLOPs and saved activations) share the same modules.

Each model keeps runner's layout, so that the parameter counts agree to the unit and a step's
throughput compares like with like; every forward returns the training loss. The parameters are
created in a fixed order, so under torch.manual_seed the initial weights are always the same.
Needs torch; build_bert also needs transformers (imported only there)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# BERT (benches/train_throughput.rs; experiments/mnli-*.yaml)
# --------------------------------------------------------------------------------------------

def build_bert(vocab, layers, hidden, heads, labels=3):
    """Hugging Face's BertForSequenceClassification, eager attention. Its layout is runner's
    (word/position/token-type embeddings, post-LN layers, tanh pooler over [CLS], dropout,
    classifier; 512 positions, 2 token types, dropout 0.1), so nothing changes. transformers is
    imported here, so that the MAE and CausalVAE scripts do not need it."""
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(attn_implementation="eager", vocab_size=vocab, hidden_size=hidden,
                     num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=512,
                     type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, num_labels=labels)
    return BertForSequenceClassification(cfg)


# --------------------------------------------------------------------------------------------
# MAE (benches/mae_throughput.rs; experiments/mae-*.yaml)
# --------------------------------------------------------------------------------------------

class MaeAttention(nn.Module):
    """timm's Attention as the MAE reference pins it (timm 0.3.2): one fused qkv Linear and an
    explicit softmax over the scaled scores (no fused attention kernel)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class MaeBlock(nn.Module):
    """timm's pre-LN Block (LayerNorm eps 1e-6, MLP ratio 4, GELU)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), MaeAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos(dim, grid):
    """The fixed 2-D sin-cos position embedding of models_mae.py, with a zero row for [CLS]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ii, jj = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for pos in (jj.flatten(), ii.flatten()):
        out = pos[:, None].double() * omega[None]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(1, dim), emb])[None]


class MAE(nn.Module):
    """The reference models_mae.py's MaskedAutoencoderViT: Conv2d patch embedding, fixed sin-cos
    position embeddings, random masking by argsort of uniform noise, a [CLS] token, a narrower
    decoder, and the MSE on the hidden patches (of per-patch normalised pixels with
    norm_pix_loss). runner embeds patches with a Linear over patchified pixels instead of the
    stride-p Conv2d kept here: the same parameters (p·p·3·D + D), the same FLOPs, and the saved
    input has the same size (the image vs its patchified copy)."""

    def __init__(self, image, patch, dim, depth, heads, dec_dim, dec_depth, dec_heads,
                 norm_pix_loss=True, mask_ratio=0.75):
        super().__init__()
        self.p, grid = patch, image // patch
        self.L, self.norm_pix_loss, self.mask_ratio = grid * grid, norm_pix_loss, mask_ratio
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos_embed", sincos(dim, grid))
        self.blocks = nn.ModuleList(MaeBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dec_dim) * 0.02)
        self.register_buffer("decoder_pos_embed", sincos(dec_dim, grid))
        self.decoder_blocks = nn.ModuleList(MaeBlock(dec_dim, dec_heads) for _ in range(dec_depth))
        self.decoder_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dec_dim, patch * patch * 3)

    def patchify(self, imgs):
        n, p, h = imgs.shape[0], self.p, imgs.shape[2] // self.p
        x = imgs.reshape(n, 3, h, p, h, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, h * h, p * p * 3)

    def forward(self, imgs):
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        n, L, d = x.shape
        keep = int(L * (1 - self.mask_ratio))
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
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


# --------------------------------------------------------------------------------------------
# CausalVAE (benches/causal_vae_throughput.rs; experiments/causalvae-*.yaml), after
# Open-Sora-Plan's CausalVAEModel: causal 3-D convs padded by repeating the first frame,
# pre-activation ResNet blocks, 2x spatial down/up on three levels, TimeDownsampleRes2x /
# TimeUpsampleRes2x on two, per-frame attention in the mid blocks, diagonal Gaussian latent;
# with runner's per-frame GroupNorm and loss.
# --------------------------------------------------------------------------------------------

VAE_MULT = [1, 2, 4, 4]


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, as runner's (keeps the encoder causal)."""

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def vae_norm(c):
    return FrameGroupNorm(math.gcd(32, c), c, eps=1e-6)


class CausalConv3d(nn.Module):
    """A Conv3d padded in time by repeating the first frame k-1 times (so frame t sees frames
    <= t only), zero-padded in space; bias initialised to zero."""

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
        self.norm1, self.conv1 = vae_norm(cin), CausalConv3d(cin, cout, 3)
        self.norm2, self.conv2 = vae_norm(cout), CausalConv3d(cout, cout, 3)
        self.nin_shortcut = CausalConv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock3D(nn.Module):
    """Single-head attention over the positions of each frame (1x1x1 causal-conv q, k, v)."""

    def __init__(self, c):
        super().__init__()
        self.norm = vae_norm(c)
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


class VaeMid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1 = ResnetBlock3D(c, c), AttnBlock3D(c)
        self.block_2 = ResnetBlock3D(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


def vae_level(h, blocks, *resamplers):
    """One level of the encoder or decoder: its ResNet blocks, then its spatial and temporal
    down- or upsampler where the level has them."""
    for b in blocks:
        h = b(h)
    for r in resamplers:
        if r is not None:
            h = r(h)
    return h


class VaeEncoder(nn.Module):
    def __init__(self, base, blocks, z):
        super().__init__()
        self.conv_in = CausalConv3d(3, base, 3)
        self.down, cin = nn.ModuleList(), base
        for level, m in enumerate(VAE_MULT):
            lvl, cout = nn.Module(), base * m
            lvl.block = nn.ModuleList(ResnetBlock3D(cin if j == 0 else cout, cout)
                                      for j in range(blocks))
            lvl.downsample = SpatialDownsample2x(cout) if level < 3 else None
            lvl.time_downsample = TimeDownsampleRes2x(cout) if level in (1, 2) else None
            self.down.append(lvl)
            cin = cout
        self.mid, self.norm_out = VaeMid(cin), vae_norm(cin)
        self.conv_out = CausalConv3d(cin, 2 * z, 3)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            h = vae_level(h, lvl.block, lvl.downsample, lvl.time_downsample)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class VaeDecoder(nn.Module):
    def __init__(self, base, blocks, z):
        super().__init__()
        cin = base * VAE_MULT[-1]
        self.conv_in, self.mid = CausalConv3d(z, cin, 3), VaeMid(cin)
        up = []
        for level in reversed(range(len(VAE_MULT))):
            lvl, cout = nn.Module(), base * VAE_MULT[level]
            lvl.block = nn.ModuleList(ResnetBlock3D(cin if j == 0 else cout, cout)
                                      for j in range(blocks + 1))
            lvl.upsample = SpatialUpsample2x(cout) if level >= 1 else None
            lvl.time_upsample = TimeUpsampleRes2x(cout) if level >= 2 else None
            up.insert(0, lvl)
            cin = cout
        self.up = nn.ModuleList(up)
        self.norm_out, self.conv_out = vae_norm(cin), CausalConv3d(cin, 3, 3)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in reversed(self.up):
            h = vae_level(h, lvl.block, lvl.upsample, lvl.time_upsample)
        return self.conv_out(F.silu(self.norm_out(h)))


class CausalVAE(nn.Module):
    """Encoder, quant_conv, a sample of the diagonal Gaussian, post_quant_conv, decoder; the
    forward returns runner's loss: L1 reconstruction + kl_weight · KL / (3HW) (the KL summed per
    clip, averaged over the batch, divided by the elements of one frame)."""

    def __init__(self, base, blocks, z=4):
        super().__init__()
        self.encoder, self.decoder = VaeEncoder(base, blocks, z), VaeDecoder(base, blocks, z)
        self.quant_conv = CausalConv3d(2 * z, 2 * z, 1)
        self.post_quant_conv = CausalConv3d(z, z, 1)

    def forward(self, x, kl_weight=1e-6):
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        recon = self.decoder(self.post_quant_conv(z))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        per_frame = x.shape[1] * x.shape[3] * x.shape[4]
        return (recon - x).abs().mean() + kl_weight * kl.mean() / per_frame
