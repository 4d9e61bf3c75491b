#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels that the GPU machine's image lacks, for CPython 3.12 on
# manylinux x86_64; scripts/gpu_check.sh installs them there into /tmp/site (bench/README.md, "GPU
# verification kit"). The image's own torch, transformers, peft, tokenizers, safetensors, numpy, pyyaml,
# tqdm, tensorboard, matplotlib, httpx, pytest, einops, msgpack, ninja and py-cpuinfo are used as they are.
#
#   scripts/gpu_wheels.sh            # then: run with carry [".whl"]
#
# What is carried, and why:
#   jsonargparse + docstring-parser, typeshed-client   the config parser of every command
#   deepspeed + hjson, pydantic (+ pydantic-core, annotated-types, typing-inspection, typing-extensions)
#                                                      the ZeRO-2 part; DeepSpeed publishes an sdist only, so
#                                                      a pure-Python wheel is built here (no compiled ops:
#                                                      alignkit hands it torch's AdamW, which needs none)
# Not carried: ray, datasets, math-verify, fastapi/uvicorn, vllm: alignkit imports each lazily, only where it is
# used (the Ray executor, Arrow folders, rule rewards, serve-reward, the vLLM engine), and the kit uses none.
# Versions: those CI tests with (pip list of the project's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LIMIT_MIB=32  # of the 64 MiB a device call may carry with the working tree
WHEELS=(
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
  hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
rm -rf .whl && mkdir .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
ls -1 .whl
bytes=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "gpu_wheels: $(ls .whl/*.whl | wc -l) wheels, $((bytes / 1024)) KiB in .whl/"
if [ "$bytes" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
  echo "gpu_wheels: more than $LIMIT_MIB MiB: too much to carry with the working tree" >&2
  exit 1
fi
