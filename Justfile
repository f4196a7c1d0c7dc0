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
    python3 -m pip install --quiet tensorboard==2.21.0
    cargo test --locked

# The tiny MNLI experiment: every value with its layer, then its run directory (dry run
# until the training engine lands).
tiny: build
    ./target/release/runner show experiments/mnli-tiny.yaml --explain
    ./target/release/runner run experiments/mnli-tiny.yaml --dry-run

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
bench: bench-cli

# Start-up-to-exit time of resolving and printing a real config (target: well under 20 ms).
bench-cli: build
    @echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    hyperfine --shell=none --warmup 20 --runs 300 \
        './target/release/runner show experiments/mnli.yaml --profile 8xA100 --set train.epochs=1' \
        './target/release/runner validate experiments/mae.yaml' \
        './target/release/runner --version'
