#!/usr/bin/env bash
# Build the tiny model and the synthetic data every example config here reads (offline, seconds).
set -euo pipefail
alignkit init-tiny --output runs/tiny
alignkit data synth --task arithmetic --kind sft --n 20000 --output data/arith_sft.jsonl
alignkit data synth --task arithmetic --kind prompt --n 4000 --seed 1 --output data/arith_prompts.jsonl
alignkit data synth --task arithmetic --kind prompt --n 200 --seed 2 --output data/arith_eval.jsonl
alignkit data synth --task sort --kind sft --n 4000 --output data/sort_sft.jsonl
alignkit data synth --task sort --kind pair --n 2000 --seed 1 --output data/sort_pairs.jsonl
alignkit data synth --task sort --kind unpaired --n 2000 --seed 3 --output data/sort_unpaired.jsonl
