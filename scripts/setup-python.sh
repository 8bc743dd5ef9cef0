#!/usr/bin/env bash
# Create (idempotently) the Python venv used by the compatibility tests in
# tests/compat/ and print the venv's python path as the LAST line of stdout
# (all progress output goes to stderr), so callers can do:
#
#     PY="$(scripts/setup-python.sh)"
#
# Usage: scripts/setup-python.sh [VENV_DIR]
#   VENV_DIR defaults to ${AGORA_VENV:-<repo>/target/compat-venv}.
#   PYTHON   (env) interpreter to build the venv from, default python3.
#
# What it installs (all pinned, hash-checked, from PyPI only):
#   * pymesos==0.3.15, six, addict, kazoo, kafka-python -- tests/compat/requirements.txt,
#     installed with --no-deps: pymesos is used unmodified.
#   * http-parser 0.9.0, which pymesos imports but which does not build on
#     Python >= 3.11 (its shipped Cython C code is too old). We download its
#     sdist with pip and copy only the pure-Python modules http_parser/*.py
#     into site-packages; http_parser.http then falls back to its pure-Python
#     parser (http_parser.pyparser). No C extension is built.
#
# Fast path: if the venv exists, was set up from the same pins, and pymesos
# imports, nothing is done.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$REPO/tests/compat/requirements.txt"
VENV="${1:-${AGORA_VENV:-$REPO/target/compat-venv}}"
PYTHON="${PYTHON:-python3}"

HTTP_PARSER_VERSION="0.9.0"
HTTP_PARSER_SHA256="441d3a57c6227230f98aa97539da006fda0f8f4880bc4c5cd895ff2138a52621"
VIRTUALENV_PIN="virtualenv==20.39.1"   # only used when the stdlib venv module is unusable
STAMP_NAME=".agora-compat-stamp"
CHECK_PY='import pymesos, http_parser.http, avmesos.cli, kafka; from pymesos import MesosSchedulerDriver, MesosExecutorDriver'

log() { printf 'setup-python: %s\n' "$*" >&2; }
die() { printf 'setup-python: ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$REQS" ] || die "missing $REQS"

# Absolute venv path (the directory itself may not exist yet).
mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
VPY="$VENV/bin/python"

# Everything that, when changed, must trigger a re-install.
stamp_value() {
  {
    cat "$REQS"
    echo "http-parser==$HTTP_PARSER_VERSION sha256=$HTTP_PARSER_SHA256"
  } | cksum | cut -d' ' -f1
}
STAMP="$(stamp_value)"

venv_ok() {
  [ -x "$VPY" ] &&
    [ -f "$VENV/$STAMP_NAME" ] &&
    [ "$(cat "$VENV/$STAMP_NAME" 2>/dev/null)" = "$STAMP" ] &&
    "$VPY" -c "$CHECK_PY" >/dev/null 2>&1
}

# ---- fast path -------------------------------------------------------------
if venv_ok; then
  echo "$VPY"
  exit 0
fi

# Serialise concurrent runs on the same venv.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock 9
  if venv_ok; then echo "$VPY"; exit 0; fi
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
TMP="$(mktemp -d "${TMPDIR:-/tmp}/agora-setup-python.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH (set PYTHON=/path/to/python3)"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
log "using $(command -v "$PYTHON") (Python $PYVER)"

# ---- 1. the venv -------------------------------------------------------------
venv_has_pip() { [ -x "$VPY" ] && "$VPY" -m pip --version >/dev/null 2>&1; }

make_venv_stdlib() {
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2 && venv_has_pip
}

make_venv_virtualenv() {
  # virtualenv bundles its own pip/setuptools wheels; install it into a
  # throw-away --target dir with the interpreter's pip (--target bypasses the
  # "externally managed environment" guard of Debian's system python).
  "$PYTHON" -m pip --version >/dev/null 2>&1 || return 1
  rm -rf "$VENV"
  "$PYTHON" -m pip install -q --no-warn-script-location --target "$TMP/virtualenv" "$VIRTUALENV_PIN" >&2 &&
    PYTHONPATH="$TMP/virtualenv" "$PYTHON" -m virtualenv -q "$VENV" >&2 &&
    venv_has_pip
}

make_venv_apt() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  log "installing python3-venv with apt-get"
  apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python3-venv" >&2 || return 1
  # Debian splits venv per minor version; best effort.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$PYVER-venv" >&2 || true
  make_venv_stdlib
}

if venv_has_pip; then
  log "repairing existing venv $VENV"
else
  log "creating venv $VENV"
  if [ "${AGORA_VENV_TOOL:-}" != virtualenv ] && make_venv_stdlib; then
    :
  else
    log "'$PYTHON -m venv' unusable (no venv/ensurepip module?); trying virtualenv from PyPI"
    if make_venv_virtualenv; then
      :
    else
      log "virtualenv failed too; trying apt-get python3-venv"
      make_venv_apt || die "could not create a venv with '$PYTHON' (need the venv module, pip, or root+apt-get)"
    fi
  fi
fi
rm -f "$VENV/$STAMP_NAME"

# ---- 2. pymesos + pure-Python deps, pinned and hash-checked ----------------------
log "installing $(grep -cE '^[a-z]' "$REQS") pinned packages from $REQS"
"$VPY" -m pip install -q --no-deps --use-pep517 --require-hashes -r "$REQS" >&2 ||
  die "pip install -r $REQS failed"

# ---- 3. http_parser: pure-Python modules from the http-parser sdist ----------
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! "$VPY" -c 'import http_parser.http' >/dev/null 2>&1 ||
   ! grep -qs "^Version: $HTTP_PARSER_VERSION\$" "$SITE/http_parser-$HTTP_PARSER_VERSION.dist-info/METADATA"; then
  log "fetching http-parser==$HTTP_PARSER_VERSION sdist (pure-Python modules only)"
  printf 'http-parser==%s --hash=sha256:%s\n' "$HTTP_PARSER_VERSION" "$HTTP_PARSER_SHA256" >"$TMP/http-parser.txt"
  # pip prepares the sdist's metadata while downloading; that needs the old
  # setup.py to run (it imports `imp`, gone in Python 3.12).
  "$VPY" -m pip download -q --no-deps --no-binary :all: -r "$TMP/http-parser.txt" -d "$TMP/sdist" >&2 ||
    die "pip download http-parser==$HTTP_PARSER_VERSION failed (its setup.py needs Python <= 3.11 to be prepared; set PYTHON=python3.11)"
  "$VPY" - "$TMP/sdist/http-parser-$HTTP_PARSER_VERSION.tar.gz" "$SITE" "$HTTP_PARSER_VERSION" "$HTTP_PARSER_SHA256" <<'EOF' >&2 ||
import base64, compileall, hashlib, os, shutil, sys, tarfile
sdist, site, version, sha256 = sys.argv[1:5]
with open(sdist, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
if digest != sha256:
    sys.exit("sha256 mismatch for %s: %s" % (sdist, digest))
prefix = "http-parser-%s/http_parser/" % version
dest = os.path.join(site, "http_parser")
shutil.rmtree(dest, ignore_errors=True)
os.makedirs(dest)
record = []
with tarfile.open(sdist, "r:gz") as tar:
    for m in tar.getmembers():
        name = m.name[len(prefix):] if m.name.startswith(prefix) else None
        # only top-level pure-Python modules: no .so/.c/.pyx, no __pycache__
        if not name or "/" in name or not name.endswith(".py") or not m.isfile():
            continue
        data = tar.extractfile(m).read()
        with open(os.path.join(dest, name), "wb") as out:
            out.write(data)
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("http_parser/%s,sha256=%s,%d" % (name, h, len(data)))
if not any(r.startswith("http_parser/http.py,") for r in record) or \
   not any(r.startswith("http_parser/pyparser.py,") for r in record):
    sys.exit("http_parser/http.py or pyparser.py not found in %s" % sdist)
# Minimal dist-info so pip (pip check / uninstall) knows http-parser is there.
di = "http_parser-%s.dist-info" % version
shutil.rmtree(os.path.join(site, di), ignore_errors=True)
os.makedirs(os.path.join(site, di))
files = {
    "METADATA": "Metadata-Version: 2.1\nName: http-parser\nVersion: %s\n"
                "Summary: pure-Python modules only (installed by agora scripts/setup-python.sh)\n" % version,
    "INSTALLER": "agora-setup-python\n",
}
for fn, text in files.items():
    with open(os.path.join(site, di, fn), "w") as out:
        out.write(text)
    record.append("%s/%s,," % (di, fn))
record.append("%s/RECORD,," % di)
with open(os.path.join(site, di, "RECORD"), "w") as out:
    out.write("\n".join(record) + "\n")
compileall.compile_dir(dest, quiet=1)
print("installed %d http_parser modules into %s" % (len(record) - 3, dest))
EOF
    die "installing the http_parser modules failed"
fi

# ---- 4. verify -----------------------------------------------------------------
if ! "$VPY" -c "$CHECK_PY" >&2; then
  die "import check failed in $VENV"
fi
"$VPY" -c 'import http_parser.http as h, sys
if h.HttpParser.__module__ != "http_parser.pyparser":
    sys.exit("unexpected http parser implementation: %s" % h.HttpParser.__module__)' >&2 ||
  die "http_parser is not the pure-Python parser"
echo "$STAMP" >"$VENV/$STAMP_NAME"
log "ready: pymesos $("$VPY" -c 'import pymesos; print(pymesos.__VERSION__)') in $VENV"
echo "$VPY"
