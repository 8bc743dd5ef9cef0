#!/usr/bin/env bash
# Installs tansu 0.6.0, the Kafka-protocol broker the Kafka framework's executor runs, when it
# is missing, and prints the binary's path as the LAST line of stdout (progress goes to stderr):
#
#     AGORA_TANSU="$(scripts/setup-tansu.sh | tail -n 1)"
#
# It builds from crates.io with `cargo install` and the features the broker needs to serve:
# `dynostore` (the in-memory store) and `libsql` (SQLite files). On a 2-core machine a fresh
# build takes about 18 minutes; later runs find the binary and return at once.
#
#   AGORA_TOOLS (env)  where tools go, default ~/.cache/agora-tools
set -euo pipefail

VERSION="0.6.0"
FEATURES="dynostore,libsql"
TOOLS="${AGORA_TOOLS:-$HOME/.cache/agora-tools}"
ROOT="$TOOLS/tansu-$VERSION"
BIN="$ROOT/bin/tansu"

log() { printf 'setup-tansu: %s\n' "$*" >&2; }

# cargo install records what it installed; the version and features must both match.
installed() {
  [ -x "$BIN" ] &&
    grep -qs "\"tansu $VERSION " "$ROOT/.crates2.json" &&
    grep -qs '"dynostore"' "$ROOT/.crates2.json" &&
    grep -qs '"libsql"' "$ROOT/.crates2.json"
}

if installed; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$TOOLS"
# Serialise concurrent runs: two builds of the same tree would only slow each other down.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/tansu.lock"
  flock 9
  if installed; then echo "$BIN"; exit 0; fi
fi

log "installing tansu $VERSION (features $FEATURES) into $ROOT; this takes a while"
start=$(date +%s)
cargo install tansu --version "$VERSION" --locked --features "$FEATURES" \
  --root "$ROOT" --target-dir "$TOOLS/build" >&2
log "installed in $(( $(date +%s) - start )) s"
installed || { log "ERROR: $BIN missing after cargo install"; exit 1; }
echo "$BIN"
