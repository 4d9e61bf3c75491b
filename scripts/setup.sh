#!/usr/bin/env bash
# Create .venv (if missing) and install alignkit into it.
# torch comes first: the pinned CPU build (torch==2.13.0) unless a torch is already importable,
# in which case the venv sees it (a GPU user's CUDA build is kept, never replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-}
if [ ! -x .venv/bin/python ]; then
  if "$PY" -c "import torch" 2>/dev/null; then
    echo "setup: using the torch already installed for $PY ($("$PY" -c 'import torch; print(torch.__version__)'))"
    "$PY" -m venv --system-site-packages .venv
  else
    "$PY" -m venv .venv
  fi
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
