#!/usr/bin/env bash
# Runs every test tier of Agora on a fresh machine: formatting, lints, unit, integration and
# compat tests. It installs what it needs (the Python venv with pymesos and kafka-python, tansu)
# itself.
#
#   scripts/test.sh            # everything
#
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "system tools the tests use"
# The agent's fetcher unpacks .zip archives with the system `unzip`, as Mesos does; the
# high-availability tests run a real ZooKeeper (Debian's package, on Java), which the tests
# start and stop themselves on 127.0.0.1.
missing=()
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
[ -e /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "${missing[*]} missing and cannot be installed here (need root and apt-get)" >&2
        exit 1
    fi
fi

step "build the binaries the integration tests start"
cargo build --locked --bin agora --bin agora-kafka

step "tansu, the Kafka-protocol broker the Kafka framework runs (built once, then cached)"
AGORA_TANSU="$(scripts/setup-tansu.sh | tail -n 1)"
export AGORA_TANSU

step "python venv for the compat tier"
AGORA_COMPAT_PYTHON="$(scripts/setup-python.sh | tail -n 1)"
export AGORA_COMPAT_PYTHON

step "unit, integration and compat tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
