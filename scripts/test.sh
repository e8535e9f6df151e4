#!/usr/bin/env bash
# The whole suite, air-gapped: inside a network namespace with only loopback where the machine
# allows it (root, unshare), and always behind the socket guard of tests/conftest.py.
set -uo pipefail
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
cmd=(.venv/bin/python -m pytest -q -p no:cacheprovider --durations=40 "$@")
if unshare -n true 2>/dev/null; then
  echo "test.sh: running in a network namespace with loopback only"
  unshare -n bash -c 'ip link set lo up && exec "$@"' _ "${cmd[@]}"
else
  echo "test.sh: no network namespace here; the socket guard alone enforces the air gap"
  "${cmd[@]}"
fi
