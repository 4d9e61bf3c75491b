#!/usr/bin/env bash
# The GPU verification kit (bench/README.md, "GPU verification kit"; the parts: bench/gpu/).
#
#   scripts/gpu_check.sh                           # on the GPU machine: every part, about 6-7 minutes on an H200
#   scripts/gpu_check.sh --only fsdp2,deepspeed    # only those parts (and what they need)
#   scripts/gpu_check.sh --dry-run                 # the same parts on the CPU with a tiny model (CI)
#
# On the GPU machine it first installs the wheels carried in .whl/ (scripts/gpu_wheels.sh) and alignkit
# itself into $SITE (/tmp/site), without dependencies and without touching the image's packages (torch
# stays the image's), and puts $SITE first on PYTHONPATH. The dry run installs nothing: it uses the
# interpreter's packages ($PYTHON, default python3). Results: $OUT/gpu_check.json, $OUT/gpu_check.log,
# $OUT/grpo_metrics.jsonl (OUT defaults to runs/gpu_check); other options: python bench/gpu/check.py --help.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
if [ "${1:-}" = "--dry-run" ]; then
  shift
  exec "$PY" bench/gpu/check.py --device cpu --tiny "$@"
fi
SITE=${SITE:-/tmp/site}
PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
if ls .whl/*.whl >/dev/null 2>&1; then
  "${PIP[@]}" .whl/*.whl || { echo "gpu_check: installing the wheels of .whl/ failed" >&2; exit 1; }
else
  echo "gpu_check: no .whl/ here (scripts/gpu_wheels.sh makes it; carry it): using the installed packages"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if ! "${PIP[@]}" --no-build-isolation . >/dev/null; then
  echo "gpu_check: pip could not install alignkit from this tree: using src/ as it is"
  export PYTHONPATH="$PWD/src:$PYTHONPATH"
fi
exec "$PY" bench/gpu/check.py --device cuda --work "${WORK:-/tmp/alignkit_gpu_check}" "$@"
